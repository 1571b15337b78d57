"""Wan VACE: control clip, mask clip, reference images; equal to diffusers' WanVACEPipeline on tiny models."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from cli_helpers import run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from tiny import WORDS
from tiny_wan_vace import TOL, assert_parity, mask_clip, save_tiny_wan_vace, smooth_clip, write_clip

from videogen.clips import read_clip
from videogen.engine import Engine
from videogen.spec import RenderSpec


@pytest.fixture(scope="module")
def vace(tmp_path_factory):
    root = tmp_path_factory.mktemp("vace")
    return {"one": save_tiny_wan_vace(root / "vace"), "two": save_tiny_wan_vace(root / "vace-a14b", experts=2)}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Clips of 5 frames of 32x16 (MP4), mask clips, a clip no model takes, two reference images of other shapes."""
    root = tmp_path_factory.mktemp("vace-inputs")
    out = {"video": write_clip(root / "ctrl.mp4", smooth_clip(1, 5, 16, 32)),
           "mask": write_clip(root / "mask.mp4", mask_clip(5, 16, 32)),
           "video5": write_clip(root / "ctrl5.mp4", smooth_clip(2, 5, 16, 16)),
           "mask5": write_clip(root / "mask5.mp4", mask_clip(5, 16, 16)),
           "bad": write_clip(root / "bad.mp4", smooth_clip(3, 6, 20, 30))}
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate([(12, 20), (30, 10)]):
        out[f"ref{i}"] = root / f"ref{i}.png"
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(out[f"ref{i}"])
    return out


def pil_frames(path) -> list[Image.Image]:
    return [Image.fromarray(f) for f in read_clip(str(path), "--video").frames]


_pipes: dict = {}


def reference(folder, spec: RenderSpec) -> np.ndarray:
    """diffusers' own pipeline on the same weights and decoded clip frames."""
    from diffusers import WanVACEPipeline

    if folder not in _pipes:
        _pipes[folder] = WanVACEPipeline.from_pretrained(folder)
        _pipes[folder].set_progress_bar_config(disable=True)
    refs = [Image.open(r).convert("RGB") for r in spec.reference_images]
    out = _pipes[folder](
        prompt=spec.prompt, negative_prompt=spec.negative_prompt or "",
        video=pil_frames(spec.video) if spec.video else None, mask=pil_frames(spec.mask) if spec.mask else None,
        reference_images=refs or None,
        conditioning_scale=1.0 if spec.conditioning_scale is None else spec.conditioning_scale,
        height=spec.height, width=spec.width, num_frames=spec.frames, num_inference_steps=spec.steps,
        guidance_scale=spec.guidance, guidance_scale_2=spec.guidance_2,
        generator=torch.Generator("cpu").manual_seed(spec.seed), max_sequence_length=16, output_type="np")
    return out.frames[0]


def compare(engine: Engine, folder, spec: RenderSpec) -> np.ndarray:
    return assert_parity(engine, spec, lambda resolved: reference(folder, resolved), "vace")


CASES = [
    # (model, video, mask, references, guidance, guidance_2, conditioning scale)
    ("one", "video", "mask", ("ref0", "ref1"), 3.0, None, 0.7),
    ("one", None, None, ("ref1",), 4.0, None, None),  # reference-to-video: no control clip
    ("two", "video", "mask", ("ref0",), 3.0, 2.0, 1.5),  # Wan 2.2: two experts, each its own guidance
]


@pytest.mark.parametrize("model,video,mask,refs,guidance,guidance_2,scale", CASES)
def test_engine_matches_vace_pipeline(vace, inputs, model, video, mask, refs, guidance, guidance_2, scale):
    spec = RenderSpec(prompt="a red cat runs on the beach", model=str(vace[model]),
                      video=str(inputs[video]) if video else None, mask=str(inputs[mask]) if mask else None,
                      reference_images=tuple(str(inputs[r]) for r in refs), frames=None if video else 5,
                      height=None if video else 16, width=None if video else 32, steps=3, guidance=guidance,
                      guidance_2=guidance_2, conditioning_scale=scale, seed=7, negative_prompt="gray",
                      max_sequence_length=16)
    frames = compare(Engine.load(spec), vace[model], spec)
    assert frames.shape == (5, 16, 32, 3)  # the clip's geometry when given


def test_each_input_changes_the_frames(vace, inputs):
    """Control, mask, references and scale all reach the network (else parity would prove little)."""
    base = RenderSpec(prompt="a cat", model=str(vace["one"]), video=str(inputs["video5"]), steps=2, guidance=1.0,
                      seed=3, max_sequence_length=16)
    engine = Engine.load(base)
    a = engine.render(base).frames_float
    variants = [base.replace(mask=str(inputs["mask5"])), base.replace(reference_images=(str(inputs["ref0"]),)),
                base.replace(conditioning_scale=0.0), base.replace(video=None, frames=5, height=16, width=16)]
    for spec in variants:  # each by ten times the parity tolerance, so a wrong path fails parity
        assert (engine.render(spec).frames_float - a).abs().max() > 10 * TOL, spec
    assert torch.equal(a, engine.render(base).frames_float)


@settings(max_examples=2, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(words=st.lists(st.sampled_from(WORDS), min_size=1, max_size=5), frames=st.sampled_from([1, 5]),
       height=st.just(16), width=st.sampled_from([16, 32]), steps=st.integers(1, 2),
       guidance=st.sampled_from([1.0, 2.5, 5.0]), seed=st.integers(0, 2**31 - 1),
       scale=st.floats(0.0, 2.0, allow_subnormal=False), refs=st.integers(0, 2), masked=st.booleans())
def test_vace_parity_property(vace, inputs, tmp_path_factory, words, frames, height, width, steps, guidance, seed,
                              scale, refs, masked):
    # No more reference images than latent frames: diffusers' prepare_masks pads the mask with
    # mask[:, :refs], one frame short when a 1-frame clip has 2 references, and fails (a limit of the
    # reference, not of the model: test_more_references_than_frames renders that case).
    refs = min(refs, (frames - 1) // 4 + 1)
    root = tmp_path_factory.mktemp("prop")
    video = write_clip(root / "v.mp4", smooth_clip(seed % 97, frames, height, width))
    mask = write_clip(root / "m.mp4", mask_clip(frames, height, width)) if masked else None
    spec = RenderSpec(prompt=" ".join(words), model=str(vace["one"]), video=str(video),
                      mask=str(mask) if mask else None, reference_images=tuple(str(inputs[f"ref{i}"]) for i in range(refs)),
                      steps=steps, guidance=guidance, conditioning_scale=scale, seed=seed, max_sequence_length=16)
    if "engine" not in _pipes:
        _pipes["engine"] = Engine.load(spec)
    compare(_pipes["engine"], vace["one"], spec)


def test_more_references_than_frames(vace, inputs):
    """Two references before a 1-frame clip: three latent frames for the model, one frame of video out, and
    the references steer it (diffusers' pipeline cannot render this case, so no parity here)."""
    clip = write_clip(inputs["video"].parent / "one.mp4", smooth_clip(4, 1, 16, 16))
    spec = RenderSpec(prompt="a cat", model=str(vace["one"]), video=str(clip), steps=1, guidance=1.0, seed=2,
                      max_sequence_length=16, reference_images=(str(inputs["ref0"]), str(inputs["ref1"])))
    engine = Engine.load(spec)
    result = engine.render(spec)
    assert tuple(result.frames_float.shape) == (1, 16, 16, 3)
    assert result.record["sampling"]["reference_images"] == 2
    one_ref = engine.render(spec.replace(reference_images=(str(inputs["ref0"]),))).frames_float
    assert (result.frames_float - one_ref).abs().max() > 10 * TOL


def test_cli_renders_from_clips_rerenders_from_the_record_and_refuses_a_changed_clip(vace, inputs, tmp_path):
    from videogen.video import read_frames

    ctrl = tmp_path / "ctrl.mp4"
    ctrl.write_bytes(inputs["video"].read_bytes())  # this test's own copy: it is rewritten below
    out = tmp_path / "out.mp4"
    run = run_cli("generate", "a red cat", "-m", vace["one"], "--video", ctrl, "--mask", inputs["mask"],
                  "--reference-image", inputs["ref0"], "--reference-image", inputs["ref1"], "--steps", "2",
                  "--seed", "5", "--conditioning-scale", "0.8", "-o", out, "--quiet", cwd=tmp_path)
    assert run.code == 0, run.err
    frames, _ = read_frames(out)
    assert frames.shape == (5, 16, 32, 3)
    record = json.loads(out.with_name(out.name + ".json").read_text())
    ins = record["inputs"]
    assert ins["--video"]["path"] == str(ctrl.resolve()) and ins["--video"]["sha256"].startswith("sha256:")
    assert [r["path"] for r in ins["--reference-image"]] == [str(inputs["ref0"]), str(inputs["ref1"])]
    assert record["sampling"]["reference_images"] == 2 and record["sampling"]["conditioning_scale"] == 0.8
    # --from the render, from another folder: the record names the clips by absolute path; the same frames
    again = tmp_path / "again.mp4"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run = run_cli("generate", "--from", out, "-o", again, "--quiet", cwd=elsewhere)
    assert run.code == 0, run.err
    assert np.array_equal(read_frames(again)[0], frames)
    # The control clip is rewritten (same name and geometry, other pictures): the rerun is refused in one line.
    write_clip(ctrl, smooth_clip(5, 5, 16, 32))
    run = run_cli("generate", "--from", out, "-o", tmp_path / "changed.mp4", "--quiet", cwd=elsewhere)
    assert run.code == 2 and run.err.count("\n") == 1, run.err
    assert f"input {ctrl.resolve()} changed since the recorded render" in run.err
    assert not (tmp_path / "changed.mp4").exists()


@pytest.fixture(scope="module")
def unloadable(vace, tmp_path_factory):
    """The tiny VACE model with transformer weights of the wrong shapes: the files are whole (so the checks
    before loading pass them), but loading fails, so any refusal it gives came before loading."""
    import shutil

    from safetensors.torch import load_file, save_file

    folder = tmp_path_factory.mktemp("broken") / "vace"
    shutil.copytree(vace["one"], folder)
    weights = folder / "transformer" / "diffusion_pytorch_model.safetensors"
    save_file({k: torch.zeros(3, 3) for k in load_file(weights)}, weights)
    return folder


@pytest.mark.parametrize("args,message", [
    (["--video", "{bad}"], "--video {bad}: 6 frames of 30x20; this model cannot take 6 frames (use 5 or 9), "
                           "height 20 (a multiple of 16: use 16 or 32), width 30 (a multiple of 16: use 16 or 32): "
                           "re-cut the clip or add --fit to resample it"),
    (["--video", "{video}", "--frames", "9"], "--video {video}: 5 frames of 32x16, but the render asks for "
                                               "--frames 9: leave those out"),
    (["--video", "{video}", "--mask", "{mask5}"], "--mask {mask5}: 5 frames of 16x16, but the render asks for "
                                                   "--width 32"),
    (["--mask", "{mask}"], "--mask needs the control video it masks: give --video too"),
    (["--video", "{video}", "--strength", "0.5"], "--strength: this wan model (vace) does not take it "
                                                  "(it is for WanPipeline, WanVideoToVideoPipeline models)"),
    (["--reference-image", "{video}.png"], "--reference-image: file not found"),
    (["--fit"], "--fit resamples input clips: give --video"),
])
def test_bad_inputs_refused_before_loading(unloadable, inputs, tmp_path, args, message):
    fill = {k: str(v) for k, v in inputs.items()}
    out = tmp_path / "out.mp4"
    run = run_cli("generate", "a cat", "-m", unloadable, *[a.format(**fill) for a in args], "-o", out)
    assert run.code == 2, run.err
    assert message.format(**fill) in run.err and run.err.count("\n") == 1 and "Traceback" not in run.err
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_fit_resamples_and_says_so(vace, inputs, tmp_path):
    out = tmp_path / "fit.mp4"
    run = run_cli("generate", "a cat", "-m", vace["one"], "--video", inputs["bad"], "--fit", "--steps", "1",
                  "--seed", "2", "-o", out, "--json", "--quiet")
    assert run.code == 0, run.err
    record = json.loads(run.out)
    assert (record["frames"], record["height"], record["width"]) == (5, 16, 32)  # nearest valid to 6 x 20 x 30
    assert record["inputs"]["--video"]["fit"] == {"frames": 5, "height": 16, "width": 32}
    assert record["inputs"]["--video"]["frames"] == 6
    from videogen.video import read_frames

    assert read_frames(out)[0].shape == (5, 16, 32, 3)


def test_models_lists_the_new_pipelines():
    run = run_cli("models")
    assert run.code == 0
    assert "WanVACEPipeline" in run.out and "WanVideoToVideoPipeline" in run.out
    for preset in ("wan2.1-vace-1.3b", "wan2.1-vace-14b", "wan2.1-v2v-1.3b"):
        assert preset in run.out


@pytest.mark.parametrize("name,model", [("wan2.1-vace-1.3b", "Wan-AI/Wan2.1-VACE-1.3B-diffusers"),
                                        ("wan2.1-vace-14b", "Wan-AI/Wan2.1-VACE-14B-diffusers")])
def test_vace_presets(name, model):
    from videogen import presets

    v = presets.load_preset(name).values
    assert v["model"] == model and v["steps"] == 50 and v["flow_shift"] == 16.0 and v["guidance"] == 5.0
    assert "frames" not in v and "width" not in v  # a control clip sets the geometry
