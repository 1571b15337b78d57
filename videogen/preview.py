"""Live preview: each step's estimate of the clean video, mapped to RGB with a [C,3] matrix, as a PNG grid.

The sampler's x0 estimate (x_t - sigma * v for flow models) lives in the model's normalised latent space; one
matrix multiply per latent pixel turns it into a rough colour picture, so a preview costs next to nothing
beside a transformer step. The factors come from ComfyUI's `comfy/latent_formats.py` (classes Wan21, Wan22,
HunyuanVideo, LTXV, Mochi; read there, checked against this project's latent spaces: diffusers normalises
latents the same way ComfyUI's `process_in` does), and for the built-in model from a least-squares fit on its
own VAE (videogen/mini/latent_rgb.py). Until each family declares its latent format, the table is here,
keyed by (family, latent channels): both known from the model's configs before any weight is read.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from videogen.errors import UserError
from videogen.preview_factors import COMFY_FACTORS

if TYPE_CHECKING:
    import torch

    from videogen.resolve import ModelInfo
    from videogen.spec import RenderSpec

MIN_TILE = 64  # small latents are scaled up (nearest neighbour) to at least this many pixels on the short side
BUILTIN_FACTORS = Path(__file__).resolve().parent / "mini" / "latent_rgb.json"


@dataclass(frozen=True)
class RgbFactors:
    matrix: list[list[float]]  # [C][3]
    bias: list[float]  # [3]
    source: str

    def apply(self, latents: torch.Tensor) -> np.ndarray:
        """Latents [C,F,h,w] -> uint8 frames [F,h,w,3] (the factors map to [-1, 1])."""
        import torch

        m = torch.tensor(self.matrix, dtype=torch.float32, device=latents.device)
        b = torch.tensor(self.bias, dtype=torch.float32, device=latents.device)
        rgb = torch.einsum("cfhw,ck->fhwk", latents.float(), m) + b
        return ((rgb + 1) * 127.5).clamp(0, 255).round().to(torch.uint8).cpu().numpy()


def latent_channels(info: ModelInfo) -> int | None:
    from videogen.families.base import read_config

    config = read_config(info.source.path, "vae")
    value = config.get("z_dim") or config.get("latent_channels")
    return int(value) if value else None


def factors_for(info: ModelInfo) -> RgbFactors | None:
    """The latent-to-RGB factors of a model, from its family and latent channel count; None if unknown."""
    channels = latent_channels(info)
    key = (info.family.name, channels)
    if key == ("wan", 4) and BUILTIN_FACTORS.is_file():  # the built-in model (a small Wan): fitted here
        data = json.loads(BUILTIN_FACTORS.read_text(encoding="utf-8"))
        return RgbFactors(data["factors"], data["bias"], "fitted on the built-in model's VAE")
    entry = COMFY_FACTORS.get(key)
    if entry is None:
        return None
    name, matrix, bias = entry
    return RgbFactors(matrix, bias, f"ComfyUI comfy/latent_formats.py {name}")


def video_latents(x0: torch.Tensor) -> torch.Tensor:
    """The step's estimate, model-space [B,C,F,h,w] as every family hands it to step callbacks -> [C,F,h,w]."""
    return x0[0]


def tile_scale(h: int, w: int) -> int:
    """How much a latent frame of h x w is scaled up in previews and traces."""
    return max(1, math.ceil(MIN_TILE / max(1, min(h, w))))


def grid_shape(frames: int) -> tuple[int, int]:
    """(rows, columns) of the preview grid: as square as it gets, filled row by row."""
    cols = max(1, math.ceil(math.sqrt(frames)))
    return math.ceil(frames / cols), cols


def even(image: np.ndarray) -> np.ndarray:
    """Pad with black to an even width and height (what H.264 in yuv420p needs)."""
    h, w = image.shape[:2]
    return np.pad(image, ((0, h % 2), (0, w % 2), (0, 0)))


def grid(frames: np.ndarray, cols: int) -> np.ndarray:
    """Frames [F,h,w,3] -> one image of ceil(F / cols) rows; unused cells stay black."""
    f, h, w, _ = frames.shape
    rows = math.ceil(f / cols)
    out = np.zeros((rows * h, cols * w, 3), dtype=np.uint8)
    for i, frame in enumerate(frames):
        r, c = divmod(i, cols)
        out[r * h:(r + 1) * h, c * w:(c + 1) * w] = frame
    return out


def upscale(frames: np.ndarray, k: int) -> np.ndarray:
    return frames if k == 1 else frames.repeat(k, axis=1).repeat(k, axis=2)


def write_png(image: np.ndarray, path: Path, compress: int = 1) -> None:
    """Write a PNG atomically: a viewer never sees half a file (fast compression: it is rewritten each step)."""
    from PIL import Image

    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        Image.fromarray(image).save(tmp, format="PNG", compress_level=compress)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def check_image_path(path: Path, flag: str, suffixes: tuple[str, ...], overwrite: bool) -> None:
    """Refuse, before loading, a path we could not or must not write."""
    if path.suffix.lower() not in suffixes:
        raise UserError(f"{flag} {path}: the file must end in {' or '.join(suffixes)}")
    if not path.parent.is_dir():
        raise UserError(f"{flag} {path}: folder not found: {path.parent}")
    if not os.access(path.parent, os.W_OK):
        raise UserError(f"{flag} {path}: cannot write to folder {path.parent}")
    if path.is_dir():
        raise UserError(f"{flag} {path} is a folder")
    if path.exists() and not overwrite:
        raise UserError(f"{flag} {path}: file exists (use --overwrite to replace it)")


class Preview:
    """Step watcher: rewrites `path` (and the terminal's picture) with every step's x0 estimate."""

    def __init__(self, path: Path | None, factors: RgbFactors, model: Any, spec: RenderSpec,
                 terminal: Callable[[np.ndarray], None] | None = None):
        self.path, self.factors, self.model, self.spec, self.terminal = path, factors, model, spec, terminal
        self.seconds = 0.0  # time spent here, to report the preview's cost per step
        self.steps = 0

    def image(self, x0: torch.Tensor) -> np.ndarray:
        latents = video_latents(x0)
        frames = self.factors.apply(latents)
        return grid(upscale(frames, tile_scale(*frames.shape[1:3])), grid_shape(len(frames))[1])

    def __call__(self, i: int, total: int, x0: torch.Tensor) -> None:
        import time

        start = time.perf_counter()
        image = self.image(x0)
        if self.path is not None:
            write_png(image, self.path)
        if self.terminal is not None:
            self.terminal(image)
        self.seconds += time.perf_counter() - start
        self.steps += 1
