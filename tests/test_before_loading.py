"""What happens before a model loads costs no torch, and what a render changes in the process is put back.

The speed of a 10,000-line `batch --dry-run` is a benchmark (bench/run.py --only plan); what keeps it fast is
tested here without timing: torch, diffusers and transformers are never imported on that path."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from cli_helpers import user_env

from videogen.spec import BUILTIN_MODEL, RenderSpec

HEAVY = ("torch", "diffusers", "transformers", "safetensors")
PROMPTS = ["a red circle moving left on a black background", "a blue square moving up on a white background"]


def imported(stderr: str) -> set[str]:
    """Top-level packages named by PYTHONPROFILEIMPORTTIME's lines (`import time: self | cumulative | name`)."""
    names = re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s*([\w.]+)\s*$", stderr, flags=re.M)
    return {n.split(".")[0] for n in names}


def test_batch_dry_run_never_imports_torch(tmp_path, tiny_wan):
    """Built-in model, a preset, and items naming a model folder and their own sizes: every check before
    loading runs (model index, configs, geometry, fields), and none of it imports a heavy library."""
    (tmp_path / "p.txt").write_text("".join(p + "\n" for p in PROMPTS * 3))
    (tmp_path / "preset.yaml").write_text("steps: 8\nguidance: 3.0\nscheduler: euler\n")
    (tmp_path / "p.jsonl").write_text(
        json.dumps({"prompt": "a red cat", "model": str(tiny_wan), "frames": 9, "height": 16, "width": 16}) + "\n"
        + json.dumps({"prompt": "a dog", "model": str(tiny_wan), "frames": 5, "height": 16, "width": 16}) + "\n")
    exe = Path(sys.executable).with_name("videogen")
    env = {**os.environ, **user_env(tmp_path), "PYTHONPROFILEIMPORTTIME": "1"}
    for args in (["p.txt"], ["p.txt", "-p", "preset.yaml"], ["p.jsonl"]):
        r = subprocess.run([str(exe), "batch", *args, "--dry-run"], cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 0, r.stderr[-2000:]
        assert re.match(r"\d+ item\(s\) -> ", r.stdout), r.stdout
        names = imported(r.stderr)
        assert "videogen" in names and "typer" in names  # the lines were read: the check can fail
        assert not names & set(HEAVY), (args, sorted(names & set(HEAVY)))
    # A setting the model cannot take is still refused by name, before loading and without torch.
    (tmp_path / "bad.jsonl").write_text(json.dumps({"prompt": "a cat", "model": str(tiny_wan), "frames": 8}) + "\n")
    r = subprocess.run([str(exe), "batch", "bad.jsonl", "--dry-run"], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2 and "bad.jsonl:1: " in r.stderr and "frames 8" in r.stderr, r.stderr[-800:]
    assert not imported(r.stderr) & set(HEAVY)


def flushing() -> bool:
    """Whether this thread flushes denormal floats: a float32 denormal survives only while it does not."""
    return float(torch.tensor([1e-39], dtype=torch.float32) * 1.0) == 0.0


def test_denormal_flushing_is_on_while_rendering_and_put_back_after_loading_and_rendering():
    from videogen.engine import Engine

    if not torch.set_flush_denormal(True):
        pytest.skip("this CPU cannot flush denormals")
    torch.set_flush_denormal(False)
    assert not flushing()
    try:
        engine = Engine.load(RenderSpec(prompt="", model=BUILTIN_MODEL, device="cpu"))
        assert not flushing()  # loading put it back
        for before in (False, True):
            torch.set_flush_denormal(before)
            during: list[bool] = []
            engine.render(RenderSpec(prompt=PROMPTS[0], steps=2, seed=1),
                          on_step=lambda *_args, seen=during: seen.append(flushing()))
            assert during and all(during)  # on for the whole render
            assert flushing() is before  # and back to what the caller had
    finally:
        torch.set_flush_denormal(False)
