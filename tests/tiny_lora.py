"""Tiny random LoRAs for a tiny Wan model, written in each key format that tools publish."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from videogen.lora.wan_names import original_name

LINEAR = ("attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0", "attn2.to_q", "attn2.to_k", "attn2.to_v",
          "attn2.to_out.0", "ffn.net.0.proj", "ffn.net.2")


def model_shapes(folder: Path) -> dict[str, tuple[int, ...]]:
    f = folder / "transformer" / "diffusion_pytorch_model.safetensors"
    with f.open("rb") as fh:
        header = json.loads(fh.read(int.from_bytes(fh.read(8), "little")))
    return {k: tuple(v["shape"]) for k, v in header.items() if k != "__metadata__"}


def random_lora(folder: Path, seed: int, rank: int = 4, modules: list[str] | None = None, alpha: float | None = 2.0,
                scale: float = 0.4) -> dict[str, dict[str, torch.Tensor | float]]:
    """{diffusers module: {"down", "up", "alpha"?}} for every block linear layer (or `modules`)."""
    shapes = model_shapes(folder)
    blocks = sorted({int(k.split(".")[1]) for k in shapes if k.startswith("blocks.")})
    names = modules or [f"blocks.{b}.{m}" for b in blocks for m in LINEAR]
    g = torch.Generator().manual_seed(seed)
    out: dict[str, dict[str, torch.Tensor | float]] = {}
    for name in names:
        out_f, in_f = shapes[f"{name}.weight"]
        entry: dict[str, torch.Tensor | float] = {"down": torch.randn(rank, in_f, generator=g) * scale,
                                                  "up": torch.randn(out_f, rank, generator=g) * scale}
        if alpha is not None:
            entry["alpha"] = alpha
        out[name] = entry
    return out


def folded(entry: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(down, up) with alpha / rank folded into down: what diffusers' PEFT format stores."""
    down, up = entry["down"], entry["up"]
    alpha = entry.get("alpha")
    return (down * (alpha / down.shape[0]) if alpha is not None else down), up


def write_diffusers(lora: dict, path: Path, biases: dict | None = None) -> Path:
    sd = {}
    for name, entry in lora.items():
        down, up = folded(entry)
        sd[f"transformer.{name}.lora_A.weight"], sd[f"transformer.{name}.lora_B.weight"] = down, up
    for name, b in (biases or {}).items():
        sd[f"transformer.{name}.lora_B.bias"] = b
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    return path


def write_comfy(lora: dict, path: Path, down_up: tuple[str, str] = ("lora_down", "lora_up"),
                biases: dict | None = None, extra: dict | None = None) -> Path:
    """ComfyUI / Kijai (lora_down/lora_up, .alpha) or lightx2v (lora_A/lora_B) with `diffusion_model.` keys."""
    d, u = down_up
    sd: dict[str, torch.Tensor] = {}
    for name, entry in lora.items():
        orig = original_name(name) or name
        sd[f"diffusion_model.{orig}.{d}.weight"], sd[f"diffusion_model.{orig}.{u}.weight"] = entry["down"], entry["up"]
        if "alpha" in entry:
            sd[f"diffusion_model.{orig}.alpha"] = torch.tensor(float(entry["alpha"]))
    for name, b in (biases or {}).items():
        sd[f"diffusion_model.{original_name(name) or name}.diff_b"] = b
    sd.update(extra or {})
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    return path


def write_musubi(lora: dict, path: Path) -> Path:
    sd: dict[str, torch.Tensor] = {}
    for name, entry in lora.items():
        key = "lora_unet_" + (original_name(name) or name).replace(".", "_")
        sd[f"{key}.lora_down.weight"], sd[f"{key}.lora_up.weight"] = entry["down"], entry["up"]
        if "alpha" in entry:
            sd[f"{key}.alpha"] = torch.tensor(float(entry["alpha"]))
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    return path
