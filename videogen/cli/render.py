"""One render from the command line: validate everything first, then load, render and write."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from videogen.settings import Rerun
from videogen.spec import RenderSpec


def render_one(spec: RenderSpec, output: Path | None, *, overwrite: bool, quiet: bool, rerun: Rerun | None = None,
               allow_different_model: bool = False) -> dict[str, Any]:
    """The run record, as written beside the output (`timings.write` and `output` included)."""
    from videogen.api import prepare, render_and_write
    from videogen.cli.progress import RenderProgress

    spec, _info, output = prepare(spec, output, overwrite, rerun, allow_different_model)
    from videogen.engine import Engine  # torch: only once the output and settings passed their checks

    with RenderProgress(enabled=not quiet) as progress:
        engine = Engine.load(spec, progress)
        return render_and_write(engine, spec, output, overwrite, progress).record
