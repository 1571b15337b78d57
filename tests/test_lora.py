"""LoRA in the engine: every key format against diffusers' `load_lora_weights` + WanPipeline, stacking, weights,
Wan 2.2's two experts, switching between renders without a reload, and LoRA with the other engine options."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_lora import random_lora, write_comfy, write_diffusers, write_musubi
from tiny_wan_extra import save_wan22_a14b

from videogen.engine import Engine, inspect_model, resolve_spec
from videogen.errors import UserError
from videogen.spec import RenderSpec

TOL = 1e-4
PROMPT = "a red cat runs on the beach"


def spec_for(folder: Path, *loras: str, **kw) -> RenderSpec:
    base = dict(prompt=PROMPT, model=str(folder), frames=5, height=16, width=16, steps=2, guidance=1.0, seed=3,
                max_sequence_length=16)
    return RenderSpec(**{**base, **kw}, loras=tuple(loras))


_PIPES: dict[Path, object] = {}


def diffusers_frames(folder: Path, spec: RenderSpec, loras: list[tuple[Path, float, str]]) -> np.ndarray:
    """diffusers' own loader: `load_lora_weights` (into transformer_2 for @low) and `set_adapters`."""
    from diffusers import WanPipeline

    if folder not in _PIPES:  # one pipeline per model; its LoRAs are unloaded after each use
        _PIPES[folder] = WanPipeline.from_pretrained(folder)
        _PIPES[folder].set_progress_bar_config(disable=True)
    pipe = _PIPES[folder]
    for i, (path, _w, expert) in enumerate(loras):
        # low_cpu_mem_usage=False: with a bias diff on only some modules, diffusers' default leaves the other
        # modules' LoRA biases on the meta device and the render fails; this way they start at zero.
        pipe.load_lora_weights(str(path), adapter_name=f"l{i}", load_into_transformer_2=expert == "low",
                               low_cpu_mem_usage=False)
    if loras:
        pipe.set_adapters([f"l{i}" for i in range(len(loras))], [w for _p, w, _e in loras])
    out = pipe(prompt=spec.prompt, negative_prompt="", height=spec.height, width=spec.width,
               num_frames=spec.frames, num_inference_steps=spec.steps, guidance_scale=spec.guidance,
               generator=torch.Generator("cpu").manual_seed(spec.seed), max_sequence_length=16, output_type="np")
    pipe.unload_lora_weights()
    return out.frames[0]


@pytest.fixture(scope="module")
def engine(tiny_wan):
    return Engine.load(spec_for(tiny_wan))


@pytest.fixture(scope="module")
def no_lora(engine, tiny_wan):
    return engine.render(spec_for(tiny_wan)).frames_float


def biases(folder: Path, seed: int, names: list[str]) -> dict[str, torch.Tensor]:
    from tiny_lora import model_shapes

    shapes = model_shapes(folder)
    g = torch.Generator().manual_seed(seed)
    return {n: torch.randn(shapes[f"{n}.bias"], generator=g) * 0.2 for n in names}


def lightx2v_extra(folder: Path) -> dict[str, torch.Tensor]:
    """What lightx2v's files carry beside the LoRA matrices: head.head.diff (+ diff_b) and zero norm diffs."""
    from tiny_lora import model_shapes

    shapes = model_shapes(folder)
    g = torch.Generator().manual_seed(9)
    return {"diffusion_model.head.head.diff": torch.randn(shapes["proj_out.weight"], generator=g) * 0.1,
            "diffusion_model.head.head.diff_b": torch.randn(shapes["proj_out.bias"], generator=g) * 0.1,
            "diffusion_model.blocks.0.norm3.diff": torch.zeros(shapes["blocks.0.norm2.weight"]),
            "diffusion_model.blocks.1.self_attn.norm_q.diff": torch.zeros(shapes["blocks.1.attn1.norm_q.weight"])}


def write_format(fmt: str, folder: Path, out: Path) -> Path:
    lora = random_lora(folder, seed=1)
    b = biases(folder, 2, ["blocks.0.attn1.to_q", "blocks.1.ffn.net.2"])
    if fmt == "diffusers":
        return write_diffusers(lora, out, biases=b)
    if fmt == "comfy":  # ComfyUI / Kijai: lora_down / lora_up with .alpha and .diff_b
        return write_comfy(lora, out, biases=b)
    if fmt == "lightx2v":  # lora_A / lora_B without alpha, diff_b, head.head.diff, norm diffs
        return write_comfy(random_lora(folder, seed=1, alpha=None), out, ("lora_A", "lora_B"), biases=b,
                           extra=lightx2v_extra(folder))
    return write_musubi(lora, out)


@pytest.mark.parametrize("fmt", ["diffusers", "comfy", "lightx2v", "musubi"])
def test_each_format_matches_diffusers_load_lora_weights(engine, no_lora, tiny_wan, tmp_path, fmt):
    path = write_format(fmt, tiny_wan, tmp_path / f"{fmt}.safetensors")
    spec = spec_for(tiny_wan, f"{path}:0.7")
    result = engine.render(spec)
    ours = result.frames_float.numpy()
    ref = diffusers_frames(tiny_wan, spec, [(path, 0.7, "both")])
    change = float((result.frames_float - no_lora).abs().max())
    diff = float(np.abs(ours - ref).max())
    print(f"{fmt}: LoRA changes frames by {change:.3f}, differs from diffusers by {diff:.1e}")
    assert change > 100 * TOL, "the LoRA must change the frames, or parity proves nothing"
    assert diff <= TOL
    (entry,) = result.record["loras"]
    # lightx2v: the 20 block layers, proj_out (head.head.diff) and the two norms with (zero) diffs
    assert entry["modules"] == (23 if fmt == "lightx2v" else 20)
    assert entry["unmatched"] == 0 and entry["weight"] == 0.7


def test_partial_musubi_lora_without_alpha_equals_its_diffusers_conversion(engine, tiny_wan, tmp_path):
    """musubi LoRAs covering only some modules, with no alpha: diffusers' converter raises KeyError on them."""
    from diffusers.loaders.lora_conversion_utils import _convert_musubi_wan_lora_to_diffusers
    from safetensors.torch import load_file

    lora = random_lora(tiny_wan, seed=4, alpha=None, modules=["blocks.0.attn1.to_q", "blocks.1.attn2.to_v",
                                                              "blocks.1.ffn.net.0.proj"])
    partial = write_musubi(lora, tmp_path / "partial.safetensors")
    with pytest.raises(KeyError):
        _convert_musubi_wan_lora_to_diffusers(load_file(str(partial)))
    converted = write_diffusers(lora, tmp_path / "partial-diffusers.safetensors")
    spec = spec_for(tiny_wan, str(partial))
    result = engine.render(spec)
    assert result.record["loras"][0]["modules"] == 3
    assert "KeyError" in result.record["loras"][0]["converter"]
    ref = diffusers_frames(tiny_wan, spec, [(converted, 1.0, "both")])
    assert float(np.abs(result.frames_float.numpy() - ref).max()) <= TOL


def test_own_conversion_equals_diffusers_converter(tiny_wan, tmp_path):
    """Where diffusers' converter works, videogen's own key lookup gives the same deltas."""
    from safetensors.torch import load_file

    from videogen.lora import keys
    from videogen.lora.merge import _weight_delta

    modules = {n.rsplit(".", 1)[0] for n in keys.checkpoint_tensors(tiny_wan / "transformer")}
    for fmt in ("comfy", "musubi", "lightx2v"):
        raw = load_file(str(write_format(fmt, tiny_wan, tmp_path / f"{fmt}.safetensors")))
        theirs = keys.normalise(raw, "wan", modules)
        ours = keys.Normalised(*keys.own_conversion(raw, keys.name_lookup(modules, "wan")), len(raw), "videogen")
        assert theirs.converter == "diffusers"
        assert sorted(theirs.modules) == sorted(ours.modules)
        for name in ours.modules:
            a, b = ours.modules[name], theirs.modules[name]
            da, db = _weight_delta(a), _weight_delta(b)
            assert (da is None) == (db is None)
            if da is not None:
                torch.testing.assert_close(da, db, rtol=1e-5, atol=1e-6)
            assert (a.diff_b is None) == (b.diff_b is None)


def test_weight_zero_equals_no_lora(engine, no_lora, tiny_wan, tmp_path):
    path = write_format("comfy", tiny_wan, tmp_path / "z.safetensors")
    assert torch.equal(engine.render(spec_for(tiny_wan, f"{path}:0")).frames_float, no_lora)


def test_switching_equals_a_fresh_load_and_restores_the_base(engine, no_lora, tiny_wan, tmp_path):
    a = write_format("comfy", tiny_wan, tmp_path / "a.safetensors")
    b = write_diffusers(random_lora(tiny_wan, seed=7, modules=["blocks.1.attn1.to_k", "blocks.1.attn2.to_out.0"]),
                        tmp_path / "b.safetensors")
    first = engine.render(spec_for(tiny_wan, str(a)))
    second = engine.render(spec_for(tiny_wan, f"{b}:1.5"))
    assert "lora_switch" in second.record["timings"]
    fresh_spec = spec_for(tiny_wan, f"{b}:1.5")
    fresh = Engine.load(fresh_spec).render(fresh_spec)
    assert torch.equal(second.frames_float, fresh.frames_float)
    assert not torch.equal(first.frames_float, second.frames_float)
    assert torch.equal(engine.render(spec_for(tiny_wan)).frames_float, no_lora)  # bit for bit back to the base


def test_two_stacked_loras_match_diffusers_adapters(engine, tiny_wan, tmp_path):
    a = write_format("comfy", tiny_wan, tmp_path / "a.safetensors")
    b = write_musubi(random_lora(tiny_wan, seed=5), tmp_path / "b.safetensors")
    spec = spec_for(tiny_wan, f"{a}:0.6", f"{b}:-0.4")
    result = engine.render(spec)
    ref = diffusers_frames(tiny_wan, spec, [(a, 0.6, "both"), (b, -0.4, "both")])
    assert float(np.abs(result.frames_float.numpy() - ref).max()) <= TOL
    assert [e["weight"] for e in result.record["loras"]] == [0.6, -0.4]


def test_lora_that_matches_nothing_is_refused_before_loading(tiny_wan, tmp_path):
    from safetensors.torch import save_file

    other = tmp_path / "sdxl.safetensors"
    save_file({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.zeros(4, 8),
               "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": torch.zeros(8, 4)}, str(other))
    with pytest.raises(UserError, match=r"sdxl\.safetensors: none of its 2 keys match"):
        resolve_spec(spec_for(tiny_wan, str(other)), inspect_model(str(tiny_wan)))


def test_lora_for_another_size_is_refused_by_module(tiny_wan, tmp_path):
    lora = random_lora(tiny_wan, seed=1, modules=["blocks.0.attn1.to_q"])
    lora["blocks.0.attn1.to_q"]["down"] = torch.zeros(4, 48)  # the weight takes 24 inputs
    path = write_diffusers(lora, tmp_path / "big.safetensors")
    with pytest.raises(UserError, match=r"blocks\.0\.attn1\.to_q does not fit"):
        resolve_spec(spec_for(tiny_wan, str(path)), inspect_model(str(tiny_wan)))


# --- Wan 2.2's two experts -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def a14b(tmp_path_factory) -> Path:
    return save_wan22_a14b(tmp_path_factory.mktemp("models") / "a14b")


@pytest.fixture(scope="module")
def a14b_engine(a14b) -> Engine:
    """One engine for every two-expert test: each render switches to its own LoRAs (and switching back to none
    restores the base, which test_high_and_low_loras_switch_per_expert checks)."""
    return Engine.load(spec_for(a14b, steps=3))


@pytest.mark.parametrize("expert", ["high", "low"])
def test_one_expert_lora_matches_diffusers(a14b, a14b_engine, tmp_path, expert):
    path = write_format("comfy", a14b, tmp_path / "e.safetensors")
    spec = spec_for(a14b, f"{path}:0.8@{expert}", steps=3)
    result = a14b_engine.render(spec)
    assert result.record["loras"][0]["targets"] == ["transformer" if expert == "high" else "transformer_2"]
    ref = diffusers_frames(a14b, spec, [(path, 0.8, expert)])
    assert float(np.abs(result.frames_float.numpy() - ref).max()) <= TOL


def test_high_and_low_loras_switch_per_expert(a14b, a14b_engine, tmp_path):
    high = write_format("comfy", a14b, tmp_path / "h.safetensors")
    low = write_musubi(random_lora(a14b, seed=8), tmp_path / "l.safetensors")
    base = spec_for(a14b, steps=3)
    engine = a14b_engine
    plain = engine.render(base).frames_float
    both = engine.render(base.replace(loras=(f"{high}:1@high", f"{low}:1@low")))
    assert both.record["loras"][0]["modules"] == 20 and both.record["loras"][1]["targets"] == ["transformer_2"]
    only_high = engine.render(base.replace(loras=(f"{high}:1@high",))).frames_float
    assert not torch.equal(both.frames_float, only_high) and not torch.equal(only_high, plain)
    assert torch.equal(engine.render(base).frames_float, plain)


def test_expert_choice_on_a_one_expert_model_is_refused(tiny_wan, tmp_path):
    path = write_format("comfy", tiny_wan, tmp_path / "h.safetensors")
    with pytest.raises(UserError, match="this model has one expert"):
        resolve_spec(spec_for(tiny_wan, f"{path}:1@high"), inspect_model(str(tiny_wan)))


# --- exact schedules --------------------------------------------------------------------------------------------


def shifted(sigmas: list[float], shift: float) -> list[float]:
    """The flow shift's published formula: s' = shift * s / (1 + (shift - 1) * s)."""
    return [shift * s / (1 + (shift - 1) * s) for s in sigmas]


def test_lightx2v_schedule_is_its_published_formula():
    from diffusers import FlowMatchEulerDiscreteScheduler

    from videogen import presets
    from videogen.schedulers import set_timesteps

    for name in ("wan2.1-t2v-14b-lightx2v-4step", "wan2.2-t2v-a14b-lightx2v-4step", "wan2.2-i2v-a14b-lightx2v-4step"):
        v = presets.load_preset(name).values
        assert (v["sigmas"], v["flow_shift"], v["guidance"], v["scheduler"]) == (
            (1.0, 0.75, 0.5, 0.25), 5.0, 1.0, "euler")
        assert "steps" not in v  # the sigmas set the step count
        scheduler = FlowMatchEulerDiscreteScheduler(shift=v["flow_shift"])
        set_timesteps(scheduler, len(v["sigmas"]), v["sigmas"], "cpu")
        want = shifted(list(v["sigmas"]), 5.0)
        assert want == pytest.approx([1.0, 0.9375, 0.833333, 0.625], abs=1e-6)
        assert scheduler.sigmas.tolist() == pytest.approx(want + [0.0], abs=1e-6)
        assert scheduler.timesteps.tolist() == pytest.approx([1000 * s for s in want], abs=1e-3)
    plain = FlowMatchEulerDiscreteScheduler(shift=5.0)
    plain.set_timesteps(4)  # what WanPipeline can do: not the published schedule
    assert plain.sigmas[:4].tolist() != pytest.approx(shifted([1.0, 0.75, 0.5, 0.25], 5.0), abs=1e-3)


def test_two_steps_per_expert_under_the_lightx2v_schedule(a14b, a14b_engine):
    """Boundary 0.875 * 1000: timesteps 1000 and 937.5 on the high-noise expert, 833 and 625 on the low one."""
    spec = spec_for(a14b, scheduler="euler", flow_shift=5.0, sigmas=(1.0, 0.75, 0.5, 0.25), guidance_2=1.0,
                    steps=None)
    engine = a14b_engine
    calls = {"transformer": [], "transformer_2": []}
    hooks = [getattr(engine.model, name).register_forward_pre_hook(
        lambda _m, _a, kw, name=name: calls[name].append(round(float(kw["timestep"].flatten()[0]), 1)),
        with_kwargs=True) for name in calls]
    try:
        result = engine.render(spec)
    finally:
        for hook in hooks:
            hook.remove()
    assert calls == {"transformer": [1000.0, 937.5], "transformer_2": [833.3, 625.0]}
    assert result.record["sampling"]["sigmas"] == pytest.approx(shifted([1, 0.75, 0.5, 0.25], 5.0) + [0.0], abs=1e-6)
    assert result.spec.steps == 4
