"""--preview / --trace / --trace-fast: flags, checks before loading, the step watchers, the end-of-render summary."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from videogen.errors import UserError

if TYPE_CHECKING:
    import torch

    from videogen.resolve import ModelInfo
    from videogen.spec import RenderSpec

W = "Watch the denoising"
PreviewOpt = Annotated[Path | None, typer.Option("--preview", help="PNG rewritten after every step: the current estimate of the clean video, every latent frame in a grid (rough colours from the model's latent-to-RGB factors). Also drawn in kitty, iTerm2 and sixel terminals.", rich_help_panel=W)]
TraceOpt = Annotated[Path | None, typer.Option("--trace", help="MP4 of the denoising: each step's estimate decoded by the VAE (one video frame per step), plus a contact sheet <name>-sheet.png beside it (steps down, frames across).", rich_help_panel=W)]
TraceFastOpt = Annotated[bool, typer.Option("--trace-fast", help="Map the trace's estimates to RGB with the latent-to-RGB factors instead of decoding each one with the VAE.", rich_help_panel=W)]


@dataclass(frozen=True)
class Watch:
    preview: Path | None = None
    trace: Path | None = None
    trace_fast: bool = False


def check_paths(watch: Watch, output: Path | None, overwrite: bool) -> None:
    """The paths, refused first (before torch is even imported): wrong type, missing folder, taken, clashing."""
    from videogen import preview, trace

    if watch.trace_fast and watch.trace is None:
        raise UserError("--trace-fast needs --trace PATH.mp4")
    paths: dict[str, Path] = {"-o/--output": output.absolute()} if output is not None else {}
    if watch.preview is not None:
        preview.check_image_path(watch.preview, "--preview", (".png",), overwrite)
        paths["--preview"] = watch.preview.absolute()
    if watch.trace is not None:
        preview.check_image_path(watch.trace, "--trace", (".mp4",), overwrite)
        sheet = trace.sheet_path(watch.trace)
        if sheet.exists() and not overwrite:
            raise UserError(f"--trace {watch.trace}: its contact sheet {sheet} exists (use --overwrite to replace it)")
        paths["--trace"], paths["--trace contact sheet"] = watch.trace.absolute(), sheet.absolute()
    seen: dict[Path, str] = {}
    for flag, p in paths.items():
        if p in seen:
            raise UserError(f"{flag} {p} is also the {seen[p]} path: give each its own file")
        seen[p] = flag


def check(watch: Watch, info: ModelInfo, output: Path, overwrite: bool) -> None:
    """What needs the model's configs (still before any weight is read): a model without factors."""
    from videogen import preview

    check_paths(watch, output, overwrite)  # again, now that the default output path is known
    if (watch.preview is not None or watch.trace_fast) and preview.factors_for(info) is None:
        flag = "--preview" if watch.preview is not None else "--trace-fast"
        raise UserError(f"{flag}: no latent-to-RGB factors are known for this {info.family.name} model "
                        f"({preview.latent_channels(info)} latent channels); --trace (decoded by the VAE) works")


class Watchers:
    """The engine's `on_step` hook: feeds the preview and the trace each step's x0 estimate."""

    def __init__(self, watch: Watch, info: ModelInfo, model: Any, spec: RenderSpec, show_terminal: bool):
        from videogen import preview, termimage, trace

        self.watch, self.preview, self.trace = watch, None, None
        factors = preview.factors_for(info)
        terminal = None
        kind = termimage.protocol(os.environ, sys.stderr.isatty()) if show_terminal else None
        if kind is not None and factors is not None:
            from videogen.cli.progress import stderr

            terminal = termimage.shower(kind, lambda text: stderr.print(_Raw(text)))
        if factors is not None and (watch.preview is not None or terminal is not None):
            self.preview = preview.Preview(watch.preview, factors, model, spec, terminal)
        if watch.trace is not None:
            self.trace = trace.Trace(watch.trace, model, spec, factors if watch.trace_fast else None)

    @property
    def active(self) -> bool:
        return self.preview is not None or self.trace is not None

    def __call__(self, i: int, total: int, latents: torch.Tensor, x0: torch.Tensor | None) -> None:
        if x0 is None:  # a family that gives no estimate
            return
        if self.preview is not None:
            self.preview(i, total, x0)
        if self.trace is not None:
            self.trace(i, total, x0)

    def finish(self, overwrite: bool) -> dict[str, Any]:
        """Write the trace; what went where, for the run record and the summary."""
        out: dict[str, Any] = {}
        if self.preview is not None:
            out["preview"] = {"path": str(self.watch.preview) if self.watch.preview else None,
                              "seconds": round(self.preview.seconds, 4), "steps": self.preview.steps,
                              "factors": self.preview.factors.source}
        if self.trace is not None and self.trace.steps:
            video, sheet = self.trace.write(overwrite)
            out["trace"] = {"path": str(video), "contact_sheet": str(sheet), "steps": len(self.trace.steps),
                            "decoder": "latent-to-RGB factors" if self.watch.trace_fast else "VAE",
                            "seconds": round(self.trace.seconds, 4)}
        return out


def summary(record: dict[str, Any]) -> str:
    """One stderr line at the end of a render: time per step, and where the video, preview and trace went."""
    t = record.get("timings", {})
    steps = record.get("steps") or 0
    parts = [f"{steps} steps in {t.get('denoise', 0):.2f} s ({t.get('per_step', 0):.3f} s/step)",
             f"video: {record.get('output')}"]
    watch = record.get("watch", {})
    if "preview" in watch and watch["preview"]["path"]:
        p = watch["preview"]
        share = p["seconds"] / t["denoise"] if t.get("denoise") else 0.0
        parts.append(f"preview: {p['path']} ({share:.1%} of the denoising)")
    if "trace" in watch:
        parts.append(f"trace: {watch['trace']['path']} (contact sheet {watch['trace']['contact_sheet']})")
    return "done: " + "; ".join(parts)


class _Raw:
    """Escape codes for rich to pass through as they are: a control segment, zero width, never wrapped."""

    def __init__(self, text: str):
        self.text = text

    def __rich_console__(self, console: Any, options: Any) -> Any:
        from rich.control import ControlType
        from rich.segment import Segment

        yield Segment(self.text, None, [(ControlType.BELL,)])  # the control code is a marker, not written
