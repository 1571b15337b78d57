"""HunyuanVideo 1.5: frames equal diffusers' HunyuanVideo15Pipeline's and HunyuanVideo15ImageToVideoPipeline's on
tiny random models loaded through the real loader, the guider's scale as --guidance, the image's aspect-ratio bucket
as the size, refusals before loading, and the CLI."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import run_cli, run_inprocess
from hypothesis import given
from hypothesis import strategies as st
from properties import FEW, Case, cases
from tiny import without_weights
from tiny_hunyuan15 import TARGET_SIZE, save_tiny_hunyuan15

from videogen.engine import Engine
from videogen.families.hunyuan15 import SYSTEM_MESSAGE, glyph_text, nearest_bucket
from videogen.spec import RenderSpec
from videogen.video import read_frames

TOL = 1e-4  # the pipelines' frames, within 1e-4 on the 0..1 scale (well inside 1/255)
TOKENS = 32  # Qwen tokens after the template (the pipelines' 1000 in the default-settings tests), for speed
PROMPT = 'a red cat runs on the beach by a sign reading "hello"'


@pytest.fixture(scope="module")
def t2v_folder(tmp_path_factory) -> Path:
    return save_tiny_hunyuan15(tmp_path_factory.mktemp("models") / "tiny-hunyuan15")


@pytest.fixture(scope="module")
def i2v_folder(tmp_path_factory) -> Path:
    # a mean-flow transformer: the image-to-video pipeline also hands it the next timestep
    return save_tiny_hunyuan15(tmp_path_factory.mktemp("models") / "tiny-hunyuan15-i2v", task="i2v", meanflow=True)


def load(folder: Path) -> Engine:
    return Engine.load(RenderSpec(prompt="x", model=str(folder), device="cpu", dtype="float32"))


@pytest.fixture(scope="module")
def engine(t2v_folder) -> Engine:
    return load(t2v_folder)


@pytest.fixture(scope="module")
def pipe(t2v_folder):
    from diffusers import HunyuanVideo15Pipeline

    p = HunyuanVideo15Pipeline.from_pretrained(t2v_folder)
    p.set_progress_bar_config(disable=True)
    return p


def reference(pipe, guidance: float | None, seed: int, tokens: int = 1000, **call) -> torch.Tensor:
    """The pipeline's frames [F,H,W,3]; `guidance` sets its guider's scale (None keeps the saved guider), `tokens`
    its Qwen length (`tokenizer_max_length`, 1000 as it comes)."""
    from diffusers import ClassifierFreeGuidance

    saved = pipe.guider, pipe.tokenizer_max_length
    if guidance is not None:
        pipe.guider = ClassifierFreeGuidance(guidance_scale=guidance)
    pipe.tokenizer_max_length = tokens
    try:
        out = pipe(generator=torch.Generator("cpu").manual_seed(seed), output_type="pt", **call).frames[0]
    finally:
        pipe.guider, pipe.tokenizer_max_length = saved
    return out.permute(0, 2, 3, 1).float()


def render(engine: Engine, **fields) -> torch.Tensor:
    spec = {"prompt": PROMPT, "model": engine.info.source.ref, "frames": 5, "height": 32, "width": 48, "steps": 2,
            "seed": 5, "device": "cpu", "dtype": "float32", "max_sequence_length": TOKENS, **fields}
    return engine.render(RenderSpec(**spec)).frames_float


@pytest.mark.parametrize("guidance,negative", [(1.0, None), (4.5, None), (4.5, "blue dog")])
def test_text_to_video_matches_pipeline(engine, pipe, guidance, negative):
    ours = render(engine, guidance=guidance, negative_prompt=negative)
    ref = reference(pipe, guidance, 5, TOKENS, prompt=PROMPT, negative_prompt=negative, num_frames=5, height=32,
                    width=48, num_inference_steps=2)
    assert ours.shape == ref.shape == (5, 32, 48, 3)
    assert ours.std() > 0.02  # not a constant picture, so the comparison can fail
    assert (ours - ref).abs().max().item() <= TOL


def test_exact_sigmas_match_pipeline(engine, pipe):
    """--sigmas go to the scheduler (before its shift) as the pipeline's `sigmas` argument does."""
    sigmas = (1.0, 0.6, 0.3)
    ours = render(engine, guidance=3.0, steps=None, sigmas=sigmas)
    ref = reference(pipe, 3.0, 5, TOKENS, prompt=PROMPT, num_frames=5, height=32, width=48, num_inference_steps=3,
                    sigmas=list(sigmas))
    assert (ours - ref).abs().max().item() <= TOL
    assert (ours - render(engine, guidance=3.0, steps=3)).abs().max() > 1e-3  # not the default spacing


def test_prompt_quoted_text_guidance_and_negative_reach_the_transformer(engine):
    base = render(engine, guidance=4.5)
    assert (base - render(engine, guidance=2.0)).abs().max() > 1e-3
    # the quoted text goes to ByT5 (the same words unquoted reach only Qwen)
    assert (base - render(engine, guidance=4.5, prompt=PROMPT.replace('"hello"', '"world"'))).abs().max() > 1e-3
    assert (base - render(engine, guidance=4.5, negative_prompt="blue dog")).abs().max() > 1e-3
    # guidance 1 runs no negative pass: the negative prompt changes nothing, as in the guider
    assert torch.equal(render(engine, guidance=1.0), render(engine, guidance=1.0, negative_prompt="blue dog"))


def test_defaults_come_from_the_folder(engine, pipe):
    """Unsized, the render is the 16:9 bucket at the transformer's target_size and the guidance the guider's
    (6.0 in the tiny folder), as in the pipeline called without height, width or guider changes."""
    spec = RenderSpec(prompt=PROMPT, model=engine.info.source.ref, frames=5, steps=2, seed=9, device="cpu",
                      dtype="float32")
    result = engine.render(spec)
    where = result.spec.extras["where"]
    assert (result.spec.height, result.spec.width, result.spec.guidance) == (32, 32, 6.0)
    assert "target_size 32" in where["height"] and where["guidance"] == "the model's guider config"
    assert result.spec.fps == 24 and result.record["family"] == "hunyuan15"
    ref = reference(pipe, None, 9, prompt=PROMPT, num_frames=5, num_inference_steps=2)
    assert (result.frames_float - ref).abs().max().item() <= TOL


def test_buckets_and_glyph_text_follow_diffusers():
    """The size and ByT5 rules are our own code: checked against diffusers' helpers on many inputs."""
    from diffusers import HunyuanVideo15Pipeline
    from diffusers.pipelines.hunyuan_video1_5.image_processor import HunyuanVideo15ImageProcessor
    from diffusers.pipelines.hunyuan_video1_5.pipeline_hunyuan_video1_5 import extract_glyph_texts

    rng = np.random.default_rng(0)
    for target, step in ((32, 16), (640, 16), (960, 16), (48, 8)):
        proc = HunyuanVideo15ImageProcessor(vae_scale_factor=step)
        for h, w in [(9, 16), (16, 9), (1, 1), (30, 40), (47, 33), *rng.integers(1, 3000, (40, 2)).tolist()]:
            assert nearest_bucket(h, w, target, step) == tuple(proc.calculate_default_height_width(h, w, target))
    for prompt in ["no quotes", 'a "b" c', 'a "b" and "c" and "b"', "“x” and “y”", 'one "two', '"" empty']:
        assert glyph_text(prompt) == extract_glyph_texts(prompt)
    signature = inspect.signature(HunyuanVideo15Pipeline._get_mllm_prompt_embeds).parameters
    assert signature["system_message"].default == SYSTEM_MESSAGE and signature["crop_start"].default == 108


@given(case=cases(frames=[1, 5, 9], sizes=[16, 32, 48], steps=(1, 3)), quote=st.sampled_from(["", ' "hello"']))
@FEW
def test_parity_property(engine, pipe, case: Case, quote: str):
    """Any prompt (with or without quoted text), negative prompt, frames, size, steps, guidance and seed: the
    pipeline's frames."""
    case = Case(**{**case.__dict__, "prompt": case.prompt + quote})
    ours = engine.render(case.spec(engine.info.source.ref, device="cpu", dtype="float32",
                                   max_sequence_length=TOKENS)).frames_float
    ref = reference(pipe, case.guidance, case.seed, TOKENS, prompt=case.prompt, negative_prompt=case.negative,
                    num_frames=case.frames, height=case.height, width=case.width, num_inference_steps=case.steps)
    assert ours.shape == ref.shape == (case.frames, case.height, case.width, 3)
    assert (ours - ref).abs().max().item() <= TOL, case


# --- image-to-video -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def i2v_engine(i2v_folder) -> Engine:
    return load(i2v_folder)


@pytest.fixture(scope="module")
def i2v_pipe(i2v_folder):
    from diffusers import HunyuanVideo15ImageToVideoPipeline

    p = HunyuanVideo15ImageToVideoPipeline.from_pretrained(i2v_folder)
    p.set_progress_bar_config(disable=True)
    return p


def noise_image(path: Path, width: int, height: int, seed: int = 0) -> Path:
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


@pytest.mark.parametrize("size,guidance,negative,bucket", [
    ((40, 30), 1.0, None, (32, 32)),  # cut to the square bucket: resized to cover, centre cropped
    ((33, 47), 5.0, "blue dog", (32, 32)),
    ((96, 32), 5.0, None, (16, 32)),  # 3:1, one bucket short of its own ratio (as the pipeline rounds it)
])
def test_image_to_video_matches_pipeline(i2v_engine, i2v_pipe, tmp_path, size, guidance, negative, bucket):
    from PIL import Image

    image = noise_image(tmp_path / "first.png", *size)
    result = i2v_engine.render(RenderSpec(
        prompt=PROMPT, image=str(image), negative_prompt=negative, model=i2v_engine.info.source.ref, frames=5, steps=3,
        guidance=guidance, seed=3, device="cpu", dtype="float32"))
    ref = reference(i2v_pipe, guidance, 3, image=Image.open(image), prompt=PROMPT, negative_prompt=negative,
                    num_frames=5, num_inference_steps=3)
    assert (result.spec.height, result.spec.width) == bucket == ref.shape[1:3]
    assert "--image's aspect-ratio bucket" in result.record["sampling"]["size_from"]  # the record says why
    assert result.frames_float.std() > 0.02
    assert (result.frames_float - ref).abs().max().item() <= TOL


def test_next_timestep_reaches_a_mean_flow_transformer(i2v_engine):
    """The parity above covers timestep_r only if the transformer reads it."""
    tr = i2v_engine.model.transformer
    assert tr.config.use_meanflow
    x = torch.randn(1, 9, 2, 1, 2)
    kw = dict(hidden_states=x, timestep=torch.tensor([900.0]), encoder_hidden_states=torch.randn(1, 4, 16),
              encoder_attention_mask=torch.ones(1, 4), encoder_hidden_states_2=torch.randn(1, 3, 32),
              encoder_attention_mask_2=torch.ones(1, 3), image_embeds=torch.randn(1, 4, 12), return_dict=False)
    with torch.no_grad():
        a = tr(timestep_r=torch.tensor([500.0]), **kw)[0]
        b = tr(timestep_r=torch.tensor([100.0]), **kw)[0]
    assert (a - b).abs().max() > 1e-4


def test_image_to_video_size_is_the_images_bucket(i2v_folder, tmp_path, capsys):
    """A --height/--width that disagrees with the image's bucket is refused in one line, before loading."""
    image = noise_image(tmp_path / "wide.png", 64, 16)
    bare = without_weights(i2v_folder, tmp_path / "bare")
    out = tmp_path / "x.mp4"
    r = run_inprocess(capsys, "generate", PROMPT, "-m", str(bare), "--image", str(image), "--width", "32",
                      "--height", "32", "--frames", "5", "-q", "-o", str(out))
    assert r.code == 2 and r.err.count("\n") == 1 and "Traceback" not in r.err
    assert r.err.startswith("error: --height 32: this HunyuanVideo 1.5 image-to-video model renders 64x16 "
                            "(the 64x16 --image's aspect-ratio bucket at target_size 32)"), r.err
    assert not out.exists()


# --- refusals and the command line ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bare_t2v(t2v_folder, tmp_path_factory) -> Path:
    """A copy whose weight files hold none of the model's tensors: a render of it fails at loading."""
    return without_weights(t2v_folder, tmp_path_factory.mktemp("bare") / "tiny-hunyuan15")


def generate(capsys, folder: Path, out: Path, *flags: str):
    return run_inprocess(capsys, "generate", PROMPT, "-m", str(folder), "-q", "-o", str(out), *flags)


def test_the_bare_copy_gets_past_every_check(bare_t2v, tmp_path, capsys):
    """Without a bad flag its render passes the checks and fails only at loading, on the missing weights."""
    r = generate(capsys, bare_t2v, tmp_path / "x.mp4", "--frames", "5", "--height", "32", "--width", "32")
    assert r.code == 2 and "its weight files lack" in r.err and not (tmp_path / "x.mp4").exists(), r.err


@pytest.mark.parametrize("flags,expected", [
    (["--frames", "10"], "hunyuan15 model: --frames 10 is not 4k+1: use 9 or 13"),
    (["--height", "40"], "--height 40 is not a multiple of 16: use 32 or 48"),
    (["--true-guidance", "3"], "--true-guidance is for guidance-distilled models (HunyuanVideo)"),
    (["--scheduler", "unipc"], "HunyuanVideo 1.5 samples with its own scheduler only (--scheduler euler)"),
])
def test_refused_before_loading(bare_t2v, tmp_path, capsys, flags, expected):
    """On the weightless copy (see above): refused in one line, so before any weight was read."""
    r = generate(capsys, bare_t2v, tmp_path / "x.mp4", "--frames", "5", "--height", "32", "--width", "32", *flags)
    assert r.code == 2 and r.err.count("\n") == 1 and expected in r.err, r.err
    assert not (tmp_path / "x.mp4").exists()


def test_guider_settings_videogen_does_not_apply_are_refused(bare_t2v, tmp_path, capsys):
    folder = tmp_path / "rescaled"
    import shutil

    shutil.copytree(bare_t2v, folder)
    cfg = folder / "guider" / "guider_config.json"
    cfg.write_text(json.dumps({**json.loads(cfg.read_text()), "guidance_rescale": 0.7}))
    r = generate(capsys, folder, tmp_path / "x.mp4", "--frames", "5")
    assert r.code == 2 and r.err.count("\n") == 1
    assert "the guider config sets guidance_rescale 0.7; videogen applies only its guidance_scale" in r.err


def test_models_lists_the_pipelines(capsys):
    r = run_inprocess(capsys, "models")
    line = next(x for x in r.out.splitlines() if x.startswith("hunyuan15"))
    assert "HunyuanVideo15Pipeline" in line and "HunyuanVideo15ImageToVideoPipeline" in line
    for preset in ("480p-t2v", "720p-t2v", "480p-i2v", "720p-i2v-distilled", "480p-i2v-step-distilled"):
        assert f"hunyuanvideo1.5-{preset} " in r.out


def test_cli_writes_mp4(t2v_folder, tmp_path):
    out = tmp_path / "clip.mp4"
    proc = run_cli("generate", PROMPT, "-m", str(t2v_folder), "--frames", "9", "--width", "48", "--steps", "1",
                   "--max-sequence-length", "32", "--seed", "1", "-n", "gray", "-o", str(out), "-q")
    assert proc.code == 0, proc.err
    assert proc.out.strip() == str(out)
    frames, fps = read_frames(out)
    assert frames.shape == (9, 32, 48, 3) and fps == 24  # height: the 16:9 bucket's 32; 24 fps
    assert frames.std() > 5
    record = json.loads(Path(f"{out}.json").read_text())
    assert record["family"] == "hunyuan15" and record["guidance"] == 6.0 and record["negative_prompt"] == "gray"
    assert record["spec"]["height"] == 32 and TARGET_SIZE == 32
