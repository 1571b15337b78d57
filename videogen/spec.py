"""RenderSpec: one typed, frozen object holding everything that determines a render's output."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from typing import Any, Literal, get_args

from videogen.errors import UserError

Offload = Literal["none", "model", "sequential", "group"]
Cache = Literal["none", "fbc", "mag", "taylorseer", "pab"]
Quantize = Literal["none", "fp8"]
Dtype = Literal["auto", "float32", "bfloat16", "float16"]

BUILTIN_MODEL = "builtin:mini"


@dataclass(frozen=True)
class RenderSpec:
    """A render request. `None` means "the model's default", filled in by `Engine.resolve`."""

    prompt: str
    model: str = BUILTIN_MODEL
    negative_prompt: str | None = None
    frames: int | None = None
    height: int | None = None
    width: int | None = None
    steps: int | None = None
    guidance: float | None = None
    guidance_2: float | None = None
    dynamic_guidance: bool | None = None  # CogVideoX's cosine-ramped guidance (diffusers' use_dynamic_cfg)
    # True classifier-free guidance of guidance-distilled models (HunyuanVideo), whose `guidance` is embedded.
    true_guidance: float | None = None
    seed: int | None = None
    fps: int | None = None
    scheduler: str | None = None
    flow_shift: float | None = None
    max_sequence_length: int | None = None
    image: str | None = None
    last_image: str | None = None
    # Input clips (videogen/clips.py): a control or source video, a mask video (white = generate), still images.
    video: str | None = None
    mask: str | None = None
    reference_images: tuple[str, ...] = ()
    conditioning_scale: float | None = None  # VACE: weight of the control hints in every VACE layer
    strength: float | None = None  # video-to-video: how much of the schedule re-noises the source (0.8)
    fit: bool = False  # resample input clips to the render's frames and size instead of refusing them
    # Engine options: they change speed and memory, and (for dtype, device, cache, quantize) the output.
    device: str = "auto"
    dtype: Dtype = "auto"
    offload: Offload = "none"
    vae_tiling: bool = False
    compile: bool = False
    attention: str | None = None
    cache: Cache = "none"
    cache_threshold: float | None = None
    cache_drift: bool = False  # also render without the cache and record the PSNR between the two
    quantize: Quantize = "none"
    batch_cfg: bool = False
    # Output options: they do not change the frames.
    crf: int = 18
    extras: dict[str, Any] = field(default_factory=dict, compare=False)

    def replace(self, **changes: Any) -> RenderSpec:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out.pop("extras")
        return out


def spec_field_types() -> dict[str, Any]:
    """Field name -> the plain type (int, float, str, bool, or a tuple of allowed strings)."""
    import typing

    hints = typing.get_type_hints(RenderSpec)
    out: dict[str, Any] = {}
    for f in fields(RenderSpec):
        if f.name == "extras":
            continue
        hint = hints[f.name]
        if typing.get_origin(hint) is tuple:  # a repeatable flag: a list of strings
            out[f.name] = list
            continue
        if typing.get_origin(hint) is Literal:
            out[f.name] = tuple(get_args(hint))
            continue
        args = [a for a in get_args(hint) if a is not type(None)] or [hint]
        base = args[0]
        if typing.get_origin(base) is Literal:
            out[f.name] = tuple(get_args(base))
        else:
            out[f.name] = base
    return out


# Ranges that any model must respect; model-specific multiples are checked by the family.
RANGES: dict[str, tuple[float, float]] = {
    "frames": (1, 10_000),
    "height": (8, 8192),
    "width": (8, 8192),
    "steps": (1, 1000),
    "guidance": (0.0, 100.0),
    "guidance_2": (0.0, 100.0),
    "true_guidance": (0.0, 100.0),
    "seed": (0, 2**63 - 1),
    "fps": (1, 240),
    "flow_shift": (0.0, 100.0),
    "max_sequence_length": (1, 4096),
    "crf": (0, 51),
    "cache_threshold": (0.0, 10.0),
    "conditioning_scale": (0.0, 10.0),
    "strength": (0.0, 1.0),
}


def check_value(name: str, value: Any, where: str) -> Any:
    """Type- and range-check one field value; return it coerced (int -> float where a float is wanted)."""
    types = spec_field_types()
    if name not in types:
        raise UserError(f"{where}: unknown field '{name}'")
    want = types[name]
    if value is None:
        return None
    if isinstance(want, tuple):
        if value not in want:
            raise UserError(f"{where}: '{name}' must be one of {', '.join(map(str, want))}, not {value!r}")
        return value
    if want is list:
        if isinstance(value, str) or not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise UserError(f"{where}: '{name}' must be a list of file names, not {value!r}")
        return tuple(value)
    if want is bool:
        if not isinstance(value, bool):
            raise UserError(f"{where}: '{name}' must be true or false, not {value!r}")
        return value
    if want is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"{where}: '{name}' must be an integer, not {value!r}")
    elif want is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise UserError(f"{where}: '{name}' must be a number, not {value!r}")
        value = float(value)
        if value != value:
            raise UserError(f"{where}: '{name}' must be a number, not NaN")
    elif want is str:
        if not isinstance(value, str):
            raise UserError(f"{where}: '{name}' must be a string, not {value!r}")
        return value
    if name in RANGES:
        lo, hi = RANGES[name]
        if not lo <= value <= hi:
            raise UserError(f"{where}: '{name}' must be between {lo:g} and {hi:g}, not {value!r}")
    return value
