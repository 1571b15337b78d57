"""Option types shared by every command, built from the field declarations in videogen.spec.

How flags, presets and records merge is videogen.settings.merge (re-exported here for the commands)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from enum import Enum, StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from videogen.errors import UserError
from videogen.settings import merge  # noqa: F401  (the commands' merge)
from videogen.spec import check_value, declarations, spec_field_types


def _choices(name: str, values: tuple[str, ...]) -> type[StrEnum]:
    return StrEnum(name, {v: v for v in values})  # type: ignore[return-value]


_TYPES = spec_field_types()
DeviceDtype, OffloadMode = _choices("DeviceDtype", _TYPES["dtype"]), _choices("OffloadMode", _TYPES["offload"])
CacheMode, QuantizeMode = _choices("CacheMode", _TYPES["cache"]), _choices("QuantizeMode", _TYPES["quantize"])
_ENUMS = {"dtype": DeviceDtype, "offload": OffloadMode, "cache": CacheMode, "quantize": QuantizeMode}
_PATHS = {"image", "last_image", "video", "mask"}  # options Typer checks as paths
_SHORT = {"model": "-m", "negative_prompt": "-n", "image": "-i", "flow_shift": "--shift"}  # and aliases
R = "Render"
E = "Engine (speed and memory)"
F = TypeVar("F", bound=Callable[..., Any])


# List fields: a repeatable option (one value each) or one comma-separated value: (flag, metavar, type).
_LISTS: dict[str, tuple[str, str | None, Any]] = {"loras": ("--lora", "PATH:WEIGHT@EXPERT", list[str]),
                                                  "reference_images": ("--reference-image", None, list[Path]),
                                                  "sigmas": ("--sigmas", "LIST", str),
                                                  "stg_blocks": ("--stg-blocks", "LIST", str)}
# Help panels where the field's kind does not say: the model is chosen with the render; these two only
# change speed and memory.
_PANELS = {"loras": "LoRA and schedule", "sigmas": "LoRA and schedule", "cache_drift": E, "batch_cfg": E,
           "model": R, "revision": R, "variant": R}


def option(name: str) -> Any:
    """The command-line option of one RenderSpec field, built from its declaration in videogen.spec."""
    decl, plain = declarations()[name], _TYPES[name]
    panel = _PANELS.get(name) or (E if decl["kind"] == "engine" else R)
    if name in _LISTS:
        flag, metavar, kind = _LISTS[name]
        return Annotated[kind | None, typer.Option(flag, metavar=metavar, help=decl["help"], rich_help_panel=panel)]
    flag = "--" + name.replace("_", "-")
    kind = _ENUMS.get(name) or (Path if name in _PATHS else plain)
    # a switch whose name already says "no" (--no-audio) has no opposite flag
    names = [f"{flag}/--no-{flag[2:]}" if plain is bool and not name.startswith("no_") else flag, *([_SHORT[name]] if name in _SHORT else [])]
    return Annotated[kind | None, typer.Option(*names, help=decl["help"], rich_help_panel=panel)]


# One option per RenderSpec field that has a flag, in declaration order: what `generate`, `batch` and `plan` take.
RENDER_OPTIONS: dict[str, Any] = {name: option(name) for name, d in declarations().items() if d["flag"]}
PresetOpt = Annotated[str | None, typer.Option("--preset", "-p", help="Built-in preset name or path to a YAML preset.", rich_help_panel=R)]


def with_render_options(*names: str) -> Callable[[F], F]:
    """Give a command one option per render field (those named, or every field with a flag), built from the
    declarations. The function takes them as `**render` (None where not given), after its own parameters."""

    def decorate(fn: F) -> F:
        own = [p for p in inspect.signature(fn, eval_str=True).parameters.values() if p.kind is not p.VAR_KEYWORD]
        fields = [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, annotation=RENDER_OPTIONS[n], default=None)
                  for n in names or RENDER_OPTIONS]
        fn.__signature__ = inspect.Signature([*own, *fields])  # type: ignore[attr-defined]  # what Typer reads
        return fn

    return decorate


AudioWav = Annotated[Path | None, typer.Option("--audio", help="Also write the sound track as it came from the vocoder: a float32 WAV at its sample rate and channels (models with sound: LTX-2).", rich_help_panel=R)]


def parse_list(text: str, flag: str, kind: type[int] | type[float]) -> list[Any]:
    """A comma-separated option value (--sigmas 1,0.75,0.5; --stg-blocks 20,28) as numbers of `kind`."""
    try:
        return [kind(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        what = "whole numbers" if kind is int else "numbers"
        raise UserError(f"{flag}: '{text}' is not a comma-separated list of {what}") from None


def flag_values(**flags: Any) -> dict[str, Any]:
    """The flags actually given, as RenderSpec fields (enums to their values, paths to strings)."""
    from videogen.settings import flag_label

    out = {}
    for name, value in flags.items():
        if value is None:
            continue
        if name in ("sigmas", "stg_blocks"):
            value = parse_list(value, _LISTS[name][0], float if name == "sigmas" else int)
        elif name == "loras":
            value = tuple(value)
        elif name == "reference_images":
            if not value:  # not given: leave a preset's or record's images in place
                continue
            value = tuple(str(v) for v in value)
        if isinstance(value, Enum):
            value = value.value
        elif isinstance(value, Path):
            value = str(value)
        out[name] = check_value(name, value, flag_label(name))
    return out
