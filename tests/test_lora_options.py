"""LoRA together with the other engine options (dtype, fp8 storage, compile, offload hooks), on the CPU.

For each option: a LoRA merged at load equals the same LoRA switched in later (bit for bit), and the LoRA's
effect survives the option (the frames stay near the float32 LoRA render, far from the render without it)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from tiny_lora import random_lora, write_comfy

from videogen import options
from videogen.engine import Engine
from videogen.lora import keys
from videogen.spec import RenderSpec


def spec_for(folder: Path, *loras: str, **kw) -> RenderSpec:
    return RenderSpec(prompt="a red cat runs on the beach", model=str(folder), frames=5, height=16, width=16,
                      steps=2, guidance=1.0, seed=3, max_sequence_length=16, loras=tuple(loras), **kw)


@pytest.fixture(scope="module")
def lora_file(tiny_wan, tmp_path_factory) -> Path:
    return write_comfy(random_lora(tiny_wan, seed=1), tmp_path_factory.mktemp("lora") / "style.safetensors")


@pytest.fixture(scope="module")
def fp32(tiny_wan, lora_file) -> tuple[torch.Tensor, torch.Tensor]:
    """(with the LoRA, without) in float32 and no other option."""
    engine = Engine.load(spec_for(tiny_wan))
    return (engine.render(spec_for(tiny_wan, str(lora_file))).frames_float,
            engine.render(spec_for(tiny_wan)).frames_float)


def expected_weight(folder: Path, lora_path: Path, name: str, dtype: torch.dtype) -> torch.Tensor:
    """W + up @ down * alpha / rank, from the checkpoint and the LoRA file, independently of videogen.lora."""
    with safe_open(str(folder / "transformer" / "diffusion_pytorch_model.safetensors"), "pt") as f:
        w = f.get_tensor(f"{name}.weight").to(dtype)
    orig = keys.ORIGINAL_NAMES["wan"](name)
    with safe_open(str(lora_path), "pt") as f:
        down = f.get_tensor(f"diffusion_model.{orig}.lora_down.weight")
        up = f.get_tensor(f"diffusion_model.{orig}.lora_up.weight")
        alpha = float(f.get_tensor(f"diffusion_model.{orig}.alpha"))
    return (w.float() + up @ down * (alpha / down.shape[0])).to(dtype)


@pytest.mark.parametrize("changes", [{"dtype": "bfloat16"}, {"quantize": "fp8"}, {"compile": True}],
                         ids=["bfloat16", "fp8", "compile"])
def test_lora_with_engine_option(tiny_wan, lora_file, fp32, monkeypatch, changes):
    monkeypatch.setattr(options, "COMPILE_BACKEND", "eager")  # dynamo graph capture without code generation
    with_lora = spec_for(tiny_wan, str(lora_file), **changes)
    merged_at_load = Engine.load(with_lora)
    a = merged_at_load.render(with_lora).frames_float
    engine = Engine.load(spec_for(tiny_wan, **changes))
    plain = engine.render(spec_for(tiny_wan, **changes)).frames_float
    b = engine.render(with_lora).frames_float  # switched in after fp8 storage / compilation
    assert torch.equal(a, b)
    lora_fp32, plain_fp32 = fp32
    effect = float((lora_fp32 - plain_fp32).abs().max())
    assert float((a - plain).abs().max()) > effect / 3, "the LoRA lost its effect under the option"
    assert float((a - lora_fp32).abs().max()) < effect / 3
    # The stored weight is the merged one, in the option's storage dtype.
    name = "blocks.0.attn1.to_q"
    stored = engine.model.transformer.get_submodule(name).weight.detach()
    base = torch.bfloat16 if changes.get("dtype") == "bfloat16" else torch.float32
    want = expected_weight(tiny_wan, lora_file, name, base).to(stored.dtype)
    assert torch.equal(stored.float(), want.float())


@pytest.mark.parametrize("mode", ["model", "group"])
def test_lora_switch_through_offload_hooks(tiny_wan, lora_file, fp32, mode):
    """The CPU stands in for the GPU (the CLI refuses offload without CUDA): LoRAs written in place after the
    hooks are installed reach the forward, and switching back restores the base."""
    engine = Engine.load(spec_for(tiny_wan))
    options.offload(engine.model.modules(), mode, torch.device("cpu"))
    lora_fp32, plain_fp32 = fp32
    assert torch.equal(engine.render(spec_for(tiny_wan, str(lora_file))).frames_float, lora_fp32)
    assert torch.equal(engine.render(spec_for(tiny_wan)).frames_float, plain_fp32)
