"""One render from the command line: validate everything first, then load, render and write."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from videogen.cli.watch import Watch
from videogen.spec import RenderSpec


def render_one(spec: RenderSpec, output: Path | None, *, overwrite: bool, quiet: bool,
               watch: Watch | None = None) -> dict[str, Any]:
    from videogen.cli import watch as w

    watch = watch or w.Watch()
    w.check_paths(watch, output, overwrite)
    from videogen.cli.progress import RenderProgress

    from videogen.engine import Engine, inspect_model, resolve_device, resolve_dtype, resolve_spec
    from videogen.video import check_output, default_output, output_kind, write_video

    info = inspect_model(spec.model)
    spec = resolve_spec(spec, info)  # sizes, frames and image checked before any weight is read
    resolve_dtype(spec.dtype, resolve_device(spec.device))
    output = output if output is not None else default_output(spec.prompt, spec.seed)
    output_kind(output)
    check_output(output, overwrite)
    w.check(watch, info, output, overwrite)
    with RenderProgress(enabled=not quiet) as progress:
        engine = Engine.load(spec, progress)
        watchers = w.Watchers(watch, info, engine.model, engine.resolve(spec), show_terminal=not quiet)
        result = engine.render(spec, progress, watchers if watchers.active else None)
        progress("write", 0, 1)
        start = time.perf_counter()
        record = dict(result.record)
        write_video(result.frames, output, result.spec.fps or 16, record, crf=spec.crf, overwrite=overwrite)
        progress("write", 1, 1)
        if watchers.active:
            record["watch"] = watchers.finish(overwrite)
    record["timings"]["write"] = round(time.perf_counter() - start, 4)
    record["output"] = str(output)
    if not quiet:
        from videogen.cli.progress import stderr

        stderr.print(w.summary(record), markup=False, highlight=False, soft_wrap=True)
    return record
