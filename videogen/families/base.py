"""What a model family adapter is: facts as data, plus load / encode / plan / decode."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from videogen.errors import UserError
from videogen.loading import components, load_component
from videogen.sampling import Conditioning, Plan
from videogen.spec import RenderSpec


@dataclass(frozen=True)
class Geometry:
    """Which frame counts and sizes a model takes.

    frames = temporal*k + 1, the latent frame count k + 1 a multiple of `latent_frames` (a transformer
    whose patches span several latent frames), sizes multiples of `multiple_h` / `multiple_w`.
    """

    temporal: int
    multiple_h: int
    multiple_w: int
    latent_frames: int = 1

    def problems(self, frames: int, height: int, width: int) -> list[str]:
        out = []
        t, p = self.temporal, self.latent_frames
        if p > 1:
            valid = [t * (p * m - 1) + 1 for m in range(1, (frames - 1) // (t * p) + 3)]
            if frames not in valid:
                near = [v for v in valid if v < frames][-1:] + [v for v in valid if v > frames][:1]
                out.append(f"--frames {frames}: this model takes {valid[0]}, {valid[1]}, ... frames "
                           f"(latent frames a multiple of {p}): use {' or '.join(map(str, near))}")
        elif t > 1 and (frames - 1) % t:
            lo = (frames - 1) // t * t + 1
            out.append(f"--frames {frames} is not {t}k+1: use {lo if lo > 1 else lo + t} or {lo + t}"
                       if lo > 1 else f"--frames {frames} is not {t}k+1: use {lo + t}")
        for flag, value, m in (("--height", height, self.multiple_h), ("--width", width, self.multiple_w)):
            if value % m:
                lo = value // m * m
                out.append(f"{flag} {value} is not a multiple of {m}: use {lo} or {lo + m}" if lo
                           else f"{flag} {value} is not a multiple of {m}: use {m}")
        return out


@dataclass(frozen=True)
class Defaults:
    """A family's defaults: those of its diffusers pipeline's `__call__`, plus the documented fps."""

    frames: int
    height: int
    width: int
    steps: int
    guidance: float
    fps: int
    negative_prompt: str = ""


def read_config(path: Path, component: str) -> dict[str, Any]:
    f = path / component / "config.json"
    if not f.is_file():
        f = path / component / "scheduler_config.json"
    try:
        return json.loads(f.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: cannot read {component} config ({e})") from None


class Family(ABC):
    """One model family. Subclasses declare facts as class attributes and implement four methods."""

    name: ClassVar[str]
    pipelines: ClassVar[tuple[str, ...]]  # diffusers pipeline classes this adapter drives
    tasks: ClassVar[tuple[str, ...]]  # "t2v", "i2v", "flf2v"
    defaults: ClassVar[Defaults]
    # Guidance-distilled families take `guidance` as an embedded input and real CFG as `true_guidance`.
    takes_true_guidance: ClassVar[bool] = False
    # Families whose guidance can follow CogVideoX's cosine ramp (`dynamic_guidance`).
    takes_dynamic_guidance: ClassVar[bool] = False
    # Families whose plan() hands `spec.sigmas` (an exact schedule) to the scheduler.
    takes_sigmas: ClassVar[bool] = False
    # Input spec fields of videogen/clips.py this family takes (video, mask, reference_images, strength, ...),
    # and those it cannot render without; any other one set is refused before loading.
    inputs: ClassVar[frozenset[str]] = frozenset()
    required_inputs: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, path: Path, index: dict[str, Any], device: torch.device, dtype: torch.dtype):
        self.path, self.index, self.device, self.dtype = path, index, device, dtype
        self.components = components(index)

    def load(self, name: str, dtype: torch.dtype | None = None) -> Any:
        """One component of the model folder, with its library's loader; torch modules come in eval mode."""
        part = load_component(self.path, name, *self.components[name], dtype=dtype)
        return part.eval() if isinstance(part, torch.nn.Module) else part

    @classmethod
    @abstractmethod
    def geometry(cls, path: Path, index: dict[str, Any]) -> Geometry:
        """Frame and size multiples, read from the configs alone (no weights loaded)."""

    @classmethod
    def task_of(cls, index: dict[str, Any]) -> str:
        return cls.tasks[0]

    @classmethod
    def defaults_for(cls, index: dict[str, Any]) -> Defaults:
        """The defaults of this model (a family whose models differ, e.g. in fps, overrides this)."""
        return cls.defaults

    @classmethod
    def check_spec(cls, path: Path, index: dict[str, Any], spec: RenderSpec) -> None:
        """Refuse, before any weight is read, what this model cannot do (told from its configs alone)."""
        return None  # most models take whatever their geometry allows

    @abstractmethod
    def encode(self, spec: RenderSpec) -> tuple[Conditioning, Conditioning | None]:
        """Prompt (and image) conditioning; the second is None when guidance is off."""

    @abstractmethod
    def plan(self, spec: RenderSpec, cond: Conditioning, uncond: Conditioning | None) -> Plan:
        """Scheduler, timesteps, seeded initial latents and the network wrapped as `predict`."""

    @abstractmethod
    def decode(self, latents: torch.Tensor, spec: RenderSpec) -> torch.Tensor:
        """Final latents -> frames [F,H,W,3] float32 in [0,1] on the CPU."""

    @abstractmethod
    def modules(self) -> dict[str, torch.nn.Module]:
        """The loaded torch modules by component name (for offload, compile, dtype)."""


def initial_noise(shape: tuple[int, ...], seed: int, device: torch.device) -> torch.Tensor:
    """Seed N: float32 noise drawn on the CPU, then moved: the same video on every device."""
    g = torch.Generator("cpu").manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float32).to(device)
