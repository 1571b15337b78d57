"""Progress and warnings on stderr (stdout carries only results)."""

from __future__ import annotations

import logging
import sys
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

STAGES = {"load": "loading model", "encode": "encoding prompt", "denoise": "denoising", "decode": "decoding",
          "write": "writing video"}
stderr = Console(stderr=True, highlight=False)


class _Handler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        label = "[yellow]warning:[/yellow]" if record.levelno >= logging.WARNING else "note:"
        stderr.print(f"{label} {record.getMessage()}", markup=True, soft_wrap=True)


def setup_logging() -> None:
    log = logging.getLogger("videogen")
    if not any(isinstance(h, _Handler) for h in log.handlers):
        log.addHandler(_Handler())
    log.setLevel(logging.INFO)
    log.propagate = False
    # Libraries' own progress bars and chatter would interleave with ours.
    import os

    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


class StepRate(TextColumn):
    """it/s of the denoising task."""

    def __init__(self) -> None:
        super().__init__("")

    def render(self, task):  # type: ignore[no-untyped-def]
        from rich.text import Text

        speed = task.finished_speed or task.speed
        return Text(f"{speed:.2f} it/s" if speed else "", style="cyan")


class RenderProgress:
    """Callable as the engine's progress hook: (stage, done, total)."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled and sys.stderr is not None
        self.progress = Progress(TextColumn("{task.description:<16}"), BarColumn(), MofNCompleteColumn(), StepRate(),
                                 TimeRemainingColumn(), console=stderr, transient=False, disable=not self.enabled)
        self.tasks: dict[str, TaskID] = {}
        self.started = time.perf_counter()

    def __enter__(self) -> RenderProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage not in self.tasks or (done == 0 and self.progress.tasks[self.tasks[stage]].finished):
            self.tasks[stage] = self.progress.add_task(STAGES.get(stage, stage), total=total)
        self.progress.update(self.tasks[stage], completed=done, total=total)
