"""LTX-Video through videogen's one loop: parity with diffusers' LTX pipelines, the CLI, and refused geometry."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import run_cli, run_inprocess
from hypothesis import given
from properties import FEW, Case, cases

from videogen.engine import Engine, inspect_model, resolve_spec
from videogen.errors import UserError
from videogen.presets import load_preset
from videogen.spec import RenderSpec

PROMPT = "a red cat runs on the beach"
NEGATIVE = "blue dog"
FRAMES, SIZE, STEPS, SEED = 9, 32, 3, 7


@pytest.fixture(scope="module")
def image64(tmp_path_factory) -> Path:
    """A 64x64 picture: both sides must resize it to 32x32 (Lanczos) themselves."""
    from PIL import Image

    path = tmp_path_factory.mktemp("images") / "first.png"
    yy, xx = np.mgrid[0:64, 0:64]
    rgb = np.stack([xx * 4, yy * 4, (xx + yy) * 2], axis=-1) % 256
    Image.fromarray(rgb.astype(np.uint8)).save(path)
    return path


def reference(folder: Path, image: Path | None, guidance: float, frame_rate: int | None) -> torch.Tensor:
    """diffusers' own pipeline on the same folder and seed: frames [F,H,W,3] in [0,1]."""
    from diffusers import LTXImageToVideoPipeline, LTXPipeline
    from PIL import Image

    kwargs = {} if frame_rate is None else {"frame_rate": frame_rate}  # None: the pipeline's default (25)
    if image is not None:
        pipe = LTXImageToVideoPipeline.from_pretrained(folder)
        kwargs["image"] = Image.open(image).convert("RGB")
    else:
        pipe = LTXPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    torch.manual_seed(SEED)  # the decoder's injected noise comes from the global RNG; videogen seeds it so
    out = pipe(prompt=PROMPT, negative_prompt=NEGATIVE, num_frames=FRAMES, height=SIZE, width=SIZE,
               num_inference_steps=STEPS, guidance_scale=guidance, generator=torch.Generator("cpu").manual_seed(SEED),
               output_type="pt", **kwargs).frames[0]
    return out.permute(0, 2, 3, 1)


# (task, guidance, fps): fps 24 is told to diffusers as frame_rate; fps 25 is diffusers' default frame_rate.
CASES = [("t2v", 1.0, 24), ("t2v", 3.0, 25), ("i2v", 1.0, 25), ("i2v", 3.0, 24)]


@pytest.mark.parametrize(("task", "guidance", "fps"), CASES)
def test_parity_with_diffusers(tiny_ltx, image64, task, guidance, fps):
    image = image64 if task == "i2v" else None
    spec = RenderSpec(prompt=PROMPT, model=str(tiny_ltx), negative_prompt=NEGATIVE, frames=FRAMES, height=SIZE,
                      width=SIZE, steps=STEPS, guidance=guidance, seed=SEED, fps=fps,
                      image=str(image) if image else None)
    ours = Engine.load(spec).render(spec).frames_float
    theirs = reference(tiny_ltx, image, guidance, None if fps == 25 else fps)
    assert ours.shape == theirs.shape == (FRAMES, SIZE, SIZE, 3)
    assert ours.std() > 0.05  # not a constant picture, so the comparison can fail
    diff = (ours - theirs).abs().max().item()
    print(f"ltx {task} guidance={guidance} fps={fps}: max abs diff {diff:.2e}")
    assert diff <= 1e-4


def test_reproducible_despite_decoder_noise(tiny_ltx, image64):
    """The decoder's global-RNG noise is seeded from the render's seed: the same spec gives the same frames, whatever
    the global RNG did in between. The image changes the first frame."""
    base = RenderSpec(prompt=PROMPT, model=str(tiny_ltx), frames=FRAMES, height=SIZE, width=SIZE, steps=2,
                      guidance=1.0, seed=SEED)
    engine = Engine.load(base)
    first = engine.render(base).frames_float
    torch.rand(100)
    again = engine.render(base).frames_float
    assert torch.equal(first, again)
    with_image = engine.render(base.replace(image=str(image64))).frames_float
    assert (with_image[0] - first[0]).abs().max() > 0.05


def run_main(capsys, monkeypatch, cwd: Path, *args: str) -> tuple[int, str]:
    """The real entry point in this process (exit code, stderr): bad input never reaches a model load."""
    monkeypatch.chdir(cwd)
    r = run_inprocess(capsys, *args)
    return r.code, r.err


def test_cli_writes_an_mp4(tiny_ltx, image64, tmp_path):
    from videogen.video import read_frames

    out = tmp_path / "ltx.mp4"
    r = run_cli("generate", PROMPT, "-m", str(tiny_ltx), "--image", str(image64), "--frames", "9", "--height", "32",
                "--width", "64", "--steps", "2", "--seed", "3", "-o", str(out), cwd=tmp_path,
                env={"HF_HUB_OFFLINE": "1"})
    assert r.code == 0, r.err
    assert r.out.strip() == str(out)
    frames, fps = read_frames(out)
    assert frames.shape == (9, 32, 64, 3)
    assert fps == 24  # LTX-Video's own rate, not diffusers' frame_rate default
    record = json.loads(Path(str(out) + ".json").read_text())
    assert record["family"] == "ltx" and record["scheduler"]["class"] == "FlowMatchEulerDiscreteScheduler"


def test_rerun_from_another_folder_finds_a_relative_image(tiny_ltx, image64, tmp_path, monkeypatch):
    """An image given by a relative path in one folder; `--from` run in another still finds that picture."""
    import videogen
    from videogen.video import read_frames

    shutil.copy(image64, tmp_path / "first.png")
    monkeypatch.chdir(tmp_path)  # the first render through the Python API, the rerun through the command
    videogen.generate(PROMPT, "one.mp4", model=str(tiny_ltx), image="first.png", frames=9, height=32, width=32,
                      steps=2, seed=3)
    (tmp_path / "elsewhere").mkdir()
    again = run_cli("generate", "--from", "../one.mp4.json", "-o", "two.mp4", cwd=tmp_path / "elsewhere")
    assert again.code == 0, again.err
    assert np.array_equal(read_frames(tmp_path / "one.mp4")[0], read_frames(tmp_path / "elsewhere" / "two.mp4")[0])


@pytest.mark.parametrize(("changes", "expected"), [
    ({"frames": 10}, "--frames 10 is not 4k+1: use 9 or 13"),
    ({"height": 48}, "--height 48 is not a multiple of 32: use 32 or 64"),
    ({"width": 16}, "--width 16 is not a multiple of 32: use 32"),
    ({"guidance_2": 2.0}, "--guidance-2 is for two-expert models"),
    ({"dynamic_guidance": True}, "this ltx model does not take it"),
])
def test_refused_by_name(tiny_ltx, changes, expected):
    """Refused before any weight is read (a UserError: exit code 2 on the command line)."""
    spec = RenderSpec(prompt=PROMPT, model=str(tiny_ltx), frames=9, height=32, width=32, steps=2)
    with pytest.raises(UserError, match=re.escape(expected)):
        resolve_spec(spec.replace(**changes), inspect_model(str(tiny_ltx)))


def test_geometry_exit_2_on_the_command_line(tiny_ltx, tmp_path, capsys, monkeypatch):
    code, err = run_main(capsys, monkeypatch, tmp_path, "generate", PROMPT, "-m", str(tiny_ltx), "--frames", "12",
                         "--height", "40")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "not 4k+1" in lines[0] and "not a multiple of 32" in lines[0]
    assert not list(tmp_path.iterdir())


def test_i2v_folder_needs_an_image(tiny_ltx, tmp_path):
    i2v = tmp_path / "tiny-ltx-i2v"  # the same weights, labelled for LTXImageToVideoPipeline
    shutil.copytree(tiny_ltx, i2v)
    index = json.loads((i2v / "model_index.json").read_text())
    index["_class_name"] = "LTXImageToVideoPipeline"
    (i2v / "model_index.json").write_text(json.dumps(index))
    spec = RenderSpec(prompt=PROMPT, model=str(i2v), frames=9, height=32, width=32)
    with pytest.raises(UserError, match="image-to-video: give the first frame with --image"):
        resolve_spec(spec, inspect_model(str(i2v)))


@pytest.mark.parametrize("name", ["ltx-video-0.9.1", "ltx-video-0.9.5"])
def test_presets(name):
    from videogen.families.base import Geometry
    from videogen.families.ltx import LTX

    preset = load_preset(name)
    assert preset.family == LTX.name and preset.model.startswith("Lightricks/LTX-Video-0.9.")
    v = preset.values
    assert v["fps"] == 24 and v["guidance"] > 1
    assert Geometry(8, 32, 32).problems(v["frames"], v["height"], v["width"]) == []  # the real VAE: 8x, 32x


@pytest.fixture(scope="module")
def ltx(tiny_ltx):
    from diffusers import LTXPipeline

    pipe = LTXPipeline.from_pretrained(tiny_ltx)
    pipe.set_progress_bar_config(disable=True)
    return Engine.load(RenderSpec(prompt=PROMPT, model=str(tiny_ltx))), pipe


@given(case=cases(frames=[1, 9, 17], sizes=[32, 64], steps=(2, 3)))  # one step is refused (min_steps)
@FEW
def test_parity_property(ltx, case: Case):
    """Any prompt, negative prompt, frames, size, steps, guidance and seed: LTXPipeline's frames (at 24 fps)."""
    engine, pipe = ltx
    spec = case.spec(engine.info.source.ref)
    ours = engine.render(spec).frames_float
    torch.manual_seed(case.seed)  # the decoder's injected noise comes from the global RNG; videogen seeds it so
    ref = pipe(prompt=case.prompt, negative_prompt=case.negative, num_frames=case.frames, height=case.height,
               width=case.width, num_inference_steps=case.steps, guidance_scale=case.guidance, frame_rate=24,
               generator=torch.Generator("cpu").manual_seed(case.seed), output_type="pt").frames[0]
    ref = ref.permute(0, 2, 3, 1)
    assert ours.shape == ref.shape == (case.frames, case.height, case.width, 3)
    assert (ours - ref).abs().max().item() <= 1e-4, case
