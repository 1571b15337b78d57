"""Merging LoRA deltas into loaded weights, and switching sets between renders without a reload.

W' = W + sum_i weight_i * (up_i @ down_i * alpha_i / rank_i + diff_i), b' = b + sum_i weight_i * diff_b_i, computed
in float32 from the original weight in its loaded dtype, then written in place (`param.data.copy_`): the tensors
stay the same objects, so compiled blocks, layerwise fp8 casting and offload hooks all see the new values. The
original of a touched weight is read back from the model's safetensors file when it is there unchanged (no memory
cost); otherwise a CPU copy is kept.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from videogen.lora import LoraInfo
from videogen.lora.keys import LoraTensors, checkpoint_tensors

Slot = tuple[str, str]  # (component, parameter name)


def deltas(infos: list[LoraInfo]) -> dict[Slot, torch.Tensor]:
    """Summed float32 deltas per parameter; LoRAs at weight 0 add nothing (weight 0 is exactly no LoRA)."""
    out: dict[Slot, torch.Tensor] = {}

    def add(slot: Slot, value: torch.Tensor) -> None:
        out[slot] = out[slot] + value if slot in out else value

    for info in infos:
        w = info.ref.weight
        if w == 0:
            continue
        for component in info.targets:
            for name, t in info.norm.modules.items():
                weight = _weight_delta(t)
                if weight is not None:
                    add((component, f"{name}.weight"), w * weight)
                if t.diff_b is not None:
                    add((component, f"{name}.bias"), w * t.diff_b.float())
    return out


def _weight_delta(t: LoraTensors) -> torch.Tensor | None:
    delta = None
    if t.down is not None:
        rank = t.down.shape[0]
        scale = 1.0 if t.alpha is None else t.alpha / rank
        delta = (t.up.float().flatten(1) @ t.down.float().flatten(1)) * scale
        delta = delta.reshape(t.up.shape[0], *t.down.shape[1:])
    if t.diff is not None:
        delta = t.diff.float() if delta is None else delta + t.diff.float()
    return delta


class LoraState:
    """The LoRA set merged into a model's transformers; `switch` moves to another set in place."""

    def __init__(self, modules: dict[str, torch.nn.Module], model_path: Path):
        self.modules = {k: m for k, m in modules.items() if k in ("transformer", "transformer_2")}
        self.model_path = model_path
        self.params = {(c, n): p for c, m in self.modules.items() for n, p in m.named_parameters()}
        self.dtypes = {slot: p.dtype for slot, p in self.params.items()}  # before any fp8 storage
        self.files: dict[str, dict[str, tuple[tuple[int, ...], Path]]] = {}
        self.copies: dict[Slot, torch.Tensor] = {}  # originals the checkpoint cannot give back
        self.verified: set[Slot] = set()
        self.touched: set[Slot] = set()
        self.key: tuple[Any, ...] = ()
        self.last_switch_seconds = 0.0
        self.handles: dict[str, Any] = {}
        self.stack: contextlib.ExitStack | None = None

    def switch(self, infos: list[LoraInfo]) -> bool:
        """Merge exactly `infos` (restoring what the previous set touched); False when nothing changed."""
        key = tuple((i.sha256, i.ref.weight, i.targets) for i in infos if i.ref.weight != 0)
        if key == self.key:
            return False
        start = time.perf_counter()
        new = deltas(infos)
        missing = [f"{c}.{n}" for c, n in new if (c, n) not in self.params]
        if missing:
            raise RuntimeError(f"LoRA targets parameters the loaded model lacks: {', '.join(missing[:3])}")
        with torch.no_grad(), contextlib.ExitStack() as stack:
            self.handles = {}  # each checkpoint file opened once per switch
            self.stack = stack
            for slot in sorted(self.touched - new.keys()):
                self.params[slot].data.copy_(self.original(slot))
            for slot, delta in new.items():
                merged = (self.original(slot).float() + delta).to(self.dtypes[slot])
                self.params[slot].data.copy_(merged)
            self.handles = {}
        self.touched = set(new)
        self.key = key
        self.last_switch_seconds = time.perf_counter() - start
        return True

    def original(self, slot: Slot) -> torch.Tensor:
        """The weight as loaded (its load dtype, on the CPU)."""
        if slot in self.copies:
            return self.copies[slot]
        component, name = slot
        if component not in self.files:
            self.files[component] = checkpoint_tensors(self.model_path / component)
        entry = self.files[component].get(name)
        value = None
        if entry is not None:
            file = str(entry[1])
            if file not in self.handles:
                self.handles[file] = self.stack.enter_context(safe_open(file, framework="pt"))
            value = self.handles[file].get_tensor(name).to(self.dtypes[slot])
        if slot not in self.verified and slot not in self.touched:
            # First look at this weight, still untouched: the file must give back exactly what was loaded.
            current = self.params[slot].detach()
            if current.dtype == self.dtypes[slot]:
                current = current.to("cpu")
                if value is None or not torch.equal(value, current):
                    self.copies[slot] = value = current.clone()
            self.verified.add(slot)
        if value is None:  # not in the file and already stored in fp8: its stored value is the best we have
            value = self.copies.setdefault(slot, self.params[slot].detach().to("cpu", self.dtypes[slot]))
        return value
