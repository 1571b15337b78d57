"""RenderSpec: one typed, frozen object holding everything that determines a render's output.

Each field is declared once, here: its type (the annotation), its range, its help text and whether it is an
engine field (one that changes how the model is loaded, so renders differing in it need another Engine). The CLI
options, presets, batch items, range checks and the engine's cache key are all derived from these declarations."""

from __future__ import annotations

import dataclasses
import functools
import typing
from dataclasses import dataclass, field, fields
from typing import Any, Literal, get_args

from videogen.errors import UserError

Offload = Literal["auto", "none", "model", "sequential", "group"]
Cache = Literal["none", "fbc", "mag", "taylorseer", "pab"]
Quantize = Literal["none", "fp8"]
Dtype = Literal["auto", "float32", "bfloat16", "float16"]

BUILTIN_MODEL = "builtin:mini"
INPUT_FILES = ("image", "last_image", "video", "mask")  # render fields naming one input file each
RENDER, ENGINE, OUTPUT = "render", "engine", "output"


def _f(default: Any = None, help: str = "", range: tuple[float, float] | None = None, kind: str = RENDER,
       flag: bool = True) -> Any:
    """One field's declaration. kind: render (changes the frames), engine (changes how the model is loaded),
    output (changes only the file). flag: whether `generate` and `batch` have a command-line option for it."""
    return field(default=default, metadata={"help": help, "range": range, "kind": kind, "flag": flag})


@dataclass(frozen=True)
class RenderSpec:
    """A render request. `None` means "the model's default", filled in by `Engine.resolve`."""

    prompt: str
    model: str = _f(BUILTIN_MODEL, "Preset name, Hugging Face Hub id or local diffusers folder (default: the "
                    "built-in model).", kind=ENGINE)
    revision: str | None = _f(None, "Branch, tag or commit of a Hub model (recorded as the commit).", kind=ENGINE)
    variant: str | None = _f(None, "Weights variant: fp16 | bf16 (default: the model's own weights).", kind=ENGINE)
    negative_prompt: str | None = _f(help="What the video should not show.")
    frames: int | None = _f(help="Number of frames (Wan: 4k+1).", range=(1, 10_000))
    height: int | None = _f(help="Height in pixels.", range=(8, 8192))
    width: int | None = _f(help="Width in pixels.", range=(8, 8192))
    steps: int | None = _f(help="Denoising steps.", range=(1, 1000))
    guidance: float | None = _f(help="Classifier-free guidance scale (1 turns it off); for guidance-distilled "
                                "models (HunyuanVideo) the embedded guidance.", range=(0.0, 100.0))
    guidance_2: float | None = _f(help="Guidance of the low-noise expert (two-expert models).", range=(0.0, 100.0))
    dynamic_guidance: bool | None = _f(help="CogVideoX's cosine-ramped guidance (diffusers' use_dynamic_cfg).",
                                       flag=False)
    true_guidance: float | None = _f(help="True classifier-free guidance of guidance-distilled models "
                                     "(HunyuanVideo): above 1 it guides away from --negative-prompt, at twice the "
                                     "cost per step.", range=(0.0, 100.0))
    # LTX-2's guidance terms (the sound's spatio-temporal, modality and rescale terms follow the video's).
    audio_guidance: float | None = _f(help="Classifier-free guidance of the sound track (LTX-2; default 7).",
                                      range=(0.0, 100.0))
    stg: float | None = _f(help="Spatio-temporal guidance: away from the model with its STG block's self-attention "
                           "skipped (LTX-2; default 1, 0 turns it off).", range=(0.0, 100.0))
    modality_guidance: float | None = _f(help="Modality guidance: away from the model with video and sound "
                                         "isolated (LTX-2; default 3, 1 turns it off).", range=(0.0, 100.0))
    stg_blocks: tuple[int, ...] | None = _f(help="Transformer blocks whose self-attention spatio-temporal guidance "
                                            "skips, comma-separated (LTX-2; default 28).")
    guidance_rescale: float | None = _f(help="Share of the guided estimate rescaled to the conditional one's spread "
                                        "(LTX-2; default 0.7).", range=(0.0, 1.0))
    seed: int | None = _f(help="Seed of the initial noise (random and recorded if not given).", range=(0, 2**63 - 1))
    fps: int | None = _f(help="Frames per second of the output.", range=(1, 240))
    scheduler: str | None = _f(help="unipc | euler | dpm++ (default: the model's own).")
    flow_shift: float | None = _f(help="Flow-matching timestep shift.", range=(0.0, 100.0))
    max_sequence_length: int | None = _f(help="Text tokens given to the model.", range=(1, 4096))
    image: str | None = _f(help="First frame, for image-to-video models.")
    last_image: str | None = _f(help="Last frame, for first-last-frame models.")
    image_crf: int | None = _f(help="H.264 quality the --image still is re-compressed at before it conditions the "
                               "model, as its training stills were (LTX-2: default 33, 18 for LTX-2.5; 0 skips "
                               "it).", range=(0, 51))
    # Input clips and stills (videogen/clips.py), for the families that declare them (Family.inputs).
    video: str | None = _f(help="Input clip: the control video (Wan VACE) or the source video (video-to-video); "
                           "sets frames and size unless given.")
    mask: str | None = _f(help="Mask clip for --video (Wan VACE): white = generate, black = keep.")
    reference_images: tuple[str, ...] = _f((), help="Reference image (Wan VACE); repeat for several.")
    conditioning_scale: float | None = _f(help="Weight of the control hints in every VACE layer (Wan VACE; "
                                          "default 1).", range=(0.0, 10.0))
    strength: float | None = _f(help="Video-to-video: share of the steps that redraw the source (0..1, default "
                                "0.8).", range=(0.0, 1.0))
    fit: bool = _f(False, "Resample input clips to the render's frames and size instead of refusing them.")
    # LoRA and exact schedules (videogen/lora/). Their options are built by hand in videogen/cli/options.py.
    # Handed to the scheduler's set_timesteps(sigmas=...).
    sigmas: tuple[float, ...] | None = _f(help="Exact schedule: comma-separated sigmas before the --shift, e.g. "
                                          "1,0.75,0.5,0.25 (sets --steps).")
    # Not an engine field: an engine switches LoRAs between renders without reloading the base weights.
    loras: tuple[str, ...] = _f((), "LoRA .safetensors file or Hugging Face Hub repo (ORG/NAME, or ORG/NAME/FILE "
                                "for a repo of several; ORG/NAME@REV for a branch, tag or commit), repeatable: PATH, PATH:WEIGHT (default 1) or "
                                "PATH:WEIGHT@EXPERT, EXPERT high, low or both (default; Wan 2.2 A14B's two experts).")
    # Engine options: they change speed and memory, and (for dtype, device, cache, quantize) the output.
    device: str = _f("auto", "auto | cpu | cuda | cuda:N", kind=ENGINE)
    dtype: Dtype = _f("auto", "Weights and compute precision.", kind=ENGINE)
    offload: Offload = _f("auto", "Move weights to the GPU only when needed. auto: the fastest mode whose predicted "
                          "memory fits the GPU's free memory (`videogen plan`), with --vae-tiling when the decode "
                          "would not fit; none on a CPU.", kind=ENGINE)
    vae_tiling: bool = _f(False, "Decode in tiles to save memory.", kind=ENGINE)
    compile: bool = _f(False, "torch.compile the repeated transformer blocks.", kind=ENGINE)
    attention: str | None = _f(None, "Attention backend (sdpa, flash, sage, ...).", kind=ENGINE)
    cache: Cache = _f("none", "Reuse transformer work across steps.", kind=ENGINE)
    cache_threshold: float | None = _f(None, "Threshold of the step cache.", range=(0.0, 10.0), kind=ENGINE)
    cache_drift: bool = _f(False, "Also render without the cache and record the drift (PSNR) in the run record.")
    quantize: Quantize = _f("none", "Store transformer weights in fp8.", kind=ENGINE)
    # None: the model's default (the built-in model batches, being small; others do not).
    batch_cfg: bool | None = _f(None, "Guidance as one batched forward (faster, more memory).")
    # Output options: they do not change the frames.
    no_audio: bool = _f(False, "Write the video without its sound track (models with sound: LTX-2).", kind=OUTPUT)
    crf: int = _f(18, "Video quality for MP4/WebM (0 best .. 51 worst; default 18).", range=(0, 51), kind=OUTPUT)
    # Not part of the render: where each value came from (see `where`), for error messages.
    extras: dict[str, Any] = field(default_factory=dict, compare=False)

    def replace(self, **changes: Any) -> RenderSpec:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out.pop("extras")
        return out


def declarations() -> dict[str, dict[str, Any]]:
    """Field name -> its declaration: help, range, kind, flag (every field but `prompt` and `extras`)."""
    return {f.name: dict(f.metadata) for f in fields(RenderSpec) if f.metadata}


ENGINE_FIELDS: tuple[str, ...] = tuple(n for n, d in declarations().items() if d["kind"] == ENGINE)
RANGES: dict[str, tuple[float, float]] = {n: d["range"] for n, d in declarations().items() if d["range"]}


def where(spec: RenderSpec, name: str) -> str:
    """How to name a field's value in a message: `--frames 81` if the user typed it, else where it came from,
    e.g. `frames 81 (the model's default)` or `frames 81 (preset p.yaml, key 'frames')`."""
    label = spec.extras.get("where", {}).get(name, f"--{name.replace('_', '-')}")
    value = getattr(spec, name)
    return f"{label} {value}" if label.startswith("--") else f"{name} {value} ({label})"


@functools.cache
def spec_field_types() -> dict[str, Any]:
    """Field name -> the plain type (int, float, str, bool, a tuple of allowed strings, or tuple[T, ...] for a
    list field). Computed once: type hints are slow to evaluate and a batch checks every item's fields."""

    hints = typing.get_type_hints(RenderSpec)
    out: dict[str, Any] = {}
    for f in fields(RenderSpec):
        if f.name == "extras":
            continue
        hint = hints[f.name]
        if typing.get_origin(hint) is Literal:
            out[f.name] = tuple(get_args(hint))
            continue
        args = [a for a in get_args(hint) if a is not type(None)] or [hint]
        base = hint if typing.get_origin(hint) is tuple else args[0]
        if typing.get_origin(base) is tuple:
            out[f.name] = base  # a list field: tuple[item type, ...]
        elif typing.get_origin(base) is Literal:
            out[f.name] = tuple(get_args(base))
        else:
            out[f.name] = base
    return out


def _check_list(name: str, value: Any, item: type, where: str) -> tuple[Any, ...]:
    """A list field (YAML/JSON list, or a tuple from a flag) -> a tuple of checked items."""
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise UserError(f"{where}: '{name}' must be a list, not {value!r}")
    out = []
    for v in value:
        if item is float and (isinstance(v, bool) or not isinstance(v, int | float) or v != v):
            raise UserError(f"{where}: '{name}' must be a list of numbers, not {value!r}")
        if item is str and not isinstance(v, str):
            raise UserError(f"{where}: '{name}' must be a list of strings, not {value!r}")
        if item is int and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
            raise UserError(f"{where}: '{name}' must be a list of block numbers (0, 1, ...), not {value!r}")
        out.append(float(v) if item is float else v)
    if name == "loras":
        from videogen.lora.refs import parse_ref

        return tuple(parse_ref(v, where, resolve=False).canonical() for v in out)
    decreasing = all(a > b for a, b in zip(out, out[1:], strict=False))
    if name == "sigmas" and not (out and decreasing and all(0.0 <= v <= 1.0 for v in out)):
        raise UserError(f"{where}: 'sigmas' must be a non-empty, strictly decreasing list of values in [0, 1], "
                        f"not {list(value)!r}")
    if name == "stg_blocks" and not out:
        raise UserError(f"{where}: 'stg_blocks' must name at least one block (--stg 0 turns the guidance off)")
    return tuple(out)


def check_value(name: str, value: Any, where: str) -> Any:
    """Type- and range-check one field value; return it coerced (int -> float where a float is wanted)."""
    types = spec_field_types()
    if name not in types:
        raise UserError(f"{where}: unknown field '{name}'")
    want = types[name]
    if value is None:
        return None
    if typing.get_origin(want) is tuple:
        return _check_list(name, value, get_args(want)[0], where)
    if isinstance(want, tuple):
        if value not in want:
            raise UserError(f"{where}: '{name}' must be one of {', '.join(map(str, want))}, not {value!r}")
        return value
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
            lo_text, hi_text = (f"{x:g}" if isinstance(x, float) else str(x) for x in (lo, hi))
            raise UserError(f"{where}: '{name}' must be between {lo_text} and {hi_text}, not {value!r}")
    return value
