"""CogVideoX through videogen's one loop: parity with diffusers' pipelines (both schedulers, 1.0 and 1.5, T2V and
I2V, dynamic guidance), the CLI with a preset, and refused geometry."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import run_cli, run_inprocess
from hypothesis import given
from properties import FEW, Case, cases
from tiny_cogvideox import save_tiny_cogvideox

from videogen.engine import Engine, inspect_model, resolve_spec
from videogen.errors import UserError
from videogen.presets import load_preset
from videogen.spec import RenderSpec

PROMPT = "a red cat runs on the beach"
NEGATIVE = "blue dog"
FRAMES, HEIGHT, STEPS, SEED = 9, 16, 2, 11
# The tiny transformers are made for 16x32 (their sample size); 5b-I2V takes only that, the others any size.
# Image-to-video renders at 16x32, the picture's aspect ratio: diffusers stretches a picture to the render size
# where videogen crops it to the aspect ratio first, so the two agree when the ratios match.
WIDTH = {"5b-i2v": 32, "1.5-i2v": 32}


@pytest.fixture(scope="module")
def tiny_cog(tmp_path_factory):
    """Variant name -> saved folder, built on first use."""
    root = tmp_path_factory.mktemp("models")
    built: dict[str, Path] = {}

    def get(variant: str) -> Path:
        if variant not in built:
            built[variant] = save_tiny_cogvideox(root / f"tiny-cog-{variant}", variant)
        return built[variant]

    return get


@pytest.fixture(scope="module")
def image64x32(tmp_path_factory) -> Path:
    """A 64x32 picture: both sides must resize it to 32x16 (Lanczos) themselves."""
    from PIL import Image

    path = tmp_path_factory.mktemp("images") / "first.png"
    yy, xx = np.mgrid[0:32, 0:64]
    rgb = np.stack([xx * 8, 255 - yy * 8, (xx * yy) % 256], axis=-1) % 256
    Image.fromarray(rgb.astype(np.uint8)).save(path)
    return path


def reference(folder: Path, image: Path | None, width: int, guidance: float, dynamic: bool) -> torch.Tensor:
    """diffusers' own pipeline on the same folder and seed: frames [F,H,W,3] in [0,1]."""
    from diffusers import CogVideoXImageToVideoPipeline, CogVideoXPipeline
    from PIL import Image

    kwargs = {}
    if image is not None:
        pipe = CogVideoXImageToVideoPipeline.from_pretrained(folder)
        kwargs["image"] = Image.open(image).convert("RGB")
    else:
        pipe = CogVideoXPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    out = pipe(prompt=PROMPT, negative_prompt=NEGATIVE, num_frames=FRAMES, height=HEIGHT, width=width,
               num_inference_steps=STEPS, guidance_scale=guidance, use_dynamic_cfg=dynamic,
               generator=torch.Generator("cpu").manual_seed(SEED), output_type="pt", **kwargs).frames[0]
    return out.permute(0, 2, 3, 1)


# (variant, guidance, dynamic guidance): 2b = DDIM + sin-cos positions; the others DPM (generator noise every step)
# with RoPE; 5b-i2v a learned position table; 1.5 temporal patches and front padding; 1.5-i2v the offset embedding.
CASES = [("2b", 6.0, False), ("5b", 6.0, True), ("5b-i2v", 6.0, False), ("1.5", 1.0, False), ("1.5-i2v", 6.0, True)]


@pytest.mark.parametrize(("variant", "guidance", "dynamic"), CASES)
def test_parity_with_diffusers(tiny_cog, image64x32, variant, guidance, dynamic):
    folder = tiny_cog(variant)
    image = image64x32 if variant.endswith("i2v") else None
    width = WIDTH.get(variant, HEIGHT)
    spec = RenderSpec(prompt=PROMPT, model=str(folder), negative_prompt=NEGATIVE, frames=FRAMES, height=HEIGHT,
                      width=width, steps=STEPS, guidance=guidance, dynamic_guidance=dynamic, seed=SEED,
                      image=str(image) if image else None)
    ours = Engine.load(spec).render(spec).frames_float
    theirs = reference(folder, image, width, guidance, dynamic)
    assert ours.shape == theirs.shape == (FRAMES, HEIGHT, width, 3)
    assert ours.std() > 0.05  # not a constant picture, so the comparison can fail
    diff = (ours - theirs).abs().max().item()
    print(f"cogvideox {variant} guidance={guidance} dynamic={dynamic}: max abs diff {diff:.2e}")
    assert diff <= 1e-4


def test_dynamic_guidance_changes_the_video(tiny_cog):
    spec = RenderSpec(prompt=PROMPT, model=str(tiny_cog("2b")), frames=FRAMES, height=HEIGHT, width=HEIGHT,
                      steps=1, guidance=6.0, seed=SEED)
    engine = Engine.load(spec)
    plain = engine.render(spec).frames_float
    ramped = engine.render(spec.replace(dynamic_guidance=True)).frames_float
    assert (plain - ramped).abs().max() > 1e-3


def run_main(capsys, monkeypatch, cwd: Path, *args: str) -> tuple[int, str]:
    """The real entry point in this process (exit code, stderr): bad input never reaches a model load."""
    monkeypatch.chdir(cwd)
    r = run_inprocess(capsys, *args)
    return r.code, r.err


def test_cli_writes_an_mp4_with_a_preset(tiny_cog, tmp_path):
    from videogen.video import read_frames

    preset = tmp_path / "tiny-cog.yaml"
    preset.write_text(f"family: cogvideox\nmodel: {tiny_cog('1.5')}\nframes: 9\nheight: 16\nwidth: 32\n"
                      "steps: 2\nguidance: 6.0\ndynamic_guidance: true\nfps: 16\n")
    out = tmp_path / "cog.mp4"
    r = run_cli("generate", PROMPT, "--preset", str(preset), "--seed", "3", "-o", str(out), cwd=tmp_path,
                env={"HF_HUB_OFFLINE": "1"})
    assert r.code == 0, r.err
    assert r.out.strip() == str(out)
    frames, fps = read_frames(out)
    assert frames.shape == (9, 16, 32, 3) and fps == 16
    record = json.loads(Path(str(out) + ".json").read_text())
    assert record["family"] == "cogvideox" and record["scheduler"]["class"] == "CogVideoXDPMScheduler"
    assert record["spec"]["dynamic_guidance"] is True


@pytest.mark.parametrize(("variant", "changes", "expected"), [
    ("2b", {"frames": 13}, "--frames 13 is not 8k+1: use 9 or 17"),
    ("2b", {"height": 24}, "--height 24 is not a multiple of 16: use 16 or 32"),
    ("5b-i2v", {"width": 16}, "takes only --height 16 --width 32"),
    ("1.5", {"width": 48}, "at most --height 16 --width 32"),
    ("2b", {"scheduler": "euler"}, "--scheduler and --flow-shift do not apply"),
    ("5b", {"guidance_2": 3.0}, "--guidance-2 is for two-expert models"),
])
def test_refused_by_name(tiny_cog, image64x32, variant, changes, expected):
    """Refused before any weight is read (a UserError: exit code 2 on the command line)."""
    folder = tiny_cog(variant)
    spec = RenderSpec(prompt=PROMPT, model=str(folder), frames=9, height=16, width=32,
                      image=str(image64x32) if variant.endswith("i2v") else None)
    with pytest.raises(UserError, match=re.escape(expected)):
        resolve_spec(spec.replace(**changes), inspect_model(str(folder)))


def test_geometry_exit_2_on_the_command_line(tiny_cog, tmp_path, capsys, monkeypatch):
    code, err = run_main(capsys, monkeypatch, tmp_path, "generate", PROMPT, "-m", str(tiny_cog("2b")), "--frames", "5",
                         "--width", "20")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "not 8k+1" in lines[0] and "not a multiple of 16" in lines[0]
    assert not list(tmp_path.iterdir())


def test_i2v_model_needs_an_image(tiny_cog):
    folder = tiny_cog("5b-i2v")
    with pytest.raises(UserError, match="image-to-video: give the first frame with --image"):
        resolve_spec(RenderSpec(prompt=PROMPT, model=str(folder), frames=9, height=16, width=16),
                     inspect_model(str(folder)))


PRESETS = {"cogvideox-2b": ("THUDM/CogVideoX-2b", 8, False), "cogvideox-5b": ("THUDM/CogVideoX-5b", 8, True),
           "cogvideox-5b-i2v": ("THUDM/CogVideoX-5b-I2V", 8, True),
           "cogvideox1.5-5b": ("THUDM/CogVideoX1.5-5B", 16, True),
           "cogvideox1.5-5b-i2v": ("THUDM/CogVideoX1.5-5B-I2V", 16, True)}


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets(name):
    from videogen.families.base import Geometry

    model, fps, dynamic = PRESETS[name]
    preset = load_preset(name)
    assert preset.family == "cogvideox" and preset.model == model
    v = preset.values
    assert v["fps"] == fps and v["dynamic_guidance"] is dynamic and v["guidance"] == 6.0
    assert Geometry(8, 16, 16).problems(v["frames"], v["height"], v["width"]) == []  # the real VAE: 4x, 8x, patch 2


@pytest.fixture(scope="module")
def cog5b(tiny_cog):
    from diffusers import CogVideoXPipeline

    pipe = CogVideoXPipeline.from_pretrained(tiny_cog("5b"))
    pipe.set_progress_bar_config(disable=True)
    return Engine.load(RenderSpec(prompt=PROMPT, model=str(tiny_cog("5b")))), pipe


@given(case=cases(frames=[1, 9, 17], sizes=[16, 32]))
@FEW
def test_parity_property(cog5b, case: Case):
    """Any prompt, negative prompt, frames, size, steps, guidance and seed: CogVideoXPipeline's frames (5b: the
    DPM scheduler, which draws noise at every step, and RoPE fitted to the size)."""
    engine, pipe = cog5b
    spec = case.spec(engine.info.source.ref)
    ours = engine.render(spec).frames_float
    ref = pipe(prompt=case.prompt, negative_prompt=case.negative, num_frames=case.frames, height=case.height,
               width=case.width, num_inference_steps=case.steps, guidance_scale=case.guidance,
               generator=torch.Generator("cpu").manual_seed(case.seed), output_type="pt").frames[0]
    ref = ref.permute(0, 2, 3, 1)
    assert ours.shape == ref.shape == (case.frames, case.height, case.width, 3)
    assert (ours - ref).abs().max().item() <= 1e-4, case


def test_diffusers_format_lora_matches_diffusers_loader(tiny_cog, tmp_path):
    """A LoRA in diffusers' PEFT names on every attention and feed-forward layer, at weight 0.7: videogen's merge
    against CogVideoXPipeline's own `load_lora_weights` + `set_adapters`."""
    from diffusers import CogVideoXPipeline
    from tiny_lora import model_shapes, random_lora, write_diffusers

    folder = tiny_cog("5b")
    layers = [k.removesuffix(".weight") for k, v in model_shapes(folder).items()
              if len(v) == 2 and k.startswith("transformer_blocks.") and ".norm" not in k]
    path = write_diffusers(random_lora(folder, seed=3, modules=layers), tmp_path / "lora.safetensors")
    spec = RenderSpec(prompt=PROMPT, model=str(folder), negative_prompt=NEGATIVE, frames=FRAMES, height=HEIGHT,
                      width=HEIGHT, steps=STEPS, guidance=6.0, seed=SEED, loras=(f"{path}:0.7",))
    engine = Engine.load(spec)
    ours = engine.render(spec).frames_float
    plain = engine.render(replace(spec, loras=())).frames_float
    pipe = CogVideoXPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    pipe.load_lora_weights(str(path), adapter_name="a")
    pipe.set_adapters(["a"], [0.7])
    ref = pipe(prompt=PROMPT, negative_prompt=NEGATIVE, num_frames=FRAMES, height=HEIGHT, width=HEIGHT,
               num_inference_steps=STEPS, guidance_scale=6.0, generator=torch.Generator("cpu").manual_seed(SEED),
               output_type="pt").frames[0].permute(0, 2, 3, 1)
    assert float((ours - plain).abs().max()) > 0.01  # the LoRA changes the frames
    assert float((ours - ref).abs().max()) <= 1e-4
