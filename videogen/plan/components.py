"""Model components built from their configs alone: on the meta device to count weights, on fake tensors to trace.

A component is described as data (library, class, config); the same description comes from a model card shipped
with the presets or from a local diffusers folder's own config.json files.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class Component:
    name: str  # as in model_index.json: text_encoder, transformer, vae, ...
    library: str  # "diffusers" | "transformers"
    cls: str
    config: dict[str, Any]
    repeat: list[str] = field(default_factory=list)  # config keys that count repeated blocks
    runs_in: str = "model"  # "model" (the render dtype) or a fixed dtype name such as "float32"

    def dtype(self, model_dtype: torch.dtype) -> torch.dtype:
        return model_dtype if self.runs_in == "model" else getattr(torch, self.runs_in)


@dataclass(frozen=True)
class WeightStats:
    """Parameter counts of one component, at full size."""

    parameters: int
    largest_leaf: int  # the most parameters one module holds directly (a leaf-offload group)
    largest_block: int  # the largest repeated block (a block-offload group); 0 when none
    outside_blocks: int  # parameters outside the repeated blocks (stay on the GPU with block offload)


def instantiate(comp: Component, overrides: dict[str, Any] | None = None) -> torch.nn.Module:
    """The module for `comp` in the current default device and dtype (no weights are read)."""
    config = {k: v for k, v in comp.config.items() if not k.startswith("_")}
    config.update(overrides or {})
    if isinstance(config.get("layer_types"), list) and "num_hidden_layers" in (overrides or {}):
        config["layer_types"] = config["layer_types"][: config["num_hidden_layers"]]  # one entry per layer
    if comp.library != "transformers":  # diffusers, or one of its pipeline modules (LTX-2's "ltx2")
        import importlib

        module = importlib.import_module("diffusers" if comp.library == "diffusers"
                                         else f"diffusers.pipelines.{comp.library}")
        return getattr(module, comp.cls).from_config(config).eval()
    import transformers

    model_type = config.pop("model_type")
    cfg = transformers.AutoConfig.for_model(model_type, **config)
    if comp.cls.startswith("Auto"):  # the class a config names (a multimodal model's language model)
        return getattr(transformers, comp.cls).from_config(cfg).eval()
    return getattr(transformers, comp.cls)(cfg).eval()


@contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def weight_stats(comp: Component) -> WeightStats:
    """Count parameters on the meta device: the full-size module costs no memory and no time to initialise."""
    with torch.device("meta"):
        module = instantiate(comp)
    total = sum(p.numel() for p in module.parameters())
    leaf = max((sum(p.numel() for p in m.parameters(recurse=False)) for m in module.modules()), default=0)
    blocks = [b for m in repeated_lists(module) for b in m if b is not None]
    in_blocks = sum(p.numel() for b in blocks for p in b.parameters())
    largest = max((sum(p.numel() for p in b.parameters()) for b in blocks), default=0)
    return WeightStats(total, leaf, largest, total - in_blocks)


def repeated_lists(module: torch.nn.Module) -> list[torch.nn.ModuleList]:
    """The outermost ModuleLists of more than one entry: a transformer's blocks (not lists nested inside them)."""
    found: list[tuple[str, torch.nn.ModuleList]] = []
    for name, m in module.named_modules():
        if isinstance(m, torch.nn.ModuleList) and len(m) > 1 and not any(
                name.startswith(f"{outer}.") for outer, _ in found):
            found.append((name, m))
    return [m for _, m in found]
