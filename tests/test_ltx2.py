"""LTX-2 through videogen's one loop: video and sound equal to diffusers' LTX2Pipeline, and refusals by name."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from properties import FEW, words

from videogen.engine import Engine, inspect_model, resolve_spec
from videogen.errors import UserError
from videogen.spec import RenderSpec

PROMPT, NEGATIVE = "a red cat runs on the beach", "blue dog"
TOKENS = 32  # Gemma length for these tests (the family's default is the pipeline's 1024)
# The distilled checkpoints' schedule.
DISTILLED = (1.0, 0.99375, 0.9875, 0.98125, 0.975, 0.909375, 0.725, 0.421875)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """On a busy 2-core machine two threads per tiny matmul spin more than they compute."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def ltx2(tiny_ltx2):
    from diffusers import LTX2Pipeline

    pipe = LTX2Pipeline.from_pretrained(tiny_ltx2)
    pipe.set_progress_bar_config(disable=True)
    return Engine.load(RenderSpec(prompt=PROMPT, model=str(tiny_ltx2))), pipe


def reference(pipe, spec: RenderSpec) -> tuple[np.ndarray, torch.Tensor]:
    """LTX2Pipeline on the same folder and seed: frames [F,H,W,3] in [0,1] and the waveform [channels, samples].

    Unset guidance terms take the pipeline's own defaults; the sound's STG, modality and rescale terms follow
    the video's (None), as videogen's do."""
    given = {"guidance_scale": spec.guidance, "audio_guidance_scale": spec.audio_guidance,
             "stg_scale": spec.stg, "modality_scale": spec.modality_guidance,
             "guidance_rescale": spec.guidance_rescale, "sigmas": list(spec.sigmas) if spec.sigmas else None,
             "spatio_temporal_guidance_blocks": list(spec.stg_blocks) if spec.stg_blocks else None}
    video, audio = pipe(prompt=spec.prompt, negative_prompt=spec.negative_prompt, num_frames=spec.frames,
                        height=spec.height, width=spec.width, frame_rate=float(spec.fps or 24),
                        num_inference_steps=spec.steps, generator=torch.Generator("cpu").manual_seed(spec.seed),
                        max_sequence_length=TOKENS, output_type="np", return_dict=False, audio_stg_scale=None,
                        audio_modality_scale=None, audio_guidance_rescale=None,
                        **{k: v for k, v in given.items() if v is not None})
    return video[0], audio[0].float()


def assert_parity(ltx2, spec: RenderSpec) -> dict:
    engine, pipe = ltx2
    result = engine.render(spec)
    frames, wave = reference(pipe, spec)
    assert result.frames_float.shape == frames.shape == (spec.frames, spec.height, spec.width, 3)
    assert np.abs(result.frames_float.numpy() - frames).max() <= 1 / 255, spec
    assert result.audio is not None
    ours, rate = result.audio
    assert ours.shape == wave.shape and rate == pipe.vocoder.config.output_sampling_rate
    assert (ours - wave).abs().max().item() <= 1e-4, spec
    return result.record


def spec_of(model: Path | str, **changes) -> RenderSpec:
    base = RenderSpec(prompt=PROMPT, negative_prompt=NEGATIVE, model=str(model), frames=9, height=32, width=32,
                      steps=2, seed=3, max_sequence_length=TOKENS)
    return base.replace(**changes)


@pytest.mark.parametrize("changes", [
    {},  # the pipeline's defaults: guidance 3, sound 7, STG 1 on block 28, modality 3, rescale 0.7
    {"guidance": 4.5, "audio_guidance": 2.0, "stg": 2.0, "modality_guidance": 1.5, "guidance_rescale": 0.3,
     "frames": 17, "width": 64, "steps": 3, "fps": 12},
    {"guidance": 1.0, "audio_guidance": 1.0, "stg": 0.0, "modality_guidance": 1.0, "sigmas": DISTILLED,
     "guidance_rescale": 0.0, "steps": None},  # guidance off, the distilled schedule
    {"guidance": 1.0, "audio_guidance": 1.0, "stg": 2.0, "stg_blocks": (3, 17), "modality_guidance": 1.0},
])
def test_parity_with_diffusers(ltx2, changes):
    record = assert_parity(ltx2, spec_of(ltx2[0].info.source.ref, **changes))
    assert record["audio"]["sample_rate"] == 16000 and record["audio"]["channels"] == 2
    assert record["sampling"]["stg"] == changes.get("stg", 1.0)
    assert record["sampling"].get("stg_blocks") == (list(changes.get("stg_blocks", [28])) if record["sampling"]["stg"]
                                                    else None)


def test_parity_on_the_ltx2_3_layout(tiny_ltx2_3):
    """LTX-2.3's components (per-modality connectors, gated attention, sigma-modulated prompts, a vocoder with
    bandwidth extension) through the same adapter, at the pipeline's default guidance."""
    from diffusers import LTX2Pipeline

    pipe = LTX2Pipeline.from_pretrained(tiny_ltx2_3)
    pipe.set_progress_bar_config(disable=True)
    engine = Engine.load(RenderSpec(prompt=PROMPT, model=str(tiny_ltx2_3)))
    assert type(pipe.vocoder).__name__ == "LTX2VocoderWithBWE"
    record = assert_parity((engine, pipe), spec_of(tiny_ltx2_3))
    assert record["audio"]["sample_rate"] == 32000


@given(prompt=words(1, 8), negative=st.none() | words(1, 4), frames=st.sampled_from([9, 17]),
       width=st.sampled_from([32, 64]), guidance=st.sampled_from([1.0, 2.5]), audio=st.sampled_from([None, 1.0, 4.0]),
       stg=st.sampled_from([None, 0.0, 1.5]), seed=st.integers(0, 2**31 - 1))
@settings(FEW, max_examples=3)
def test_parity_property(ltx2, prompt, negative, frames, width, guidance, audio, stg, seed):
    spec = spec_of(ltx2[0].info.source.ref, prompt=prompt, negative_prompt=negative, frames=frames, width=width,
                   guidance=guidance, audio_guidance=audio, stg=stg, seed=seed)
    assert_parity(ltx2, spec)


@pytest.mark.parametrize(("changes", "expected"), [
    ({"frames": 10}, "--frames 10 is not 4k+1: use 9 or 13"),
    ({"height": 48}, "--height 48 is not a multiple of 32: use 32 or 64"),
    ({"guidance_2": 2.0}, "--guidance-2 is for two-expert models"),
    ({"steps": 1}, "LTX-2 needs --steps 2 or more"),
    ({"stg_blocks": (5, 29)}, "--stg-blocks 5,29: this transformer has blocks 0 to 28"),
])
def test_refused_by_name(tiny_ltx2, changes, expected):
    spec = RenderSpec(prompt=PROMPT, model=str(tiny_ltx2), frames=9, height=32, width=32, steps=2)
    with pytest.raises(UserError, match=re.escape(expected)):
        resolve_spec(spec.replace(**changes), inspect_model(str(tiny_ltx2)))


@pytest.mark.parametrize(("changes", "expected"), [
    ({"stg": 1.0}, "--stg is LTX-2's spatio-temporal guidance; this wan model does not take it"),
    ({"audio_guidance": 2.0}, "--audio-guidance guides a sound track (LTX-2); this wan model does not take it"),
    ({"no_audio": True}, "--no-audio is for models that make sound (LTX-2); this wan model does not take it"),
])
def test_silent_families_refuse_the_sound_fields(tiny_wan, changes, expected):
    spec = RenderSpec(prompt=PROMPT, model=str(tiny_wan), frames=9, height=32, width=32, steps=2)
    with pytest.raises(UserError, match=re.escape(expected)):
        resolve_spec(spec.replace(**changes), inspect_model(str(tiny_wan)))


def test_stg_blocks_flag_and_preset_errors(tiny_ltx2, tiny_wan, tmp_path, capsys):
    """--stg-blocks is read as a comma-separated list of block numbers; a bad one is refused in one line naming
    where it came from, before loading, and nothing is written."""
    from cli_helpers import one_error_line, run_inprocess

    preset = tmp_path / "p.yaml"
    preset.write_text(f"model: {tiny_ltx2}\nstg_blocks: [40]\n")
    cases = [(["-m", str(tiny_ltx2), "--stg-blocks", "3,x"], "--stg-blocks: '3,x' is not a comma-separated list "
              "of whole numbers"),
             (["-m", str(tiny_ltx2), "--stg-blocks", "-1"], "--stg-blocks: 'stg_blocks' must be a list of block"),
             (["-m", str(tiny_ltx2), "--stg-blocks", ","], "'stg_blocks' must name at least one block"),
             (["-p", str(preset)], f"stg_blocks 40 (preset {preset}, key 'stg_blocks'): this transformer has "
              "blocks 0 to 28"),
             (["-m", str(tiny_wan), "--stg-blocks", "1"], "--stg-blocks are the blocks of LTX-2's spatio-temporal "
              "guidance; this wan model does not take it")]
    for args, message in cases:
        r = run_inprocess(capsys, "generate", PROMPT, *args, "--frames", "9", "--height", "32", "--width", "32",
                          "-o", str(tmp_path / "o.mp4"))
        assert r.code == 2 and message in one_error_line(r), (args, r.err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.yaml"]
