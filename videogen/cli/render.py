"""One render from the command line: validate everything first, then load, render and write."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from videogen.cli.watch import Watch
from videogen.settings import Rerun
from videogen.spec import RenderSpec


def render_one(spec: RenderSpec, output: Path | None, *, overwrite: bool, quiet: bool, rerun: Rerun | None = None,
               allow_different_model: bool = False, watch: Watch | None = None,
               audio: Path | None = None) -> dict[str, Any]:
    """The run record, as written beside the output (`timings.write` and `output` included). `audio`: the
    --audio WAV path."""
    from videogen import audio as sound
    from videogen.cli import watch as w
    from videogen.errors import UserError

    watch = watch or w.Watch()
    w.check_paths(watch, output, overwrite)  # --preview / --trace paths: refused before torch is imported
    if audio is not None:
        if spec.no_audio:
            raise UserError("--audio writes the sound track and --no-audio leaves it out: give one of them")
        sound.check_wav_path(audio, output, overwrite)
    from videogen.api import prepare, render_and_write
    from videogen.cli.progress import RenderProgress

    spec, info, output = prepare(spec, output, overwrite, rerun, allow_different_model)
    w.check(watch, info, output, overwrite)
    if audio is not None:
        if not info.family.sound:
            raise UserError(f"--audio: this {info.family.name} model makes no sound")
        sound.check_wav_path(audio, output, overwrite)  # again, now that the default output path is known
    from videogen.engine import Engine  # torch: only once the output and settings passed their checks

    with RenderProgress(enabled=not quiet) as progress:
        engine = Engine.load(spec, progress)
        watchers = w.Watchers(watch, info, engine.model, spec, show_terminal=not quiet)
        result = render_and_write(engine, spec, output, overwrite, progress,
                                  on_step=watchers if watchers.active else None)
        record = result.record
        if audio is not None and result.audio is not None:
            sound.write_wav(audio, result.audio[0].numpy(), result.audio[1], overwrite)
        if watchers.active:
            record["watch"] = watchers.finish(overwrite)
    if not quiet:
        from videogen.cli.progress import stderr

        stderr.print(w.summary(record), markup=False, highlight=False, soft_wrap=True)
    return record
