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
from videogen.lora import hunyuan_names, ltx_names, wan_names

log = logging.getLogger("videogen")

# Key endings -> the part of a LoRA they hold; the first match wins (".diff_b" before ".diff").
KINDS = ((".lora_A.weight", "down"), (".lora_down.weight", "down"), (".lora_B.weight", "up"),
         (".lora_up.weight", "up"), (".lora_B.bias", "diff_b"), (".alpha", "alpha"), (".diff_b", "diff_b"),
         (".diff", "diff"))
PREFIXES = ("base_model.model.", "model.diffusion_model.", "diffusion_model.", "transformer.", "lora_unet_",
            "lora_transformer_")
PEFT_ADAPTER = re.compile(r"\.lora_([AB])\.[^.]+\.weight$")  # PEFT's `lora_A.<adapter name>.weight`


@dataclass(frozen=True)
class Converter:
    """One of diffusers' LoRA converters, and the files it takes: those whose every key starts with one of
    `all_start` (when given), some key holds `any_contains` (when given) - the test each family's
    `lora_state_dict` makes before converting - and no key holds one of `none_contains` (spellings the converter
    would rename wrongly)."""

    fn: str
    all_start: tuple[str, ...] = ()
    any_contains: str = ""
    none_contains: tuple[str, ...] = ()

    def takes(self, keys: list[str]) -> bool:
        return ((not self.all_start or all(k.startswith(self.all_start) for k in keys))
                and (not self.any_contains or any(self.any_contains in k for k in keys))
                and not any(bad in k for k in keys for bad in self.none_contains))


# Per family (keyed by Family.name): its original checkpoint's module names, the original layers that fuse several
# diffusers modules, and diffusers' converters (the first that takes a file is used).
ORIGINAL_NAMES: dict[str, Callable[[str], str | None]] = {
    "wan": wan_names.original_name, "hunyuan": hunyuan_names.original_name, "ltx": ltx_names.original_name}
FUSED_NAMES: dict[str, Callable[[set[str]], dict[str, tuple[str, ...]]]] = {"hunyuan": hunyuan_names.fused_modules}
DIFFUSERS_CONVERTERS: dict[str, tuple[Converter, ...]] = {
    "wan": (Converter("_convert_non_diffusers_wan_lora_to_diffusers", all_start=("diffusion_model.",)),
            Converter("_convert_musubi_wan_lora_to_diffusers", all_start=("lora_unet_",))),
    # HunyuanVideoLoraLoaderMixin converts any file with an `img_attn_qkv` key; it knows lora_A/lora_B only
    # (it would split a lora_down matrix as if it were an up one), so musubi/kohya files go to the lookup below.
    "hunyuan": (Converter("_convert_hunyuan_video_lora_to_diffusers", any_contains="img_attn_qkv",
                          none_contains=("lora_unet_", ".lora_down.", ".lora_up.", ".alpha")),),
    "ltx": (Converter("_convert_non_diffusers_ltxv_lora_to_diffusers", all_start=("diffusion_model.",)),),
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


def fused_lookup(modules: set[str], family: str) -> dict[str, tuple[str, ...]]:
    """Every spelling (dots or underscores) of each original fused layer -> the diffusers modules it splits into."""
    fused = FUSED_NAMES.get(family, lambda _m: {})(modules)
    return {spelling: parts for name, parts in fused.items() for spelling in (name, name.replace(".", "_"))}


def own_conversion(raw: dict[str, Any], lookup: dict[str, str], fused: dict[str, tuple[str, ...]] | None = None,
                   rows: dict[str, int] | None = None) -> tuple[dict[str, LoraTensors], list[str]]:
    """Keys matched by name against the model's modules; a fused original layer (`fused`) is split by the rows
    of its parts' weights (`rows`): each part keeps the down matrix and alpha, and takes its share of the up
    matrix's rows (and of a full-weight or bias diff)."""
    modules: dict[str, LoraTensors] = {}
    unmatched: set[str] = set()
    whole: dict[str, LoraTensors] = {}
    for key, tensor in raw.items():
        parts = split_key(key)
        if parts is None:
            unmatched.add(key)
            continue
        written, kind = parts
        target = lookup.get(written)
        if target is None and fused and written in fused:
            target = written
            entry = whole.setdefault(target, LoraTensors())
        elif target is None:
            unmatched.add(written)
            continue
        else:
            entry = modules.setdefault(target, LoraTensors())
        setattr(entry, kind, float(tensor.item()) if kind == "alpha" else tensor)
    for written, t in whole.items():
        names = (fused or {})[written]
        sizes = [(rows or {}).get(n, 0) for n in names]
        for kind in ("up", "diff", "diff_b"):
            value = getattr(t, kind)
            if value is not None and value.shape[0] != sum(sizes):
                raise UserError(f"module {written} has {value.shape[0]} output rows, not the {sum(sizes)} of "
                                f"{', '.join(names)}: a LoRA for another model or size?")
        start = 0
        for name, size in zip(names, sizes, strict=True):
            cut = {k: getattr(t, k)[start:start + size] for k in ("up", "diff", "diff_b") if getattr(t, k) is not None}
            modules[name] = LoraTensors(down=t.down, alpha=t.alpha, **cut)
            start += size
    return modules, sorted(unmatched)


def normalise(raw: dict[str, Any], family: str, module_names: set[str], rows: dict[str, int] | None = None) -> Normalised:
    """`rows`: output rows of each module's weight, to split fused original layers (HunyuanVideo's qkv)."""
    lookup = name_lookup(module_names, family)
    converter = "videogen"
    source = raw
    for conv in DIFFUSERS_CONVERTERS.get(family, ()):
        if not conv.takes(list(raw)):
            continue
        fn_name = conv.fn
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
    modules, unmatched = own_conversion(source, lookup, fused_lookup(module_names, family), rows)
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
