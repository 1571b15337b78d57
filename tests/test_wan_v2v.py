"""Wan video-to-video: --video re-noised by --strength, equal to diffusers' WanVideoToVideoPipeline."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from cli_helpers import run_cli
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image
from tiny import WORDS
from tiny_wan_vace import TOL, assert_parity, save_tiny_wan_v2v, smooth_clip, write_clip

from videogen.clips import read_clip
from videogen.engine import Engine
from videogen.spec import RenderSpec


@pytest.fixture(scope="module")
def v2v(tmp_path_factory):
    """The same weights as a WanVideoToVideoPipeline folder and as a plain WanPipeline (text-to-video) one."""
    root = tmp_path_factory.mktemp("v2v")
    return {"v2v": save_tiny_wan_v2v(root / "v2v"),
            "t2v-euler": save_tiny_wan_v2v(root / "t2v-euler", scheduler="euler", pipeline="WanPipeline")}


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return write_clip(tmp_path_factory.mktemp("v2v-src") / "src.mp4", smooth_clip(1, 5, 16, 32))


_cache: dict = {}


def reference(folder, spec: RenderSpec) -> np.ndarray:
    from diffusers import WanVideoToVideoPipeline

    if folder not in _cache:  # a WanPipeline folder loads as the video-to-video pipeline: same components
        _cache[folder] = WanVideoToVideoPipeline.from_pretrained(folder)
        _cache[folder].set_progress_bar_config(disable=True)
    video = [Image.fromarray(f) for f in read_clip(spec.video, "--video").frames]
    out = _cache[folder](
        video=video, prompt=spec.prompt, negative_prompt=spec.negative_prompt or "", height=spec.height,
        width=spec.width, num_inference_steps=spec.steps, guidance_scale=spec.guidance,
        strength=0.8 if spec.strength is None else spec.strength,
        generator=torch.Generator("cpu").manual_seed(spec.seed), max_sequence_length=16, output_type="np")
    return out.frames[0]


def compare(engine: Engine, folder, spec: RenderSpec) -> np.ndarray:
    return assert_parity(engine, spec, lambda resolved: reference(folder, resolved), "v2v")


@pytest.mark.parametrize("model,steps,strength,guidance", [
    ("v2v", 5, 0.6, 3.0),  # UniPC: 3 of 5 steps
    ("v2v", 4, None, 1.0),  # the default strength 0.8: 3 of 4 steps, guidance off
    ("t2v-euler", 4, 1.0, 4.0),  # a text-to-video folder given --video; flow Euler; the whole schedule
    ("t2v-euler", 6, 0.5, 2.0),
])
def test_engine_matches_video_to_video_pipeline(v2v, source, model, steps, strength, guidance):
    spec = RenderSpec(prompt="a red cat runs on the beach", model=str(v2v[model]), video=str(source), steps=steps,
                      strength=strength, guidance=guidance, negative_prompt="gray", seed=9, max_sequence_length=16)
    frames = compare(Engine.load(spec), v2v[model], spec)
    assert frames.shape == (5, 16, 32, 3)


def test_strength_and_source_change_the_frames(v2v, source, tmp_path):
    base = RenderSpec(prompt="a cat", model=str(v2v["v2v"]), video=str(source), steps=4, strength=0.5,
                      guidance=1.0, seed=2, max_sequence_length=16)
    engine = Engine.load(base)
    a = engine.render(base)
    other = write_clip(tmp_path / "other.mp4", smooth_clip(8, 5, 16, 32))
    for spec in (base.replace(strength=1.0), base.replace(video=str(other))):
        assert (engine.render(spec).frames_float - a.frames_float).abs().max() > 10 * TOL
    assert a.record["sampling"]["strength"] == 0.5 and a.record["sampling"]["steps_run"] == 2


@settings(max_examples=2, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(words=st.lists(st.sampled_from(WORDS), min_size=1, max_size=5), frames=st.sampled_from([1, 5]),
       height=st.just(16), width=st.sampled_from([16, 32]), steps=st.integers(1, 3),
       guidance=st.sampled_from([1.0, 3.0]), seed=st.integers(0, 2**31 - 1), strength=st.floats(0.25, 1.0, allow_subnormal=False))
def test_v2v_parity_property(v2v, tmp_path_factory, words, frames, height, width, steps, guidance, seed, strength):
    assume(int(steps * strength) >= 1)
    video = write_clip(tmp_path_factory.mktemp("prop") / "v.mp4", smooth_clip(seed % 89, frames, height, width))
    spec = RenderSpec(prompt=" ".join(words), model=str(v2v["v2v"]), video=str(video), steps=steps,
                      strength=strength, guidance=guidance, seed=seed, max_sequence_length=16)
    if "engine" not in _cache:
        _cache["engine"] = Engine.load(spec)
    compare(_cache["engine"], v2v["v2v"], spec)


def test_cli_video_to_video_on_a_text_to_video_model(v2v, source, tmp_path):
    out = tmp_path / "v2v.mp4"
    run = run_cli("generate", "a blue dog", "-m", v2v["t2v-euler"], "--video", source, "--strength", "0.5",
                  "--steps", "4", "--seed", "3", "-o", out, "--json", "--quiet")
    assert run.code == 0, run.err
    record = json.loads(run.out)
    assert (record["sampling"]["strength"], record["sampling"]["steps_run"]) == (0.5, 2)
    assert record["inputs"]["--video"]["path"] == str(source)
    from videogen.video import read_frames

    assert read_frames(out)[0].shape == (5, 16, 32, 3)


@pytest.mark.parametrize("model,args,message", [
    ("t2v-euler", ["--strength", "0.5"], "--strength is for video-to-video: give the source clip with --video"),
    ("t2v-euler", ["--video", "{src}", "--strength", "0.1", "--steps", "5"],
     "--strength 0.1 with --steps 5 runs no step (int(steps * strength) = 0): raise --strength to 0.2 or more"),
    ("v2v", [], "this wan model (v2v) renders from a video: give it with --video"),
    ("v2v", ["--video", "{src}", "--mask", "{src}"], "--mask: this wan model (v2v) does not take it "
                                                     "(it is for WanVACEPipeline models)"),
])
def test_video_to_video_refusals(v2v, source, tmp_path, model, args, message):
    run = run_cli("generate", "a cat", "-m", v2v[model], *[a.format(src=source) for a in args],
                  "-o", tmp_path / "out.mp4")
    assert run.code == 2 and message in run.err and run.err.count("\n") == 1, run.err
    assert list(tmp_path.iterdir()) == []


def test_step_previews_index_the_schedule_where_it_starts(v2v, source):
    """Starting part-way, each step's x0 takes that step's sigma: with flow Euler the last step lands on
    sigma 0, so the last x0 is the final video (x0 from the first sigmas of the schedule would not be)."""
    spec = RenderSpec(prompt="a cat", model=str(v2v["t2v-euler"]), video=str(source), steps=4, strength=0.5,
                      guidance=1.0, seed=5, max_sequence_length=16)
    engine = Engine.load(spec)
    seen: list = []
    result = engine.render(spec, on_step=lambda i, total, x, x0: seen.append((i, total, x0)))
    assert [(i, total) for i, total, _ in seen] == [(0, 2), (1, 2)]
    last = engine.model.decode_video(seen[-1][2], engine.resolve(spec))
    assert (last - result.frames_float).abs().max() < 1e-4
