"""LTX-2 image-to-video: frames and sound equal to diffusers' LTX2ImageToVideoPipeline, with its default H.264
re-compression of the image, and the user's path (`videogen generate --image`) writing an MP4 with its sound.

LTX2ImageToVideoPipeline re-compresses the image with PyAV's libx264 in sliced-thread mode, whose output depends on
how many CPUs the process may use; videogen encodes with one thread. The reference runs pinned to one CPU
(`os.sched_setaffinity`), where both encode alike; `test_recompression_is_diffusers_on_one_cpu` shows the step alone.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import run_cli
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from properties import FEW, words
from test_ltx2 import DISTILLED, NEGATIVE, PROMPT, TOKENS, one_thread  # noqa: F401  (a module fixture)
from test_ltx2_audio import streams

from videogen.engine import Engine, inspect_model, resolve_spec
from videogen.errors import UserError
from videogen.spec import RenderSpec

# LTX2ImageToVideoPipeline's re-compression needs PyAV (`av`, in the dev extras): without it these tests fail.


@contextlib.contextmanager
def one_cpu():
    """The process pinned to one CPU: libx264's automatic thread count (PyAV's sliced threads) becomes 1."""
    old = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(old)})
    try:
        yield
    finally:
        os.sched_setaffinity(0, old)


def still(path: Path, width: int, height: int, seed: int) -> Path:
    """A smooth random picture with some grain (what H.264 changes visibly at CRF 33)."""
    r = np.random.default_rng(seed)
    coarse = Image.fromarray((r.random((height // 8 + 1, width // 8 + 1, 3)) * 255).astype(np.uint8))
    pixels = np.asarray(coarse.resize((width, height), Image.Resampling.BICUBIC)).astype(np.float32)
    Image.fromarray(np.clip(pixels + r.normal(0, 12, pixels.shape), 0, 255).astype(np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def pictures(tmp_path_factory) -> dict[tuple[int, int], Path]:
    folder = tmp_path_factory.mktemp("stills")
    return {(w, h): still(folder / f"{w}x{h}.png", w, h, w + h) for w, h in ((32, 32), (64, 32))}


@pytest.fixture(scope="module")
def ltx2_i2v(tiny_ltx2):
    from diffusers import LTX2ImageToVideoPipeline

    pipe = LTX2ImageToVideoPipeline.from_pretrained(tiny_ltx2)
    pipe.set_progress_bar_config(disable=True)
    return Engine.load(RenderSpec(prompt=PROMPT, model=str(tiny_ltx2))), pipe


def reference(pipe, spec: RenderSpec, **extra) -> tuple[np.ndarray, torch.Tensor]:
    """LTX2ImageToVideoPipeline on the same folder, seed and image, at its own image_crf unless given."""
    given = {"guidance_scale": spec.guidance, "audio_guidance_scale": spec.audio_guidance, "stg_scale": spec.stg,
             "modality_scale": spec.modality_guidance, "guidance_rescale": spec.guidance_rescale,
             "sigmas": list(spec.sigmas) if spec.sigmas else None}
    with one_cpu():
        video, audio = pipe(image=Image.open(spec.image).convert("RGB"), prompt=spec.prompt,
                            negative_prompt=spec.negative_prompt, num_frames=spec.frames, height=spec.height,
                            width=spec.width, frame_rate=float(spec.fps or 24), num_inference_steps=spec.steps,
                            generator=torch.Generator("cpu").manual_seed(spec.seed), max_sequence_length=TOKENS,
                            output_type="np", return_dict=False, audio_stg_scale=None, audio_modality_scale=None,
                            audio_guidance_rescale=None, **{k: v for k, v in given.items() if v is not None},
                            **extra)
    return video[0], audio[0].float()


def spec_of(model: Path | str, image: Path, **changes) -> RenderSpec:
    base = RenderSpec(prompt=PROMPT, negative_prompt=NEGATIVE, model=str(model), frames=9, height=32, width=32,
                      steps=2, seed=3, max_sequence_length=TOKENS, image=str(image))
    return base.replace(**changes)


def differences(pair, spec: RenderSpec) -> tuple[float, float, dict]:
    """Max |ours - pipeline's| of the frames (0..1) and of the waveform, and our record."""
    engine, pipe = pair
    result = engine.render(spec)
    frames, wave = reference(pipe, spec, **({"image_crf": spec.image_crf} if spec.image_crf is not None else {}))
    assert result.frames_float.shape == frames.shape == (spec.frames, spec.height, spec.width, 3)
    assert result.audio is not None and result.audio[0].shape == wave.shape
    return (float(np.abs(result.frames_float.numpy() - frames).max()),
            float((result.audio[0] - wave).abs().max()), result.record)


@pytest.mark.parametrize("changes", [
    {},  # the pipeline's defaults: guidance 3, sound 7, STG 1 on block 28, modality 3, rescale 0.7, CRF 33
    {"guidance": 1.0, "audio_guidance": 1.0, "stg": 0.0, "modality_guidance": 1.0, "guidance_rescale": 0.0,
     "sigmas": DISTILLED, "steps": None, "width": 64, "fps": 12, "image_crf": 20},  # the distilled schedule
    {"guidance": 1.0, "audio_guidance": 1.0, "stg": 0.0, "modality_guidance": 1.0, "guidance_rescale": 0.0,
     "image_crf": 0},  # --image-crf 0: the still as it is
])
def test_parity_with_diffusers(ltx2_i2v, pictures, changes):
    size = (changes.get("width", 32), 32)
    frames, wave, record = differences(ltx2_i2v, spec_of(ltx2_i2v[0].info.source.ref, pictures[size], **changes))
    assert frames <= 1 / 255 and wave <= 1e-4, (frames, wave)
    assert record["sampling"]["image_crf"] == changes.get("image_crf", 33)


def test_parity_on_the_ltx2_3_layout(tiny_ltx2_3, pictures):
    """LTX-2.3 modulates the prompt by the step's sigma while the image's tokens get timestep 0: the per-token
    timesteps and the scalar sigma go to different places, as in the pipeline."""
    from diffusers import LTX2ImageToVideoPipeline

    pipe = LTX2ImageToVideoPipeline.from_pretrained(tiny_ltx2_3)
    pipe.set_progress_bar_config(disable=True)
    engine = Engine.load(RenderSpec(prompt=PROMPT, model=str(tiny_ltx2_3)))
    spec = spec_of(tiny_ltx2_3, pictures[(32, 32)], guidance=1.0, audio_guidance=1.0, stg=0.0, modality_guidance=1.0)
    frames, wave, record = differences((engine, pipe), spec)  # one pass per step: the guidance is tested above
    assert frames <= 1 / 255 and wave <= 1e-4, (frames, wave)
    assert record["audio"]["sample_rate"] == 32000


@given(prompt=words(1, 6), negative=st.none() | words(1, 3), width=st.sampled_from([32, 64]),
       guidance=st.sampled_from([1.0, 2.5]), stg=st.sampled_from([0.0, 1.5]), seed=st.integers(0, 2**31 - 1))
@settings(FEW, max_examples=2)
def test_parity_property(ltx2_i2v, pictures, prompt, negative, width, guidance, stg, seed):
    spec = spec_of(ltx2_i2v[0].info.source.ref, pictures[(width, 32)], prompt=prompt, negative_prompt=negative,
                   width=width, guidance=guidance, audio_guidance=1.0, stg=stg, modality_guidance=1.0, seed=seed)
    frames, wave, _ = differences(ltx2_i2v, spec)
    assert frames <= 1 / 255 and wave <= 1e-4, (frames, wave)


def test_previews_see_the_image_as_the_first_frame(ltx2_i2v, pictures):
    """The step callback's clean estimate (previews, --trace) keeps the image's latents in the first latent frame,
    where no step moves them, and estimates the rest."""
    engine = ltx2_i2v[0]
    spec = spec_of(engine.info.source.ref, pictures[(32, 32)], guidance=1.0, audio_guidance=1.0, stg=0.0,
                   modality_guidance=1.0)
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    engine.render(spec, on_step=lambda _i, _n, x, x0: seen.append((engine.model.video_latents(x, spec), x0)))
    assert len(seen) == 2
    for x, x0 in seen:
        assert torch.equal(x0[:, :, 0], x[:, :, 0])
    first_x, first_x0 = seen[0]  # the last step lands on sigma 0, where every estimate is the latents
    assert (first_x0[:, :, 1:] - first_x[:, :, 1:]).abs().max() > 1e-3


def test_recompression_is_diffusers_on_one_cpu(tmp_path):
    """The H.264 step alone, at an odd size (a row and a column cut) and two CRFs: equal to diffusers' on one CPU,
    and visibly not the picture it was given."""
    from diffusers.pipelines.ltx2.utils import apply_image_conditioning_crf

    from videogen.images import recompress_h264

    picture = Image.open(still(tmp_path / "odd.png", 75, 51, 7)).convert("RGB")
    for crf in (33, 18):
        ours = np.asarray(recompress_h264(picture, crf))
        with one_cpu():
            theirs = apply_image_conditioning_crf(np.asarray(picture), crf)
        assert ours.shape == theirs.shape == (50, 74, 3)
        assert np.array_equal(ours, theirs), crf
        assert np.abs(ours.astype(int) - np.asarray(picture)[:50, :74]).mean() > 1.0


def test_i2v_folder_needs_an_image(tiny_ltx2, tmp_path):
    folder = tmp_path / "i2v"
    shutil.copytree(tiny_ltx2, folder)
    index = json.loads((folder / "model_index.json").read_text())
    (folder / "model_index.json").write_text(json.dumps({**index, "_class_name": "LTX2ImageToVideoPipeline"}))
    spec = RenderSpec(prompt=PROMPT, model=str(folder), frames=9, height=32, width=32, steps=2)
    with pytest.raises(UserError, match=re.escape("image-to-video: give the first frame with --image")):
        resolve_spec(spec, inspect_model(str(folder)))


def test_generate_with_an_image_writes_video_and_sound(tiny_ltx2, pictures, tmp_path):
    """The user's path: `videogen generate --image` on an LTX-2 folder writes H.264 and AAC streams, and the run
    record names the image and the CRF it was re-compressed at."""
    out = tmp_path / "cat.mp4"
    r = run_cli("generate", PROMPT, "-m", str(tiny_ltx2), "--image", str(pictures[(64, 32)]), "--frames", "9",
                "--height", "32", "--width", "64", "--steps", "2", "--seed", "5", "--max-sequence-length", "32",
                "--guidance", "1", "--audio-guidance", "1", "--stg", "0", "--modality-guidance", "1", "-o", str(out),
                cwd=tmp_path, env={"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
    assert r.code == 0, r.err
    video, audio = streams(out)
    assert "h264" in video and "64x32" in video and "aac" in audio and "16000 Hz" in audio
    record = json.loads(Path(str(out) + ".json").read_text())
    assert record["spec"]["image"] == str(pictures[(64, 32)]) and record["sampling"]["image_crf"] == 33


@pytest.mark.parametrize(("model", "args", "expected"), [
    ("ltx2", ["--image-crf", "20"], "--image-crf 20 re-compresses the --image still of image-to-video; there is no "
                                    "--image"),
    ("ltx2", ["--image", "{image}", "--image-crf", "52"], "--image-crf"),
    ("wan", ["--image-crf", "20"], "--image-crf re-compresses the image of LTX-2's image-to-video; this wan model "
                                   "does not take it"),
])
def test_image_crf_refusals(tiny_ltx2, tiny_wan, pictures, tmp_path, capsys, monkeypatch, model, args, expected):
    """Refused in one line before loading, nothing written."""
    from cli_helpers import one_error_line, run_inprocess

    monkeypatch.chdir(tmp_path)
    folder = {"ltx2": tiny_ltx2, "wan": tiny_wan}[model]
    r = run_inprocess(capsys, "generate", PROMPT, "-m", str(folder), "-o", str(tmp_path / "x.mp4"),
                      *[a.format(image=pictures[(32, 32)]) for a in args])
    assert r.code == 2 and expected in one_error_line(r)
    assert list(tmp_path.iterdir()) == []
