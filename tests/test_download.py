"""`videogen download` with the real huggingface_hub client against a Hub-compatible server on 127.0.0.1
(tests/hub_server.py): exactly the loader's files, size and disk first, a dropped connection resumed, exit codes."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import hub_server
import pytest
from hub_server import COMMIT, Hub, serve
from test_hub_cache import clean_env, one_error_line, videogen

from videogen.loading import builtin_model_path
from videogen.modelfiles import list_files

MINI = builtin_model_path()
WEIGHTS = "transformer/diffusion_pytorch_model.safetensors"
MINI_RENDER = ["--frames", "17", "--height", "32", "--width", "32", "--steps", "2"]
FP16 = "transformer/diffusion_pytorch_model.fp16.safetensors"


def _halved(path: Path) -> bytes:
    """Other, valid weights under the variant's name."""
    from safetensors.numpy import load_file, save

    return save({k: v / 2 for k, v in load_file(path).items()})


@pytest.fixture
def hub():
    h = Hub()
    # What real repos also hold, that a render never reads: pickles beside safetensors, another variant, a
    # folder the pipeline does not name, repo metadata.
    h.repos["org/not-diffusers"] = {"README.md": hub_server.HubFile(b"# a transformers model\n", lfs=False)}
    h.add("org/mini", MINI, extra={"transformer/diffusion_pytorch_model.bin": b"\0" * 5000,
                                   FP16: _halved(MINI / WEIGHTS), "unused/config.json": b"{}",
                                   "README.md": b"# mini\n", ".gitattributes": b"*.safetensors filter=lfs\n"})
    server = serve(h)
    yield h
    server.shutdown()


def online_env(tmp_path: Path, hub: Hub) -> dict[str, str]:
    env = clean_env(tmp_path / "hf", HF_ENDPOINT=hub.url)
    env.pop("HF_HUB_OFFLINE")
    return env


def snapshot_files(tmp_path: Path) -> dict[str, bytes]:
    snap = tmp_path / "hf" / "hub" / "models--org--mini" / "snapshots" / COMMIT
    return {rel: (snap / rel).read_bytes() for rel in list_files(snap)}


def test_download_fetches_exactly_the_loaders_files(hub, tmp_path):
    r = videogen("download", "org/mini", env=online_env(tmp_path, hub), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    snap = tmp_path / "hf" / "hub" / "models--org--mini" / "snapshots" / COMMIT
    assert r.stdout == f"{snap}\n"
    files = [p for p in MINI.rglob("*") if p.is_file()]
    total = sum(p.stat().st_size for p in files)
    assert r.stderr.splitlines()[0] == f"org/mini {COMMIT[:12]}: {len(files)} files, {total / 1e6:.1f} MB"
    assert "warning" not in r.stderr.lower() and "resume" not in r.stderr.lower()  # no library log lines
    got = snapshot_files(tmp_path)
    assert got == {rel: (MINI / rel).read_bytes() for rel in list_files(MINI)}  # nothing more, nothing less
    assert (tmp_path / "hf" / "hub" / "models--org--mini" / "refs" / "main").read_text() == COMMIT

    before = len(hub.log)
    r = videogen("download", "org/mini", env=online_env(tmp_path, hub), cwd=tmp_path)
    assert r.returncode == 0 and r.stdout == f"{snap}\n", r.stderr
    assert not [p for m, p, _ in hub.log[before:] if m == "GET" and p.endswith(".safetensors")]  # nothing refetched

    out = tmp_path / "clip.mp4"
    r = videogen("generate", "a red circle", "-m", "org/mini", *MINI_RENDER, "-o", out, env=clean_env(tmp_path / "hf"),
                 cwd=tmp_path)
    assert r.returncode == 0, r.stderr


def test_generate_online_checks_the_render_against_the_configs_before_fetching_weights(hub, tmp_path):
    """`generate` of a Hub model not yet in the cache, online: a render the model cannot take is refused after
    fetching its configs only (a real model's weights are tens of GB); a render it can take fetches the weights,
    renders, and records the commit."""
    env = online_env(tmp_path, hub)
    out = tmp_path / "clip.mp4"
    repo = tmp_path / "hf" / "hub" / "models--org--mini"
    r = videogen("generate", "a red circle", "-m", "org/mini", "--frames", "16", "--height", "32", "--width", "32",
                 "-o", out, env=env, cwd=tmp_path)
    line = one_error_line(r)
    assert "--frames 16" in line and "17" in line, line
    assert hub.gets("model_index.json") and hub.gets("transformer/config.json")  # the checks read the configs
    assert not [p for m, p, _ in hub.log if m == "GET" and p.endswith(".safetensors")]  # and nothing else
    assert not list(repo.rglob("*.safetensors")) and not (repo / "refs" / "main").exists()
    assert not out.exists()

    r = videogen("generate", "a red circle", "-m", "org/mini", *MINI_RENDER, "-o", out, "--json", env=env,
                 cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert len(hub.gets(WEIGHTS)) == 1 and (repo / "refs" / "main").read_text() == COMMIT
    assert json.loads(r.stdout)["model"]["revision"] == COMMIT
    assert snapshot_files(tmp_path) == {rel: (MINI / rel).read_bytes() for rel in list_files(MINI)}


def test_batch_online_checks_every_item_before_fetching_weights_and_a_dry_run_fetches_none(hub, tmp_path):
    env = online_env(tmp_path, hub)
    prompts = tmp_path / "prompts.yaml"
    prompts.write_text("- prompt: a red circle\n- prompt: a blue square\n  frames: 16\n")
    r = videogen("batch", prompts, "-m", "org/mini", "--steps", "2", "-o", tmp_path / "out", env=env, cwd=tmp_path)
    line = one_error_line(r)
    assert line.startswith(f"error: {prompts}:2: wan model: frames 16 (set on this line)"), line
    assert not [p for m, p, _ in hub.log if m == "GET" and p.endswith(".safetensors")]
    prompts.write_text("- prompt: a red circle\n- prompt: a blue square\n")
    r = videogen("batch", prompts, "-m", "org/mini", "--steps", "2", "-o", tmp_path / "out", "--dry-run", env=env,
                 cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert hub.gets("model_index.json") and not [p for m, p, _ in hub.log if m == "GET" and p.endswith(".safetensors")]


def test_a_connection_dropped_mid_file_resumes_with_a_range_request(hub, tmp_path):
    """huggingface_hub writes in 10 MiB chunks and resumes from the last one written: the weights must be larger."""
    import numpy as np
    from safetensors.numpy import load_file, save_file

    model = tmp_path / "big"
    shutil.copytree(MINI, model)
    tensors = load_file(MINI / WEIGHTS)
    tensors["padding"] = np.arange(4 * 2**20, dtype=np.float32)  # 16 MiB more
    save_file(tensors, model / WEIGHTS)
    hub.add("org/big", model)
    cut = 12 * 2**20
    hub.drop[WEIGHTS] = cut
    r = videogen("download", "org/big", env=online_env(tmp_path, hub), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "warning" not in r.stderr.lower() and "resum" not in r.stderr.lower()  # no library log lines
    first, *rest = hub.gets(WEIGHTS)
    assert first is None and len(rest) == 1 and rest[0].startswith("bytes="), hub.gets(WEIGHTS)
    assert 0 < int(rest[0][len("bytes="):-1]) <= cut  # resumed from what was written, not from the start
    snap = Path(r.stdout.strip())
    assert (snap / WEIGHTS).read_bytes() == (model / WEIGHTS).read_bytes()


def test_download_variant_takes_that_variant_only(hub, tmp_path):
    r = videogen("download", "org/mini", "--variant", "fp16", "-q", env=online_env(tmp_path, hub), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    got = snapshot_files(tmp_path)
    assert FP16 in got and WEIGHTS not in got
    assert "vae/diffusion_pytorch_model.safetensors" in got  # components without fp16 weights keep their own
    assert got[FP16] == hub.repos["org/mini"][FP16].data


def test_download_refuses_before_fetching_when_the_disk_is_too_small(hub, tmp_path):
    hub.advertise[WEIGHTS] = 10**15
    r = videogen("download", "org/mini", env=online_env(tmp_path, hub), cwd=tmp_path)
    size, line = r.stderr.strip().splitlines()  # the size first, then the refusal
    assert r.returncode == 2 and r.stdout == ""
    assert size == f"org/mini {COMMIT[:12]}: {len(list_files(MINI))} files, 1000.0 TB"
    assert line.startswith("error: not enough disk space for org/mini: 1000.0 TB to fetch") and "HF_HOME" in line
    assert not hub.gets(".safetensors")


@pytest.mark.parametrize("args, expected", [
    (["nobody/nothing"], "no model 'nobody/nothing' on the Hugging Face Hub"),
    (["org/mini", "--revision", "v9"], "--revision v9: no such branch, tag or commit in 'org/mini'"),
    (["org/mini", "--variant", "int3"], "--variant int3: unknown weights variant"),
    (["org/mini", "--variant", "bf16"], "no component has bf16 weights"),
    (["wan2.1-t2v-1.3b"], "no model 'Wan-AI/Wan2.1-T2V-1.3B-Diffusers'"),  # a preset names its model
    (["org/not-diffusers"], "'org/not-diffusers' is not a diffusers model (no model_index.json)"),
    (["not-a-preset"], "'not-a-preset' is neither a preset nor a Hugging Face Hub id"),
])
def test_download_bad_input_is_exit_2(hub, tmp_path, args, expected):
    r = videogen("download", *args, env=online_env(tmp_path, hub), cwd=tmp_path)
    assert expected in one_error_line(r)
    assert r.stdout == ""


def test_download_without_network_is_exit_1(tmp_path):
    env = clean_env(tmp_path / "hf", HF_ENDPOINT="http://127.0.0.1:9")  # the discard port: nothing listens
    env.pop("HF_HUB_OFFLINE")
    r = videogen("download", "org/mini", env=env, cwd=tmp_path)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(lines) == 1, r.stderr
    assert "cannot reach the Hugging Face Hub (http://127.0.0.1:9)" in lines[0]


def test_download_interrupted_is_130_and_a_rerun_completes(hub, tmp_path):
    hub.delay = 0.02
    exe = Path(sys.executable).with_name("videogen")
    proc = subprocess.Popen([str(exe), "download", "org/mini"], env=online_env(tmp_path, hub), cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert hub.started.wait(120)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and err.strip().splitlines()[-1] == "interrupted" and out == "", err
    hub.delay = 0.0
    r = videogen("download", "org/mini", "-q", env=online_env(tmp_path, hub), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert snapshot_files(tmp_path) == {rel: (MINI / rel).read_bytes() for rel in list_files(MINI)}
    leftovers = [p.name for p in (tmp_path / "hf" / "hub" / "models--org--mini" / "blobs").iterdir()
                 if p.name.endswith(".incomplete")]
    assert leftovers == []
