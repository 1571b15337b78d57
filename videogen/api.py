"""The Python API, and the render path the `generate` command shares with it.

    import videogen
    result = videogen.generate("a red circle moving left on a black background", seed=1, output="clip.mp4")
    engine = videogen.load("path/or/hub-id")          # one model load ...
    for seed in range(4):
        engine.generate("a cat on a beach", seed=seed)  # ... many renders

Settings are RenderSpec fields, merged exactly as the command line merges them (videogen.settings.merge):
the model's defaults < the built-in model's defaults < preset < settings. Bad settings raise
videogen.errors.UserError before any weight is read; run-time failures raise RenderError."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from videogen.errors import UserError
from videogen.settings import Rerun, merge
from videogen.spec import ENGINE_FIELDS, RenderSpec

if TYPE_CHECKING:
    import numpy as np

    from videogen.engine import Engine, Progress
    from videogen.resolve import ModelInfo
    from videogen.sampling import StepCallback

log = logging.getLogger("videogen")


@dataclass
class Result:
    """One finished render: where it was written, its run record (as written), and its frames [F,H,W,3] uint8."""

    output: Path
    record: dict[str, Any]
    frames: np.ndarray
    audio: tuple[Any, int] | None = None  # models with sound: waveform [channels, samples] and its sample rate


def absolute_inputs(spec: RenderSpec) -> RenderSpec:
    """The input files (image, video, mask, reference images) as absolute paths, so that the run record finds them
    again from any folder (`--from`)."""
    from videogen.spec import INPUT_FILES

    def absolute(value: str) -> str:
        return str(Path(value).expanduser().absolute())

    changes: dict[str, Any] = {k: absolute(getattr(spec, k)) for k in INPUT_FILES if getattr(spec, k)}
    if spec.reference_images:
        changes["reference_images"] = tuple(absolute(v) for v in spec.reference_images)
    return spec.replace(**changes) if changes else spec


def prepare(spec: RenderSpec, output: Path | None, overwrite: bool, rerun: Rerun | None = None,
            allow_different_model: bool = False) -> tuple[RenderSpec, ModelInfo, Path]:
    """Everything that can be checked before loading: the model, the settings it takes, the output path."""
    from videogen.video import check_output, default_output

    if output is not None:
        check_output(output, overwrite)  # a bad path is refused before the model is even looked at
    from videogen.resolve import inspect_model, lora_infos, relabel, resolve_spec

    model_from = spec.extras.get("where", {}).get("model", "--model")

    def inspect(weights: bool) -> ModelInfo:
        try:
            return inspect_model(spec.model, spec.revision, spec.variant, weights)
        except UserError as e:
            raise UserError(str(e) if model_from.startswith("--") else f"{model_from}: {e}") from None

    info = inspect(weights=False)  # a Hub model not in the cache: its configs only, so far
    spec = resolve_spec(absolute_inputs(spec), info)  # sizes, frames and images checked before any weight is read
    if info.source.configs_only:  # the render is possible: now fetch its weights
        info = inspect(weights=True)
        try:
            lora_infos(spec, info)
        except UserError as e:
            raise UserError(relabel(str(e), spec)) from None
    if rerun is not None and model_from.startswith("run record"):
        compare_with_record(info, rerun, allow_different_model)
    if rerun is not None:
        from videogen.clips import check_unchanged

        check_unchanged(rerun.inputs, spec, rerun.where)
    from videogen.engine import resolve_device, resolve_dtype  # the first check that needs torch

    try:
        resolve_dtype(spec.dtype, resolve_device(spec.device))
    except UserError as e:
        raise UserError(relabel(str(e), spec)) from None
    if output is None:
        output = default_output(spec.prompt, spec.seed)
        check_output(output, overwrite)
    return spec, info, output


def compare_with_record(info: ModelInfo, rerun: Rerun, allow_different_model: bool) -> None:
    """A rerun must use the model the record was made with; library versions that differ are a warning."""
    from videogen.resolve import versions

    now = info.source
    if rerun.fingerprint is not None and now.fingerprint != rerun.fingerprint:
        what = [f"fingerprint {now.fingerprint} now, {rerun.fingerprint} in the record"]
        if rerun.revision and now.revision != rerun.revision:
            what.append(f"revision {now.revision} now, {rerun.revision} in the record")
        message = f"the model at {now.path} is not the one {rerun.where} was made with: {'; '.join(what)}"
        if not allow_different_model:
            raise UserError(f"{message} (pass --allow-different-model to render with it anyway)")
        log.warning(message)
    current = versions()
    changed = [f"{name} {current[name]} (record: {was})" for name, was in sorted(rerun.versions.items())
               if name in current and current[name] != was]
    if changed:
        log.warning("library versions differ from the run record's, so frames may differ: " + ", ".join(changed))


def render_and_write(engine: Engine, spec: RenderSpec, output: Path, overwrite: bool,
                     progress: Progress | None = None, on_step: StepCallback | None = None) -> Result:
    """`on_step(i, total, latents, x0)`: sees each step's x0 estimate (videogen.preview, videogen.trace)."""
    from videogen.video import write_video

    result = engine.render(spec, progress, on_step)
    if progress:
        progress("write", 0, 1)
    record = dict(result.record)
    write_video(result.frames, output, result.spec.fps or 16, record, crf=result.spec.crf, overwrite=overwrite,
                audio=result.audio)
    if progress:
        progress("write", 1, 1)
    return Result(output=output, record=record, frames=result.frames, audio=result.audio)


class Session:
    """A loaded model for many renders (see `load`). `generate` takes the same settings as the function, except
    engine settings (model, device, dtype, offload, cache, ...), which are fixed when the model is loaded."""

    def __init__(self, engine: Engine, preset: Any, engine_settings: dict[str, Any]):
        self.engine, self.preset, self.engine_settings = engine, preset, engine_settings

    def generate(self, prompt: str, output: str | Path | None = None, *, overwrite: bool = False,
                 progress: Progress | None = None, **settings: Any) -> Result:
        fixed = [k for k in settings if k in ENGINE_FIELDS]
        if fixed:
            raise UserError(f"{', '.join(fixed)}: engine settings are fixed when the model is loaded; "
                            "pass them to videogen.load()")
        spec = merge(prompt, {**self.engine_settings, **settings}, self.preset)
        if not self.engine.accepts(spec):
            raise UserError(f"this engine was loaded for {self.engine.info.source.ref}; load another for "
                            f"{spec.model}")
        spec, _info, out = prepare(spec, Path(output) if output is not None else None, overwrite)
        return render_and_write(self.engine, spec, out, overwrite, progress)


def load(model: str | None = None, *, preset: str | None = None, progress: Progress | None = None,
         **engine_settings: Any) -> Session:
    """Load a model once (default: the built-in one) for many `Session.generate` calls."""
    from videogen.engine import Engine

    settings = {**engine_settings, **({"model": model} if model is not None else {})}
    not_engine = [k for k in settings if k not in ENGINE_FIELDS]
    if not_engine:
        raise UserError(f"{', '.join(not_engine)}: not engine settings; give them to generate()")
    spec = merge("", settings, preset)
    engine = Engine.load(spec, progress)  # refuses a bad model or engine setting before reading weights
    fixed = {k: getattr(spec, k) for k in ENGINE_FIELDS}
    return Session(engine, preset, fixed)


def generate(prompt: str, output: str | Path | None = None, *, overwrite: bool = False, preset: str | None = None,
             progress: Progress | None = None, **settings: Any) -> Result:
    """Render one video as `videogen generate` does: same defaults, checks, output file and run record.

    `output` defaults to outputs/<prompt>-s<seed>.mp4 under the current folder, never replacing a file."""
    from videogen.engine import Engine

    spec = merge(prompt, settings, preset)
    spec, _info, out = prepare(spec, Path(output) if output is not None else None, overwrite)
    engine = Engine.load(spec, progress)
    return render_and_write(engine, spec, out, overwrite, progress)
