"""The Wan family beyond 2.1 text-to-video, against diffusers on the same tiny weights, seed and settings:
2.1 I2V and first-last-frame, 2.2 A14B (two experts) T2V and I2V, 2.2 TI2V-5B with and without an image;
plus the conditioning-image helpers, the image flags' errors, and an MP4 from --image through the real command."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import run_cli, run_inprocess
from tiny_wan_extra import make_image, save_wan21_i2v, save_wan22_a14b, save_wan22_ti2v

from videogen import images
from videogen.engine import Engine
from videogen.errors import UserError
from videogen.spec import RenderSpec

TOL = 1e-4
PROMPT = "a red cat runs on the beach"


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("wan-family")
    return {"i2v": save_wan21_i2v(root / "i2v"), "flf2v": save_wan21_i2v(root / "flf2v", flf2v=True),
            "a14b": save_wan22_a14b(root / "a14b"), "a14b-i2v": save_wan22_a14b(root / "a14b-i2v", i2v=True),
            "ti2v": save_wan22_ti2v(root / "ti2v")}


@pytest.fixture(scope="module")
def pictures(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pictures")
    # Aspect ratios unlike the renders', so the centre crop is exercised too.
    return {"first": make_image(root / "first.png", 40, 30, seed=1),
            "last": make_image(root / "last.png", 24, 36, seed=2),
            "other": make_image(root / "other.png", 32, 32, seed=3)}


_engines: dict[str, Engine] = {}
_pipelines: dict[tuple[str, str], object] = {}


def run(spec: RenderSpec):
    if spec.model not in _engines:
        _engines[spec.model] = Engine.load(spec)
    return _engines[spec.model].render(spec)


def render(spec: RenderSpec) -> torch.Tensor:
    return run(spec).frames_float


def reference(spec: RenderSpec) -> np.ndarray:
    """diffusers' own pipeline (picked by model_index.json), given the same fitted images as the engine."""
    from diffusers import DiffusionPipeline, WanImageToVideoPipeline

    # TI2V-5B is a WanPipeline checkpoint; diffusers renders it from an image with the I2V pipeline.
    cls = WanImageToVideoPipeline if spec.image is not None else DiffusionPipeline
    key = (spec.model, cls.__name__)
    if key not in _pipelines:
        _pipelines[key] = cls.from_pretrained(spec.model)
        _pipelines[key].set_progress_bar_config(disable=True)
    pipe = _pipelines[key]
    extra = {}
    if spec.image is not None:
        extra["image"] = images.load_fitted(spec.image, spec.width, spec.height)
    if spec.last_image is not None:
        extra["last_image"] = images.load_fitted(spec.last_image, spec.width, spec.height)
    if spec.guidance_2 is not None:
        extra["guidance_scale_2"] = spec.guidance_2
    out = pipe(prompt=spec.prompt, negative_prompt=spec.negative_prompt or "", height=spec.height, width=spec.width,
               num_frames=spec.frames, num_inference_steps=spec.steps, guidance_scale=spec.guidance,
               generator=torch.Generator("cpu").manual_seed(spec.seed), max_sequence_length=16, output_type="np",
               **extra)
    return out.frames[0]


CASES = [
    # (model, frames, height, width, guidance, guidance_2, image, last image, batched guidance)
    ("i2v", 5, 16, 16, 1.0, None, "first", None, False),
    ("i2v", 9, 16, 32, 4.0, None, "first", None, False),
    ("flf2v", 5, 16, 16, 1.0, None, "first", "last", False),
    ("flf2v", 9, 32, 16, 4.0, None, "first", "last", False),
    ("flf2v", 5, 16, 16, 3.0, None, "first", "last", True),
    ("a14b", 5, 16, 16, 1.0, None, None, None, False),
    ("a14b", 5, 16, 32, 4.0, 2.0, None, None, False),
    ("a14b-i2v", 5, 16, 16, 1.0, None, "first", None, False),
    ("a14b-i2v", 5, 16, 16, 3.5, 1.5, "first", None, False),
    ("a14b-i2v", 5, 16, 16, 3.0, None, "first", "last", False),
    ("ti2v", 5, 32, 32, 1.0, None, None, None, False),
    ("ti2v", 5, 32, 64, 4.0, None, None, None, False),
    ("ti2v", 5, 32, 32, 1.0, None, "first", None, False),
    ("ti2v", 9, 64, 32, 4.0, None, "first", None, False),
]


@pytest.mark.parametrize("name,frames,height,width,guidance,guidance_2,image,last,batch_cfg", CASES)
def test_engine_matches_diffusers(models, pictures, name, frames, height, width, guidance, guidance_2, image,
                                  last, batch_cfg):
    spec = RenderSpec(prompt=PROMPT, model=str(models[name]), frames=frames, height=height, width=width, steps=3,
                      guidance=guidance, guidance_2=guidance_2, seed=7, negative_prompt="blurry dog",
                      image=str(pictures[image]) if image else None,
                      last_image=str(pictures[last]) if last else None, max_sequence_length=16,
                      batch_cfg=batch_cfg)
    ours = render(spec).numpy()
    ref = reference(spec)
    assert ours.shape == ref.shape == (frames, height, width, 3)
    assert ref.std() > 1e-3, "reference frames are constant: the comparison would prove nothing"
    diff = float(np.abs(ours - ref).max())
    print(f"parity {name} image={image} last={last} g={guidance}/{guidance_2} cfg-batch={batch_cfg}: "
          f"max abs diff {diff:.2e}")
    assert diff <= TOL


def test_images_and_experts_change_the_frames(models, pictures):
    """Each input the parity cases rely on has an effect, so parity is not vacuous."""
    def frames(name: str, **kw) -> torch.Tensor:
        base = dict(prompt=PROMPT, model=str(models[name]), frames=5, height=16, width=16, steps=2, guidance=1.0,
                    seed=3, max_sequence_length=16)
        return render(RenderSpec(**{**base, **kw}))

    def differ(a: torch.Tensor, b: torch.Tensor) -> bool:  # by far more than the parity tolerance
        return float((a - b).abs().max()) > 10 * TOL

    first, last, other = (str(pictures[k]) for k in ("first", "last", "other"))
    assert differ(frames("i2v", image=first), frames("i2v", image=other))
    assert differ(frames("flf2v", image=first, last_image=last), frames("flf2v", image=first, last_image=other))
    # --guidance 1 with --guidance-2 > 1 still guides the low-noise expert (the official Wan 2.2 behaviour).
    assert differ(frames("a14b"), frames("a14b", guidance_2=3.0))
    assert differ(frames("ti2v", height=32, width=32), frames("ti2v", height=32, width=32, image=first))


def test_run_record_names_the_expert_split_and_clean_first_frame(models, pictures):
    def record(name: str, **kw) -> dict:
        spec = RenderSpec(prompt=PROMPT, model=str(models[name]), frames=1, steps=2, seed=1, max_sequence_length=16,
                          **kw)
        return run(spec).record

    rec = record("a14b", height=16, width=16, guidance=4.0, guidance_2=2.0)
    assert rec["sampling"]["boundary_timestep"] == pytest.approx(875.0) and rec["sampling"]["guidance_2"] == 2.0
    assert rec["spec"]["guidance_2"] == 2.0
    rec = record("ti2v", height=32, width=32, guidance=1.0, image=str(pictures["first"]))
    sampling = dict(rec["sampling"])
    assert len(sampling.pop("sigmas")) == 3  # the effective schedule: two steps and the final 0
    assert sampling == {"per_token_timesteps": True, "clean_first_frame": True}


def test_model_specific_refusals_come_before_loading(models, pictures):
    """What only a model's configs tell (FLF2V or not, one expert or two) is refused before any weight is read."""
    from videogen.engine import inspect_model, resolve_spec

    base = RenderSpec(prompt=PROMPT, frames=5, height=16, width=16, steps=1, seed=1, image=str(pictures["first"]))
    last = str(pictures["last"])
    cases = [
        ("i2v", dict(last_image=last), "takes no --last-image"),
        ("flf2v", {}, "give the last frame with --last-image"),
        ("flf2v", dict(last_image=last, frames=1), "needs more than one frame"),
        ("i2v", dict(guidance_2=2.0), "two-expert models"),
        ("ti2v", dict(height=32, width=32, last_image=last), "cannot take --last-image"),
    ]
    for name, changes, words in cases:
        with pytest.raises(UserError, match=words):
            resolve_spec(base.replace(model=str(models[name]), **changes), inspect_model(str(models[name])))
    # Wan 2.2 I2V (no CLIP) takes a last frame too, as diffusers' pipeline does.
    resolve_spec(base.replace(model=str(models["a14b-i2v"]), last_image=last), inspect_model(str(models["a14b-i2v"])))


def test_ti2v_defaults_are_its_own(models):
    from videogen.engine import inspect_model, resolve_spec

    spec = resolve_spec(RenderSpec(prompt=PROMPT, model=str(models["ti2v"])), inspect_model(str(models["ti2v"])))
    assert (spec.frames, spec.height, spec.width, spec.fps) == (121, 704, 1280, 24)
    spec = resolve_spec(RenderSpec(prompt=PROMPT, model=str(models["a14b"])), inspect_model(str(models["a14b"])))
    assert (spec.frames, spec.height, spec.width, spec.fps) == (81, 480, 832, 16)


def test_fit_image_crops_the_centre_and_says_so(caplog):
    from PIL import Image

    assert images.crop_box(640, 480, 832, 480) == (0, 55, 640, 424)  # wider target: rows cut top and bottom
    assert images.crop_box(480, 640, 832, 480) == (0, 181, 480, 458)
    assert images.crop_box(300, 100, 100, 100) == (100, 0, 200, 100)  # taller target: sides cut
    # Left half black, right half white: a square crop of the middle keeps both, centred.
    im = Image.new("RGB", (60, 20))
    im.paste((255, 255, 255), (30, 0, 60, 20))
    with caplog.at_level(logging.INFO, logger="videogen"):
        out = images.fit_image(im, 10, 10)
    assert out.size == (10, 10)
    row = np.asarray(out)[5, :, 0]
    assert row[:4].max() < 30 and row[-4:].min() > 225
    assert "image 60x20 resized to 10x10 (centre crop 20x20 at (20,0))" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="videogen"):
        assert images.fit_image(im, 60, 20) is im
    assert caplog.text == ""


def test_unreadable_image_is_a_user_error(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    with pytest.raises(UserError, match="--image: cannot read"):
        images.load_image(bad)
    with pytest.raises(UserError, match="--last-image: file not found"):
        images.load_image(tmp_path / "nope.png", "--last-image")


def run_main(capsys, *args: str) -> tuple[int, str]:
    r = run_inprocess(capsys, *args)
    return r.code, r.err


def test_image_flag_errors_exit_2(models, pictures, tmp_path, capsys):
    common = ["--frames", "5", "--height", "16", "--width", "16", "--steps", "1", "-o", str(tmp_path / "x.mp4")]
    cases = [
        ([str(models["a14b"]), "--image", str(pictures["first"])], "text-to-video only and cannot take --image"),
        ([str(models["i2v"])], "is image-to-video: give the first frame with --image"),
        ([str(models["i2v"]), "--image", str(tmp_path / "missing.png")], "--image: file not found"),
        ([str(models["a14b"]), "--last-image", str(pictures["last"])], "cannot take --last-image"),
    ]
    for model_args, words in cases:
        code, err = run_main(capsys, "generate", PROMPT, "-m", *model_args, *common)
        assert code == 2, err
        assert words in err and "Traceback" not in err
    assert not (tmp_path / "x.mp4").exists()


def test_cli_writes_mp4_from_image(models, pictures, tmp_path):
    from videogen.video import read_frames

    out = tmp_path / "clip.mp4"
    exe = Path(sys.executable).with_name("videogen")
    proc = subprocess.run([str(exe), "generate", PROMPT, "-m", str(models["i2v"]), "--image", str(pictures["first"]),
                           "--frames", "5", "--height", "16", "--width", "32", "--steps", "1", "--seed", "4",
                           "-o", str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(out)
    assert "image 40x30 resized to 32x16 (centre crop 40x20 at (0,5))" in proc.stderr
    frames, fps = read_frames(out)
    assert frames.shape == (5, 16, 32, 3) and fps == 16


@pytest.mark.parametrize("name,multiple", [("wan2.1-i2v-14b-480p", 16), ("wan2.1-i2v-14b-720p", 16),
                                           ("wan2.1-flf2v-14b-720p", 16), ("wan2.2-t2v-a14b", 16),
                                           ("wan2.2-i2v-a14b", 16), ("wan2.2-ti2v-5b", 32)])
def test_presets_fit_their_models(name, multiple):
    """Each preset names a Wan-AI diffusers repo and sizes its model takes (Wan 2.2's VAE has stride 16)."""
    from videogen import presets
    from videogen.families.base import Geometry

    p = presets.load_preset(name)
    v = p.values
    assert p.family == "wan" and v["model"].startswith("Wan-AI/Wan2.") and v["model"].lower().endswith("-diffusers")
    assert Geometry(4, multiple, multiple).problems(v["frames"], v["height"], v["width"]) == []
    assert v["negative_prompt"].endswith("背景人很多，倒着走")
    assert ("guidance_2" in v) == ("a14b" in name)


def test_a_prompt_past_the_token_limit_is_cut_with_a_warning(tmp_path):
    """The built-in model's text encoder reads 16 tokens: a longer prompt still renders, stderr says how many
    tokens were cut, and the run record keeps the counts; a short prompt gets neither."""
    prompt = " ".join(["a red circle moving left on a black background"] * 3)  # 27 words and </s>
    long_out, short_out = tmp_path / "long.mp4", tmp_path / "short.mp4"
    run = run_cli("generate", prompt, "--seed", "1", "--steps", "2", "-o", str(long_out))
    assert run.code == 0, run.err
    assert "the prompt has 28 tokens; this model's text encoder reads 16, the last 12 are cut off" in run.err
    record = json.loads(Path(f"{long_out}.json").read_text())
    assert record["prompt_truncated"] == {"tokens": 28, "kept": 16}
    import videogen  # the short prompt through the Python API, in this process: no second start-up

    result = videogen.generate("a red circle moving left", short_out, seed=1, steps=2)
    assert result.record["prompt_truncated"] is None
    assert json.loads(Path(f"{short_out}.json").read_text())["prompt_truncated"] is None
