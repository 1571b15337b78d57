"""Which files of a diffusers model folder the loader reads, and whether they are all there and whole.

One rule serves three users: `download` (a Hub repo's file list), `doctor` (is a cached model complete) and
the loader (refuse a broken folder in one line before any library touches it). Only the standard library here.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from videogen.errors import UserError

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
# Files besides weights that configs, tokenizers and schedulers read.
CONFIG_PATTERNS = ("*.json", "*.txt", "*.model", "*.tiktoken", "*.jinja")
SHARD = re.compile(r"-\d{5}-of-\d{5}")
WEIGHTS_INDEX = re.compile(r"^[^.]+\.safetensors\.index(?:\.(?P<variant>[\w\-]+))?\.json$")
VARIANTS = ("fp16", "bf16")
ROOT_DEFAULTS = "videogen_defaults.json"  # videogen.settings.MODEL_DEFAULTS
# Components whose classes hold no weights.
NO_WEIGHTS = ("Tokenizer", "Scheduler", "Processor", "TokenizersBackend", "Guidance")  # guiders: *Guidance


def components(index: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Component name -> (library, class name), for the components that are present."""
    out = {}
    for name, value in index.items():
        if name.startswith("_") or not isinstance(value, list) or len(value) != 2:
            continue
        library, cls = value
        if library is None or cls is None:
            continue
        out[name] = (str(library), str(cls))
    return out


def weights_variant(name: str) -> tuple[bool, str | None]:
    """(is a safetensors weights or weights-index file, its variant): diffusers and transformers name a
    variant between the stem and the extension (`model.fp16.safetensors`, `x.fp16-00001-of-00002.safetensors`,
    `x-00001-of-00002.fp16.safetensors`, `x.safetensors.index.fp16.json`)."""
    m = WEIGHTS_INDEX.match(name)
    if m:
        return True, m.group("variant")
    if not name.endswith(".safetensors"):
        return False, None
    parts = SHARD.sub("", name[: -len(".safetensors")]).split(".")
    return True, (parts[1] if len(parts) > 1 else None)


def needs_weights(cls_name: str) -> bool:
    return not any(word in cls_name for word in NO_WEIGHTS)


@dataclass
class Selection:
    """The files a render reads, and the weights variant each component loads."""

    files: list[str] = field(default_factory=list)
    variants: dict[str, str | None] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # variants chosen because a folder holds nothing else


def select(files: Iterable[str], index: dict[str, Any], variant: str | None = None, where: str = "") -> Selection:
    """Pick, from a model's relative file paths, exactly what the loader reads: model_index.json, each used
    component's configs and tokenizer files, and its safetensors of one variant (never pickles, never other
    variants, never folders the pipeline does not name)."""
    files = list(files)
    by_folder: dict[str, list[str]] = {}
    for f in files:
        top, _, rest = f.partition("/")
        if rest:
            by_folder.setdefault(top, []).append(f)
    # The root holds the index and, when a model ships them, its render defaults (videogen.settings reads them).
    sel = Selection(files=["model_index.json", *[f for f in files if f == ROOT_DEFAULTS]])
    found_variant = variant is None
    for name, (_library, _cls_name) in components(index).items():
        own = sorted(by_folder.get(name, []))
        configs = [f for f in own if not weights_variant(f.rsplit("/", 1)[-1])[0]
                   and any(fnmatch.fnmatch(f.rsplit("/", 1)[-1], p) for p in CONFIG_PATTERNS)]
        weights: dict[str | None, list[str]] = {}
        for f in own:
            is_weights, v = weights_variant(f.rsplit("/", 1)[-1])
            if is_weights:
                weights.setdefault(v, []).append(f)
        chosen: str | None = None
        if weights:
            if variant in weights:
                chosen, found_variant = variant, True
            elif None in weights:
                chosen = None
            elif len(weights) == 1:
                chosen = next(iter(weights))
                sel.notes.append(f"component '{name}' has only {chosen} weights: using variant {chosen}")
            else:
                have = ", ".join(sorted(str(v) for v in weights))
                raise UserError(f"{where or 'model'}: component '{name}' has weights in variants {have} only; "
                                "choose one with --variant")
            configs += weights[chosen]
        sel.variants[name] = chosen
        sel.files += configs
    if not found_variant:
        raise UserError(f"{where or 'model'}: no component has {variant} weights (--variant {variant}); "
                        "leave --variant out for the model's own weights")
    return sel


def list_files(folder: Path) -> list[str]:
    """Relative paths of every file under folder, dangling links included (they are reported, not skipped)."""
    out = []
    for p in folder.rglob("*"):
        if any(part.startswith(".") for part in p.relative_to(folder).parts):
            continue
        if p.is_file() or (p.is_symlink() and not p.exists()):
            out.append(p.relative_to(folder).as_posix())
    return out


def safetensors_problem(path: Path) -> str | None:
    """Why a safetensors file cannot be whole (shorter than its header says, or no header), or None."""
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            n = int.from_bytes(f.read(8), "little")
            if size < 8 or n <= 0 or 8 + n > size:
                return "is truncated or not a safetensors file (its header is cut off)"
            header = json.loads(f.read(n))
    except (OSError, ValueError) as e:
        return f"cannot be read ({type(e).__name__})"
    ends = [t["data_offsets"][1] for k, t in header.items() if k != "__metadata__" and isinstance(t, dict)]
    need = 8 + n + max(ends, default=0)
    if size < need:
        return f"is truncated ({size} of {need} bytes)"
    return None


def check_folder(folder: Path, index: dict[str, Any], variant: str | None = None, fix: str = "") -> Selection:
    """Every file the loader reads is present and whole, or one UserError naming the file and `fix`."""
    hint = f"; {fix}" if fix else ""
    present = list_files(folder)
    sel = select(present, index, variant, where=str(folder))
    for name, (_library, cls_name) in components(index).items():
        sub = folder / name
        if not sub.is_dir():
            raise UserError(f"{folder}: component folder '{name}' is missing{hint}")
        if needs_weights(cls_name) and not any(f.startswith(name + "/") and weights_variant(f.rsplit("/", 1)[-1])[0]
                                               for f in sel.files):
            pickles = sorted(p.name for p in sub.iterdir() if p.suffix in PICKLE_SUFFIXES)
            if pickles:
                raise UserError(f"{folder}: component '{name}' has weights only in pickle format "
                                f"({', '.join(pickles)}); videogen loads only .safetensors weights")
            raise UserError(f"{sub}: no .safetensors weights{hint}")
    for rel in sel.files:
        path = folder / rel
        if path.is_symlink() and not path.exists():
            raise UserError(f"{path}: a link to a missing blob ({path.readlink()}){hint}")
        if WEIGHTS_INDEX.match(path.name):
            for shard in sorted(set(_weight_map(path).values())):
                if not (path.parent / shard).exists():
                    raise UserError(f"{path.parent / shard}: missing shard (listed in {path.name}){hint}")
        elif path.suffix == ".safetensors":
            problem = safetensors_problem(path)
            if problem:
                raise UserError(f"{path}: {problem}{hint}")
    return sel


def _weight_map(index_file: Path) -> dict[str, str]:
    from videogen.jsonfile import read_object

    weights = read_object(index_file, "a weights index").get("weight_map")
    if not isinstance(weights, dict):
        raise UserError(f"{index_file}: not a weights index (no 'weight_map' object)")
    return {str(k): str(v) for k, v in weights.items()}
