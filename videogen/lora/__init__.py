"""LoRAs merged into a loaded denoiser, switchable between renders without reloading the base weights.

`resolve(spec, info)` reads and matches every LoRA of a spec before any model weight is read (a LoRA that matches
nothing is refused there); `LoraState` (merge.py) merges them into the loaded modules and switches between sets.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from videogen.errors import UserError
from videogen.lora.keys import Normalised, check_shapes, checkpoint_tensors, normalise, read_lora
from videogen.lora.refs import TARGETS, LoraRef, parse_ref, sha256

if TYPE_CHECKING:
    from videogen.families.base import Family

__all__ = ["LoraInfo", "LoraRef", "check_record", "parse_ref", "record", "resolve"]
log = logging.getLogger("videogen")
CACHE_SIZE = 8  # normalised LoRAs kept in memory: a batch that alternates a few LoRAs reads each file once


@dataclass(frozen=True)
class LoraInfo:
    ref: LoraRef
    sha256: str
    targets: tuple[str, ...]  # model components it goes into
    norm: Normalised

    @property
    def modules(self) -> int:
        return len(self.norm.modules) * len(self.targets)

    def record(self) -> dict[str, Any]:
        hub = {"hub_id": self.ref.hub_id, "file": self.ref.file, "revision": self.ref.revision} if self.ref.hub_id else {}
        return {"path": str(self.ref.path), **hub, "sha256": self.sha256, "weight": self.ref.weight,
                "expert": self.ref.expert, "targets": list(self.targets), "modules": self.modules,
                "keys": self.norm.keys, "unmatched": len(self.norm.unmatched), "converter": self.norm.converter}


_CACHE: dict[tuple[str, str, str], Normalised] = {}
_SHAPES: dict[str, dict[str, tuple[int, ...]]] = {}


def component_shapes(folder: Path) -> dict[str, tuple[int, ...]]:
    key = str(folder)
    if key not in _SHAPES:
        _SHAPES[key] = {name: shape for name, (shape, _f) in checkpoint_tensors(folder).items()}
    return _SHAPES[key]


def inspect(ref: LoraRef, model_path: Path, components: list[str], family: str) -> LoraInfo:
    """Read, normalise and match one LoRA against the model's checkpoint headers (no model weight is read)."""
    have = [c for c in TARGETS[ref.expert] if c in components]
    if ref.expert != "both" and "transformer_2" not in components:
        raise UserError(f"LoRA {ref.name}@{ref.expert}: this model has one expert; leave out @{ref.expert}")
    if not have:
        raise UserError(f"LoRA {ref.name}: this model has no transformer to put a LoRA into")
    digest = sha256(ref.path)
    shapes = component_shapes(model_path / have[0])
    key = (digest, family, str(model_path / have[0]))
    if key not in _CACHE:
        raw = read_lora(ref.path)
        modules = {n.rsplit(".", 1)[0] for n in shapes if n.endswith((".weight", ".bias"))}
        try:
            rows = {n.rsplit(".", 1)[0]: shape[0] for n, shape in shapes.items() if n.endswith(".weight") and shape}
            norm = normalise(raw, family, modules, rows)
            check_shapes(norm, shapes)
        except UserError as e:
            raise UserError(f"LoRA {ref.name}: {e}") from None
        if not norm.modules:
            first = next(iter(raw), "(no keys)")
            raise UserError(f"LoRA {ref.name}: none of its {len(raw)} keys match this {family} model's modules "
                            f"(first key: {first}); a LoRA for another model?")
        if norm.unmatched:  # e.g. text-encoder keys: only the denoiser takes LoRAs here
            log.warning("LoRA %s: %d of its modules match nothing in this model and are left out (first: %s)",
                        ref.name, len(norm.unmatched), norm.unmatched[0])
        while len(_CACHE) >= CACHE_SIZE:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = norm
    return LoraInfo(ref, digest, tuple(have), _CACHE[key])


def resolve(loras: tuple[str, ...], model_path: Path, components: list[str], family: type[Family],
            pipeline: str) -> list[LoraInfo]:
    """The LoRAs of a render, each found and checked against the model's modules, before loading the model."""
    if loras and not family.loras:
        raise UserError(f"--lora: diffusers has no LoRA loader for {family.title} ({pipeline}), so videogen "
                        "takes no LoRA for this model")
    return [inspect(parse_ref(text, "--lora"), model_path, components, family.name) for text in loras]


def record(infos: list[LoraInfo]) -> list[dict[str, Any]]:
    return [i.record() for i in infos]


def check_record(entries: Any, loras: tuple[str, ...], where: str) -> None:
    """`--from`: each recorded LoRA that the new render still uses must be the same file (same sha256). A Hub LoRA
    is found again by its repo and file; the record's own values are pinned to the commit it used (refs.pin), so
    another commit can only be one the user named, and is taken as named."""
    if not isinstance(entries, list):
        return
    used = {}
    for text in loras:
        ref = parse_ref(text, where)
        used[f"{ref.hub_id}/{ref.file}" if ref.hub_id else ref.name] = ref
    for entry in entries:
        if not isinstance(entry, dict) or "path" not in entry or "sha256" not in entry:
            raise UserError(f"{where}: malformed LoRA entry in the run record: {entry!r}")
        name = f"{entry['hub_id']}/{entry.get('file')}" if entry.get("hub_id") else str(Path(entry["path"]))
        ref = used.get(name)
        if ref is None or (ref.hub_id and entry.get("revision") != ref.revision):
            continue
        now = sha256(ref.path)
        if now != entry["sha256"]:
            at = f" at commit {str(ref.revision)[:12]}" if ref.hub_id else ""
            raise UserError(f"{where}: LoRA file {name}{at} changed since that run (sha256 {entry['sha256'][:12]}"
                            f"... recorded, {now[:12]}... now)")
