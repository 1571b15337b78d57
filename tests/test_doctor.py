"""`videogen doctor` in a real process: valid JSON on any machine, the cache's preset models complete or not."""

from __future__ import annotations

import json
import os

from hub_cache import lay_out
from test_hub_cache import clean_env, videogen

from videogen.loading import builtin_model_path

WAN = "Wan-AI/Wan2.1-T2V-1.3B-Diffusers"  # the model of preset wan2.1-t2v-1.3b
COG = "THUDM/CogVideoX-2b"  # the model of preset cogvideox-2b


def test_doctor_json_reports_the_machine_and_the_cache(tmp_path):
    hf_home = tmp_path / "hf"
    lay_out(builtin_model_path(), hf_home, WAN)  # complete (any diffusers folder stands in for the real one)
    broken = lay_out(builtin_model_path(), hf_home, COG)
    link = broken / "vae" / "diffusion_pytorch_model.safetensors"
    (link.parent / os.readlink(link)).unlink()
    env = clean_env(hf_home)
    r = videogen("doctor", "--json", env=env, cwd=tmp_path)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    report = json.loads(r.stdout)
    assert report["python"].count(".") == 2 and report["torch"]
    assert isinstance(report["gpus"], list)
    for gpu in report["gpus"]:
        assert gpu["memory_total_gb"] >= gpu["memory_free_gb"] > 0 and isinstance(gpu["bf16"], bool)
    assert report["ffmpeg"]["encoders"] == {"libx264": True, "libvpx-vp9": True, "aac": True, "libopus": True}
    assert report["attention"]["sdpa"] is True
    cache = report["hf_cache"]
    blobs = sum(p.stat().st_size for p in (hf_home / "hub").rglob("blobs/*"))
    assert cache["path"] == str(hf_home / "hub") and cache["size_bytes"] >= blobs > 10**7
    models = cache["models"]
    assert models[WAN]["cached"] and models[WAN]["complete"] and "wan2.1-t2v-1.3b" in models[WAN]["presets"]
    assert models[COG]["cached"] and not models[COG]["complete"] and "a link to a missing blob" in models[COG]["problem"]
    assert models["genmo/mochi-1-preview"] == {"presets": ["mochi-1-preview"], "cached": False, "complete": False}
    from videogen import presets

    shared = sorted(n for n, p in presets.all_presets().items()
                    if presets.parse_preset(p, n).model == "Wan-AI/Wan2.1-T2V-14B-Diffusers")
    assert len(shared) >= 2 and models["Wan-AI/Wan2.1-T2V-14B-Diffusers"]["presets"] == shared
    fixes = {p["fix"] for p in report["problems"]}
    assert f"run `videogen download {COG}`" in fixes
    assert report["output_disk"]["path"] == str(tmp_path / "outputs") and report["output_disk"]["free_gb"] > 0

    r = videogen("doctor", env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert any(line.split()[:2] == ["complete", WAN] and "wan2.1-t2v-1.3b" in line for line in lines)
    assert any(line.split()[:2] == ["incomplete", COG] for line in lines)
    assert "  not cached  genmo/mochi-1-preview  (mochi-1-preview)" in lines
    assert f"fix: run `videogen download {COG}`" in r.stdout
