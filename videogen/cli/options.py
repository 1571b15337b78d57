"""Option types shared by every command, built from the field declarations in videogen.spec.

How flags, presets and records merge is videogen.settings.merge (re-exported here for the commands)."""

from __future__ import annotations

from enum import Enum, StrEnum
from pathlib import Path
from typing import Annotated, Any

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


def option(name: str) -> Any:
    """The command-line option of one RenderSpec field, built from its declaration in videogen.spec."""
    decl, plain = declarations()[name], _TYPES[name]
    flag = "--" + name.replace("_", "-")
    kind: Any = _ENUMS.get(name) or (Path if name in _PATHS else plain)
    names = [f"{flag}/--no-{flag[2:]}" if plain is bool else flag, *([_SHORT[name]] if name in _SHORT else [])]
    panel = E if (decl["kind"] == "engine" and name not in ("model", "revision", "variant")) or name in ("cache_drift", "batch_cfg") else R
    return Annotated[kind | None, typer.Option(*names, help=decl["help"], rich_help_panel=panel)]


Model, Revision, Variant = option("model"), option("revision"), option("variant")
PresetOpt = Annotated[str | None, typer.Option("--preset", "-p", help="Built-in preset name or path to a YAML preset.", rich_help_panel=R)]
Negative, Frames, Height, Width = option("negative_prompt"), option("frames"), option("height"), option("width")
Steps, Guidance, TrueGuidance, Guidance2 = option("steps"), option("guidance"), option("true_guidance"), option("guidance_2")
Seed, Fps, Image, LastImage = option("seed"), option("fps"), option("image"), option("last_image")
Scheduler, FlowShift, MaxTokens, Crf = option("scheduler"), option("flow_shift"), option("max_sequence_length"), option("crf")
Device, Dtype, Offload, VaeTiling = option("device"), option("dtype"), option("offload"), option("vae_tiling")
Compile, Attention, CacheOpt, CacheThreshold = option("compile"), option("attention"), option("cache"), option("cache_threshold")
CacheDrift, Quantize, BatchCfg = option("cache_drift"), option("quantize"), option("batch_cfg")
# --- LTX-2: its guidance terms and its sound track ---
AudioGuidance, Stg = option("audio_guidance"), option("stg")
ModalityGuidance, GuidanceRescale = option("modality_guidance"), option("guidance_rescale")
NoAudio = Annotated[bool | None, typer.Option("--no-audio", help=declarations()["no_audio"]["help"], rich_help_panel=R)]
AudioWav = Annotated[Path | None, typer.Option("--audio", help="Also write the sound track as it came from the vocoder: a float32 WAV at its sample rate and channels (models with sound: LTX-2).", rich_help_panel=R)]
# --- LoRA and exact schedules: list fields, so their options are built here by hand ---
L = "LoRA and schedule"
Lora = Annotated[list[str] | None, typer.Option("--lora", metavar="PATH:WEIGHT@EXPERT", help=declarations()["loras"]["help"], rich_help_panel=L)]
Sigmas = Annotated[str | None, typer.Option("--sigmas", metavar="LIST", help=declarations()["sigmas"]["help"], rich_help_panel=L)]
# --- input clips (videogen/clips.py); --reference-image is a list field, so built here by hand ---
Video, Mask = option("video"), option("mask")
ConditioningScale, Strength, Fit = option("conditioning_scale"), option("strength"), option("fit")
ReferenceImage = Annotated[list[Path] | None, typer.Option("--reference-image", help=declarations()["reference_images"]["help"], rich_help_panel=R)]


def parse_sigmas(text: str) -> list[float]:
    try:
        return [float(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise UserError(f"--sigmas: '{text}' is not a comma-separated list of numbers") from None


def flag_values(**flags: Any) -> dict[str, Any]:
    """The flags actually given, as RenderSpec fields (enums to their values, paths to strings)."""
    from videogen.settings import flag_label

    out = {}
    for name, value in flags.items():
        if value is None:
            continue
        if name == "sigmas":
            value = parse_sigmas(value)
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
