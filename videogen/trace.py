"""The denoising as a video: every step's x0 estimate, decoded, one video frame per step, and a contact sheet.

Each step's estimate is decoded by the model's own VAE (the family's `decode`, so what the render would have
given had it stopped there), or with `fast`, mapped to RGB by the latent-to-RGB factors (free, rough colours).
Every latent frame is kept: a trace frame is the preview's grid of them; the contact sheet has the steps down
and the frames across. Both files appear only when the render is complete.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from videogen import preview as pv

if TYPE_CHECKING:
    import torch

    from videogen.spec import RenderSpec

MAX_SHEET_WIDTH = 4096  # contact sheets of long, wide videos are scaled down to this width
TRACE_FPS = 4  # steps per second in the trace video
GAP, GAP_GRAY = 2, 128  # contact sheet: pixels between tiles, and their gray


def sheet_path(trace: Path) -> Path:
    """Where a trace's contact sheet goes: beside it, `<name>-sheet.png`."""
    return trace.with_name(f"{trace.stem}-sheet.png")


def resize(frames: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Frames [F,H,W,3] float -> [F,h,w,3]: area averaging down, nearest neighbour up (sharp, like the preview)."""
    import torch.nn.functional as F

    x = frames.permute(0, 3, 1, 2)
    mode = "area" if h <= x.shape[2] and w <= x.shape[3] else "nearest"
    return F.interpolate(x, size=(h, w), mode=mode).permute(0, 2, 3, 1)


class Trace:
    """Step watcher that keeps every step's frames (at tile size, so a long render stays small in memory)."""

    def __init__(self, path: Path, model: Any, spec: RenderSpec, factors: pv.RgbFactors | None):
        self.path, self.model, self.spec, self.factors = path, model, spec, factors
        self.steps: list[np.ndarray] = []  # [L,th,tw,3] uint8 per step
        self.seconds = 0.0

    def frames(self, x0: torch.Tensor) -> np.ndarray:
        import torch

        latents = pv.video_latents(x0)
        n, h, w = latents.shape[1:]
        k = pv.tile_scale(h, w)
        if self.factors is not None:  # --trace-fast
            return pv.upscale(self.factors.apply(latents), k)
        video = self.model.decode_video(x0, self.spec)  # [F,H,W,3] float in [0, 1]
        pick = torch.linspace(0, len(video) - 1, n).round().long()  # one pixel frame per latent frame
        small = resize(video[pick].float(), h * k, w * k)
        return (small * 255).round().clamp(0, 255).to(torch.uint8).numpy()

    def __call__(self, i: int, total: int, x0: torch.Tensor) -> None:
        start = time.perf_counter()
        self.steps.append(self.frames(x0))
        self.seconds += time.perf_counter() - start

    def video(self) -> np.ndarray:
        """[steps, H, W, 3]: each step's frames in the preview's grid (even sizes for H.264)."""
        cols = pv.grid_shape(len(self.steps[0]))[1]
        return np.stack([pv.even(pv.grid(frames, cols)) for frames in self.steps])

    def sheet(self) -> np.ndarray:
        """Steps down, frames across, one tile each, with a thin gray line between tiles (without it, an
        object moving across its frames looks still: neighbouring tiles would join into one picture)."""
        stacked = np.stack(self.steps)  # [S,L,h,w,3]
        s, n, h, w, _ = stacked.shape
        shrink = max(1, -(-n * w // MAX_SHEET_WIDTH))
        stacked = stacked[:, :, ::shrink, ::shrink]
        h, w = stacked.shape[2:4]
        out = np.full((s * (h + GAP) - GAP, n * (w + GAP) - GAP, 3), GAP_GRAY, dtype=np.uint8)
        for i in range(s):
            for j in range(n):
                out[i * (h + GAP):i * (h + GAP) + h, j * (w + GAP):j * (w + GAP) + w] = stacked[i, j]
        return out

    def write(self, overwrite: bool) -> tuple[Path, Path]:
        """Write the trace MP4 and its contact sheet, each through a temporary file renamed into place."""
        from videogen.errors import UserError
        from videogen.video import _encode

        sheet = sheet_path(self.path)
        for p in (self.path, sheet):
            if p.exists() and not overwrite:  # appeared while rendering
                raise UserError(f"--trace: {p} exists (use --overwrite to replace it)")
        tmp = self.path.with_name(f".{self.path.name}.partial-{os.getpid()}.mp4")
        try:
            _encode(self.video(), tmp, TRACE_FPS, "mp4", 20, f"videogen denoising trace: {len(self.steps)} steps")
            os.replace(tmp, self.path)
        finally:
            if tmp.exists():
                tmp.unlink()
        pv.write_png(self.sheet(), sheet, compress=9)
        return self.path, sheet
