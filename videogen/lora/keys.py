"""Read a LoRA file and normalise its keys, whatever tool wrote it, into one form.

The internal form is {module name in the diffusers model: LoraTensors(down, up, alpha, diff, diff_b)}. Known
writers: diffusers/PEFT (`transformer.X.lora_A.weight`, `lora_B.bias`), ComfyUI, Kijai and lightx2v
(`diffusion_model.X.lora_down.weight`, `.alpha`, `.diff`, `.diff_b`, `head.head.diff`), musubi/kohya
(`lora_unet_X` with underscores). diffusers' own converters are used where they work; where they raise (LoRAs that
cover only some modules, or carry no alpha) the same conversion is done here, by name lookup against the model.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from videogen.errors import UserError
from videogen.lora import wan_names

log = logging.getLogger("videogen")

# Key endings -> the part of a LoRA they hold; the first match wins (".diff_b" before ".diff").
KINDS = ((".lora_A.weight", "down"), (".lora_down.weight", "down"), (".lora_B.weight", "up"),
         (".lora_up.weight", "up"), (".lora_B.bias", "diff_b"), (".alpha", "alpha"), (".diff_b", "diff_b"),
         (".diff", "diff"))
PREFIXES = ("base_model.model.", "model.diffusion_model.", "diffusion_model.", "transformer.", "lora_unet_",
            "lora_transformer_")
PEFT_ADAPTER = re.compile(r"\.lora_([AB])\.[^.]+\.weight$")  # PEFT's `lora_A.<adapter name>.weight`
# Per family: its original checkpoint's module names, and diffusers' converters by key prefix.
ORIGINAL_NAMES: dict[str, Callable[[str], str | None]] = {"wan": wan_names.original_name}
DIFFUSERS_CONVERTERS: dict[str, tuple[tuple[str, str], ...]] = {
    "wan": (("diffusion_model.", "_convert_non_diffusers_wan_lora_to_diffusers"),
            ("lora_unet_", "_convert_musubi_wan_lora_to_diffusers")),
}
WEIGHT_FILE = re.compile(r"^diffusion_pytorch_model(-\d{5}-of-\d{5})?\.safetensors$")


@dataclass
class LoraTensors:
    down: Any = None
    up: Any = None
    alpha: float | None = None
    diff: Any = None
    diff_b: Any = None


@dataclass(frozen=True)
class Normalised:
    modules: dict[str, LoraTensors]
    unmatched: tuple[str, ...]  # module names of the file that the model does not have
    keys: int
    converter: str  # "diffusers" or "videogen" (and why)


def read_lora(path: Path) -> dict[str, Any]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise UserError(f"LoRA {path}: not a readable safetensors file ({str(e).splitlines()[0]})") from None


def checkpoint_tensors(folder: Path) -> dict[str, tuple[tuple[int, ...], Path]]:
    """Tensor name -> (shape, file) of a component's weights, from the safetensors headers only."""
    out: dict[str, tuple[tuple[int, ...], Path]] = {}
    for f in sorted(folder.glob("*.safetensors")):
        if not WEIGHT_FILE.match(f.name):
            continue
        with f.open("rb") as fh:
            header = json.loads(fh.read(int.from_bytes(fh.read(8), "little")))
        for name, meta in header.items():
            if name != "__metadata__":
                out[name] = (tuple(meta["shape"]), f)
    return out


def split_key(key: str) -> tuple[str, str] | None:
    """`prefix.module.kind` -> (module as written in the file, kind), or None for a key that is no LoRA part."""
    key = PEFT_ADAPTER.sub(lambda m: f".lora_{m.group(1)}.weight", key)
    for prefix in PREFIXES:
        if key.startswith(prefix):
            key = key[len(prefix):]
            break
    for ending, kind in KINDS:
        if key.endswith(ending):
            return key[: -len(ending)], kind
    return None


def name_lookup(modules: set[str], family: str) -> dict[str, str]:
    """Every spelling of each model module (diffusers, original, and both with underscores) -> diffusers name."""
    original = ORIGINAL_NAMES.get(family, lambda _m: None)
    out: dict[str, str] = {}
    for m in modules:
        for spelling in (m, original(m)):
            if spelling:
                out[spelling] = m
                out[spelling.replace(".", "_")] = m
    return out


def own_conversion(raw: dict[str, Any], lookup: dict[str, str]) -> tuple[dict[str, LoraTensors], list[str]]:
    modules: dict[str, LoraTensors] = {}
    unmatched: set[str] = set()
    for key, tensor in raw.items():
        parts = split_key(key)
        if parts is None:
            unmatched.add(key)
            continue
        written, kind = parts
        target = lookup.get(written)
        if target is None:
            unmatched.add(written)
            continue
        entry = modules.setdefault(target, LoraTensors())
        setattr(entry, kind, float(tensor.item()) if kind == "alpha" else tensor)
    return modules, sorted(unmatched)


def normalise(raw: dict[str, Any], family: str, module_names: set[str]) -> Normalised:
    lookup = name_lookup(module_names, family)
    converter = "videogen"
    source = raw
    for prefix, fn_name in DIFFUSERS_CONVERTERS.get(family, ()):
        if not all(k.startswith(prefix) for k in raw):
            continue
        from diffusers.loaders import lora_conversion_utils

        try:  # on copies: the converter scales some tensors in place, and may raise halfway
            source = getattr(lora_conversion_utils, fn_name)({k: v.clone() for k, v in raw.items()})
            converter = "diffusers"
            # diffusers drops the norms' full-weight diffs (zero in the published files); ComfyUI applies them.
            source.update({k: v for k, v in raw.items() if k.endswith(".diff") and "norm" in k})
        except Exception as e:  # diffusers' converters pop every expected key: partial LoRAs raise KeyError
            converter = f"videogen (diffusers' {fn_name} raised {type(e).__name__})"
            log.debug("LoRA conversion by diffusers failed: %s: %s", type(e).__name__, e)
        break
    modules, unmatched = own_conversion(source, lookup)
    for name, t in modules.items():
        if (t.down is None) != (t.up is None):
            raise UserError(f"module {name} has only one of the two LoRA matrices (down/lora_A and up/lora_B)")
        if t.down is not None and t.up.shape[1] != t.down.shape[0]:
            raise UserError(f"module {name}: LoRA ranks disagree (down {tuple(t.down.shape)}, "
                            f"up {tuple(t.up.shape)})")
    return Normalised(modules, tuple(unmatched), len(raw), converter)


def check_shapes(norm: Normalised, shapes: dict[str, tuple[int, ...]]) -> None:
    """Each delta must fit its weight: a LoRA for another model size is refused by module name."""
    for name, t in norm.modules.items():
        weight, bias = shapes.get(f"{name}.weight"), shapes.get(f"{name}.bias")
        problems = []
        if t.down is not None and weight is not None:
            fan_in = 1
            for d in weight[1:]:
                fan_in *= d
            if t.up.shape[0] != weight[0] or t.down[0].numel() != fan_in:
                problems.append(f"LoRA {tuple(t.up.shape[:1])}x{tuple(t.down.shape[1:])} vs weight {weight}")
        if t.diff is not None and tuple(t.diff.shape) != weight:
            problems.append(f"diff {tuple(t.diff.shape)} vs weight {weight}")
        if t.diff_b is not None and tuple(t.diff_b.shape) != bias:
            problems.append(f"bias diff {tuple(t.diff_b.shape)} vs bias {bias}")
        if (t.down is not None or t.diff is not None) and weight is None:
            problems.append("the module has no weight")
        if problems:
            raise UserError(f"module {name} does not fit this model ({'; '.join(problems)}): "
                            "a LoRA for another model or size?")
