"""Option types shared by every command (declared once), and how flags, presets and records merge."""

from __future__ import annotations

from enum import Enum, StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from videogen.errors import UserError
from videogen.spec import BUILTIN_MODEL, RenderSpec, check_value


class DeviceDtype(StrEnum):
    auto = "auto"
    float32 = "float32"
    bfloat16 = "bfloat16"
    float16 = "float16"


class OffloadMode(StrEnum):
    none = "none"
    model = "model"
    sequential = "sequential"
    group = "group"


class CacheMode(StrEnum):
    none = "none"
    fbc = "fbc"
    mag = "mag"
    taylorseer = "taylorseer"
    pab = "pab"


class QuantizeMode(StrEnum):
    none = "none"
    fp8 = "fp8"


R = "Render"
E = "Engine (speed and memory)"
Model = Annotated[str | None, typer.Option("--model", "-m", help="Preset name, Hugging Face Hub id or local diffusers folder (default: the built-in model).", rich_help_panel=R)]
PresetOpt = Annotated[str | None, typer.Option("--preset", "-p", help="Built-in preset name or path to a YAML preset.", rich_help_panel=R)]
Negative = Annotated[str | None, typer.Option("--negative-prompt", "-n", help="What the video should not show.", rich_help_panel=R)]
Frames = Annotated[int | None, typer.Option("--frames", help="Number of frames (Wan: 4k+1).", rich_help_panel=R)]
Height = Annotated[int | None, typer.Option("--height", help="Height in pixels.", rich_help_panel=R)]
Width = Annotated[int | None, typer.Option("--width", help="Width in pixels.", rich_help_panel=R)]
Steps = Annotated[int | None, typer.Option("--steps", help="Denoising steps.", rich_help_panel=R)]
Guidance = Annotated[float | None, typer.Option("--guidance", help="Classifier-free guidance scale (1 turns it off); for guidance-distilled models (HunyuanVideo) the embedded guidance.", rich_help_panel=R)]
TrueGuidance = Annotated[float | None, typer.Option("--true-guidance", help="True classifier-free guidance of guidance-distilled models (HunyuanVideo): above 1 it guides away from --negative-prompt, at twice the cost per step.", rich_help_panel=R)]
Guidance2 = Annotated[float | None, typer.Option("--guidance-2", help="Guidance of the low-noise expert (two-expert models).", rich_help_panel=R)]
Seed = Annotated[int | None, typer.Option("--seed", help="Seed of the initial noise (random and recorded if not given).", rich_help_panel=R)]
Fps = Annotated[int | None, typer.Option("--fps", help="Frames per second of the output.", rich_help_panel=R)]
Image = Annotated[Path | None, typer.Option("--image", "-i", help="First frame, for image-to-video models.", rich_help_panel=R)]
LastImage = Annotated[Path | None, typer.Option("--last-image", help="Last frame, for first-last-frame models.", rich_help_panel=R)]
# Input clips (videogen/clips.py)
Video = Annotated[Path | None, typer.Option("--video", help="Input clip: the control video (Wan VACE) or the source video (video-to-video); sets frames and size unless given.", rich_help_panel=R)]
Mask = Annotated[Path | None, typer.Option("--mask", help="Mask clip for --video (Wan VACE): white = generate, black = keep.", rich_help_panel=R)]
ReferenceImage = Annotated[list[Path] | None, typer.Option("--reference-image", help="Reference image (Wan VACE); repeat for several.", rich_help_panel=R)]
ConditioningScale = Annotated[float | None, typer.Option("--conditioning-scale", help="Weight of the control hints (Wan VACE; default 1).", rich_help_panel=R)]
Strength = Annotated[float | None, typer.Option("--strength", help="Video-to-video: share of the steps that redraw the source (0..1, default 0.8).", rich_help_panel=R)]
Fit = Annotated[bool | None, typer.Option("--fit/--no-fit", help="Resample input clips to the render's frames and size instead of refusing them.", rich_help_panel=R)]
Scheduler = Annotated[str | None, typer.Option("--scheduler", help="unipc | euler | dpm++ (default: the model's own).", rich_help_panel=R)]
FlowShift = Annotated[float | None, typer.Option("--flow-shift", help="Flow-matching timestep shift.", rich_help_panel=R)]
MaxTokens = Annotated[int | None, typer.Option("--max-sequence-length", help="Text tokens given to the model.", rich_help_panel=R)]
Crf = Annotated[int | None, typer.Option("--crf", help="Video quality for MP4/WebM (0 best .. 51 worst; default 18).", rich_help_panel=R)]
Device = Annotated[str | None, typer.Option("--device", help="auto | cpu | cuda | cuda:N", rich_help_panel=E)]
Dtype = Annotated[DeviceDtype | None, typer.Option("--dtype", help="Weights and compute precision.", rich_help_panel=E)]
Offload = Annotated[OffloadMode | None, typer.Option("--offload", help="Move weights to the GPU only when needed.", rich_help_panel=E)]
VaeTiling = Annotated[bool | None, typer.Option("--vae-tiling/--no-vae-tiling", help="Decode in tiles to save memory.", rich_help_panel=E)]
Compile = Annotated[bool | None, typer.Option("--compile/--no-compile", help="torch.compile the repeated transformer blocks.", rich_help_panel=E)]
Attention = Annotated[str | None, typer.Option("--attention", help="Attention backend (sdpa, flash, sage, ...).", rich_help_panel=E)]
CacheOpt = Annotated[CacheMode | None, typer.Option("--cache", help="Reuse transformer work across steps.", rich_help_panel=E)]
CacheThreshold = Annotated[float | None, typer.Option("--cache-threshold", help="Threshold of the step cache.", rich_help_panel=E)]
CacheDrift = Annotated[bool | None, typer.Option("--cache-drift/--no-cache-drift", help="Also render without the cache and record the drift (PSNR) in the run record.", rich_help_panel=E)]
Quantize = Annotated[QuantizeMode | None, typer.Option("--quantize", help="Store transformer weights in fp8.", rich_help_panel=E)]
BatchCfg = Annotated[bool | None, typer.Option("--batch-cfg/--no-batch-cfg", help="Guidance as one batched forward (faster, more memory).", rich_help_panel=E)]


def flag_values(**flags: Any) -> dict[str, Any]:
    """The flags actually given, as RenderSpec fields (enums to their values, paths to strings)."""
    out = {}
    for name, value in flags.items():
        if value is None:
            continue
        if isinstance(value, Enum):
            value = value.value
        elif isinstance(value, Path):
            value = str(value)
        elif isinstance(value, list | tuple):  # a repeatable flag
            if not value:
                continue
            value = [str(v) for v in value]
        out[name] = check_value(name, value, f"--{name.replace('_', '-')}")
    return out


def merge(prompt: str | None, flags: dict[str, Any], preset: str | None,
          record: dict[str, Any] | None = None, where: str = "") -> RenderSpec:
    """built-in defaults < run record (--from) < preset < flags. The model: a preset name or a model ref."""
    from videogen import presets

    values: dict[str, Any] = {}
    if record is not None:
        spec = record["spec"]
        for key, value in spec.items():
            if key == "prompt":
                continue
            values[key] = check_value(key, value, where or "run record")
    model_flag = flags.pop("model", None)
    preset_ref = preset
    if (model_flag is not None and preset_ref is None and not presets.looks_like_path(model_flag)
            and not Path(model_flag).expanduser().exists() and presets.find_preset(model_flag) is not None):
        preset_ref, model_flag = model_flag, None  # `-m wan2.1-t2v-1.3b` names a preset
    if preset_ref is None and (model_flag == BUILTIN_MODEL or (model_flag is None and "model" not in values)):
        preset_ref = "mini"  # the built-in model (by default or by name), with its own render defaults
    if preset_ref is not None:
        values.update(presets.load_preset(preset_ref).values)
    values.update(flags)
    if model_flag is not None:
        values["model"] = model_flag
    values.setdefault("model", BUILTIN_MODEL)
    if prompt is None:
        prompt = record.get("prompt") if record else None
    if prompt is None:
        raise UserError("missing PROMPT (or --from RUN.json)")
    return RenderSpec(prompt=prompt, **values)
