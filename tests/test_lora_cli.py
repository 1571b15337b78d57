"""LoRAs and exact schedules the way a user walks them: `videogen generate` / `batch` as subprocesses."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import run_cli, run_inprocess
from PIL import Image
from tiny_lora import random_lora, write_comfy, write_musubi

SIZE = ["--frames", "5", "--height", "16", "--width", "16", "--seed", "4", "--max-sequence-length", "16"]
LIGHTX2V_SIGMAS = [1.0, 0.9375, 0.833333, 0.625, 0.0]  # 5s / (1 + 4s) for s = 1, 0.75, 0.5, 0.25; then 0


@pytest.fixture
def env(tmp_path):
    return {"HOME": str(tmp_path / "home"), "XDG_CONFIG_HOME": str(tmp_path / "config"),
            "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}


def frames(folder: Path) -> np.ndarray:
    return np.stack([np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))])


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_two_stacked_loras_with_the_lightx2v_preset_record_and_from(tiny_wan, tmp_path, env):
    a = write_comfy(random_lora(tiny_wan, seed=1), tmp_path / "style.safetensors")
    b = write_musubi(random_lora(tiny_wan, seed=2, modules=["blocks.0.attn1.to_q", "blocks.1.ffn.net.2"]),
                     tmp_path / "detail.safetensors")
    out = tmp_path / "stacked"
    r = run_cli("generate", "a red cat runs on the beach", "-p", "wan2.1-t2v-14b-lightx2v-4step", "-m", tiny_wan,
                *SIZE, "--lora", f"{a}:0.8", "--lora", f"{b}:-0.5", "-o", out, "--json", "-q", env=env,
                cwd=tmp_path)
    assert r.code == 0, r.err
    record = json.loads(r.out)
    assert [(e["path"], e["sha256"], e["weight"], e["expert"], e["modules"]) for e in record["loras"]] == [
        (str(a), sha(a), 0.8, "both", 20), (str(b), sha(b), -0.5, "both", 2)]
    assert record["steps"] == 4 and record["guidance"] == 1.0
    assert record["sampling"]["sigmas"] == pytest.approx(LIGHTX2V_SIGMAS, abs=1e-6)
    assert record["scheduler"]["class"] == "FlowMatchEulerDiscreteScheduler"
    assert json.loads((out / "run.json").read_text())["loras"] == record["loras"]

    again = tmp_path / "again"
    r = run_cli("generate", "--from", out / "run.json", "-o", again, "-q", env=env)
    assert r.code == 0, r.err
    assert np.array_equal(frames(again), frames(out))  # --from restores both LoRAs: the same frames

    b.write_bytes(b.read_bytes()[:-4] + b"\0\0\0\0")  # the file changes under the record
    r = run_cli("generate", "--from", out / "run.json", "-o", tmp_path / "changed", "-q", env=env)
    assert r.code == 2 and "detail.safetensors changed since that run" in r.err
    assert len(r.err.strip().splitlines()) == 1 and not (tmp_path / "changed").exists()


def test_bad_loras_are_refused_in_one_line_before_loading(tiny_wan, tmp_path, env, capsys, monkeypatch):
    import torch
    from safetensors.torch import save_file

    other = tmp_path / "sdxl.safetensors"
    save_file({"lora_unet_mid_block_attentions_0_proj_out.lora_down.weight": torch.zeros(2, 4),
               "lora_unet_mid_block_attentions_0_proj_out.lora_up.weight": torch.zeros(4, 2)}, str(other))
    pickle = tmp_path / "style.pt"
    pickle.write_bytes(b"not loaded")
    cases = [([f"{other}:0.5"], "sdxl.safetensors: none of its 2 keys match this wan model"),
             ([str(pickle)], "only .safetensors LoRA files are loaded"),
             ([f"{other}:strong"], "weight 'strong' is not a number"),
             ([f"{other}@mid"], "unknown expert '@mid'"),
             ([str(tmp_path / "missing.safetensors")], "LoRA file not found")]
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    for i, (loras, message) in enumerate(cases):
        args = [x for lo in loras for x in ("--lora", lo)]
        run = run_cli if i == 0 else lambda *a, env: run_inprocess(capsys, *a)  # the real process once
        r = run("generate", "a cat", "-m", tiny_wan, *SIZE, *args, "-o", tmp_path / "out.mp4", env=env)
        assert r.code == 2, (loras, r.err)
        assert message in r.err and len(r.err.strip().splitlines()) == 1, r.err
        assert "Traceback" not in r.err and not (tmp_path / "out.mp4").exists()


def test_sigmas_flag_errors(tiny_wan, tmp_path, capsys):
    for args, message in ((["--sigmas", "1,0.5", "--steps", "3"], "--steps 3 disagrees with the 2 sigmas given by --sigmas"),
                          (["--sigmas", "0.5,0.75"], "strictly decreasing"),
                          (["--sigmas", "1,x"], "not a comma-separated list")):
        r = run_inprocess(capsys, "generate", "a cat", "-m", tiny_wan, "--frames", "5", "--height", "16",
                          "--width", "16", *args, "-o", tmp_path / "o.mp4")
        assert r.code == 2 and message in r.err, r.err


def test_batch_items_switch_loras_on_one_engine(tiny_wan, tmp_path, env):
    a = write_comfy(random_lora(tiny_wan, seed=1), tmp_path / "a.safetensors")
    b = write_musubi(random_lora(tiny_wan, seed=3), tmp_path / "b.safetensors")
    items = [{"prompt": "a red cat", "loras": [f"{a}:1"]}, {"prompt": "a red cat", "loras": [f"{b}:0.5"]},
             {"prompt": "a red cat"}]
    file = tmp_path / "items.jsonl"
    file.write_text("".join(json.dumps(i) + "\n" for i in items))
    out = tmp_path / "out"
    r = run_cli("batch", file, "-m", tiny_wan, *SIZE, "--steps", "2", "--format", "png", "-o", out, "-q", env=env)
    assert r.code == 0, r.err
    records = [json.loads(p.read_text()) for p in sorted(out.glob("*/run.json"))]
    assert len(records) == 3
    by_lora = {tuple(e["sha256"] for e in rec.get("loras", [])): rec for rec in records}
    assert set(by_lora) == {(sha(a),), (sha(b),), ()}
    switched = [rec for rec in records if "lora_switch" in rec["timings"]]
    assert len(switched) >= 2  # the engine was loaded once; later items switched LoRAs in place
    assert len({rec["timings"]["load"] for rec in records}) == 1
