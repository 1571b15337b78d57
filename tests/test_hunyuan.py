"""HunyuanVideo: frames equal diffusers' HunyuanVideoPipeline's (embedded guidance, and true CFG), and the CLI."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest
import torch
from cli_helpers import run_cli
from hypothesis import given
from hypothesis import strategies as st
from properties import FEW, Case, cases
from tiny import assert_refused_before_loading

from videogen.engine import Engine
from videogen.spec import RenderSpec
from videogen.video import read_frames

TOL = 1e-4
PROMPT = "a red cat runs on the beach"


@pytest.fixture(scope="module")
def engine(tiny_hunyuan) -> Engine:
    return Engine.load(RenderSpec(prompt=PROMPT, model=str(tiny_hunyuan), device="cpu", dtype="float32"))


@pytest.fixture(scope="module")
def pipe(tiny_hunyuan):
    from diffusers import HunyuanVideoPipeline

    p = HunyuanVideoPipeline.from_pretrained(tiny_hunyuan)
    p.set_progress_bar_config(disable=True)
    return p


def render(engine: Engine, **fields) -> torch.Tensor:
    spec = RenderSpec(**{"prompt": PROMPT, "model": engine.info.source.ref, "frames": 5, "height": 16, "width": 16,
                         "steps": 2, "seed": 5, "device": "cpu", "dtype": "float32", **fields})
    return engine.render(spec).frames_float


def reference(pipe, guidance: float, **extra) -> torch.Tensor:
    out = pipe(prompt=PROMPT, num_frames=5, height=16, width=16, num_inference_steps=2,
               guidance_scale=guidance, generator=torch.Generator("cpu").manual_seed(5), output_type="pt", **extra)
    return out.frames[0].permute(0, 2, 3, 1).float()  # [F,3,H,W] -> [F,H,W,3]


def test_embedded_guidance_matches_pipeline(engine, pipe):
    ours = render(engine, guidance=6.0)
    ref = reference(pipe, 6.0)
    assert ours.shape == ref.shape == (5, 16, 16, 3)
    assert ours.std() > 0.02  # not a constant picture, so the comparison can fail
    assert (ours - ref).abs().max().item() <= TOL
    # the embedded guidance and the prompt (after the template crop) both reach the transformer
    assert (ours - render(engine, guidance=2.0)).abs().max() > 1e-3
    assert (ours - render(engine, guidance=6.0, prompt="a blue dog in the sky")).abs().max() > 1e-3


def test_true_cfg_matches_pipeline(engine, pipe, caplog):
    ours = render(engine, guidance=4.5, negative_prompt="blue dog", true_guidance=3.0)
    ref = reference(pipe, 4.5, negative_prompt="blue dog", true_cfg_scale=3.0)
    assert ours.std() > 0.02
    assert (ours - ref).abs().max().item() <= TOL
    plain = render(engine, guidance=4.5)
    assert (ours - plain).abs().max() > 1e-3  # true CFG changed the video
    # without --true-guidance the negative prompt has no effect, as in the pipeline (a warning says so)
    with caplog.at_level(logging.WARNING, logger="videogen"):
        assert torch.equal(render(engine, guidance=4.5, negative_prompt="blue dog"), plain)
    assert "ignores the negative prompt unless --true-guidance" in caplog.text


def test_cli_writes_mp4(tiny_hunyuan, tmp_path):
    out = tmp_path / "clip.mp4"
    proc = run_cli("generate", PROMPT, "-m", str(tiny_hunyuan), "--frames", "5", "--height", "16",
                           "--width", "32", "--steps", "2", "--max-sequence-length", "32", "--seed", "1", "--true-guidance", "2", "-n", "gray",
                           "-o", str(out), "-q")
    assert proc.code == 0, proc.err
    assert proc.out.strip() == str(out)
    frames, fps = read_frames(out)
    assert frames.shape == (5, 16, 32, 3) and fps == 15  # HunyuanVideo's default fps
    record = json.loads(Path(f"{out}.json").read_text())
    assert record["family"] == "hunyuan"
    assert record["spec"]["true_guidance"] == 2.0 and record["guidance"] == 6.0


@pytest.mark.parametrize("flags,expected", [
    (["--frames", "10"], "--frames 10 is not 4k+1: use 9 or 13"),
    (["--height", "24"], "--height 24 is not a multiple of 16: use 16 or 32"),
])
def test_cli_refuses_what_the_model_cannot_take(tiny_hunyuan, capsys, monkeypatch, flags, expected):
    from videogen.cli.main import main

    base = {"--frames": "9", "--height": "16", "--width": "16"}
    base.update(dict(zip(flags[::2], flags[1::2], strict=True)))
    args = [a for kv in base.items() for a in kv]
    monkeypatch.setattr(sys, "argv", ["videogen", "generate", PROMPT, "-m", str(tiny_hunyuan), *args, "-q"])
    with pytest.raises(SystemExit) as e:
        main()
    assert e.value.code == 2
    assert expected in capsys.readouterr().err


@pytest.mark.parametrize("flags,expected", [
    (["--guidance-2", "3"], "--guidance-2 is for two-expert models (Wan 2.2 A14B); this hunyuan model does not take it"),
    (["--scheduler", "unipc"], "HunyuanVideo samples with its own scheduler only (--scheduler euler)"),
])
def test_refused_before_loading(tiny_hunyuan, tmp_path, flags, expected):
    """Fields HunyuanVideo does not take are refused from its configs alone: the folder here has no weights."""
    assert_refused_before_loading(tiny_hunyuan, tmp_path, ["--frames", "5", "--height", "16", "--width", "16"],
                                  flags, expected)


@given(case=cases(frames=[1, 5, 9], sizes=[16, 32]), true_cfg=st.just(1.0) | st.floats(1.5, 5.0))
@FEW
def test_parity_property(engine, pipe, case: Case, true_cfg: float):
    """Any prompt, negative prompt, frames, size, steps, embedded guidance, true CFG and seed: the pipeline's
    frames (true CFG runs only with a negative prompt, in both)."""
    spec = case.spec(engine.info.source.ref, true_guidance=true_cfg, device="cpu", dtype="float32")
    ours = engine.render(spec).frames_float
    ref = pipe(prompt=case.prompt, negative_prompt=case.negative, num_frames=case.frames, height=case.height,
               width=case.width, num_inference_steps=case.steps, guidance_scale=case.guidance, true_cfg_scale=true_cfg,
               generator=torch.Generator("cpu").manual_seed(case.seed), output_type="pt").frames[0]
    ref = ref.permute(0, 2, 3, 1).float()
    assert ours.shape == ref.shape == (case.frames, case.height, case.width, 3)
    assert (ours - ref).abs().max().item() <= TOL, case
