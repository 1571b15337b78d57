"""The plan: prompt-file entries -> items with deterministic seeds, output names and content keys."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from videogen.batch.prompts import MAX_ITEMS, Entry, cap
from videogen.errors import UserError
from videogen.spec import RenderSpec, check_value

MAX_SEEDS = 10_000
SLUG_CHARS = 40


def parse_seeds(text: str) -> list[int]:
    """'A..B' (inclusive) or one seed."""
    m = re.fullmatch(r"\s*(\d+)\s*(?:\.\.\s*(\d+)\s*)?", text)
    if not m:
        raise UserError(f"--seeds {text!r}: use A..B (for example 0..3) or one seed")
    lo = int(m.group(1))
    hi = int(m.group(2)) if m.group(2) is not None else lo
    if hi < lo:
        raise UserError(f"--seeds {text}: the range is empty ({hi} < {lo})")
    if hi - lo + 1 > MAX_SEEDS:
        raise UserError(f"--seeds {text}: more than {MAX_SEEDS} seeds")
    for s in (lo, hi):
        check_value("seed", s, "--seeds")
    return list(range(lo, hi + 1))


def derive_seed(prompt: str, occurrence: int, j: int) -> int:
    """A seed from the prompt (its n-th occurrence in the file, its j-th seed): stable when other lines change."""
    digest = hashlib.sha256(f"{prompt}\n{occurrence}\n{j}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 2**31


@dataclass(frozen=True)
class Item:
    index: int
    where: str
    spec: RenderSpec  # as `generate` would build it (defaults < preset < flags < item fields), seed always set
    output: Path
    key: str  # identifies what the item renders: a record with another key is not this item's


def item_key(spec: RenderSpec) -> str:
    return hashlib.sha256(json.dumps(spec.to_dict(), sort_keys=True).encode()).hexdigest()[:20]


def output_name(index: int, prompt: str, seed: int, suffix: str) -> str:
    from videogen.video import slug

    return f"{index:05d}-{slug(prompt, SLUG_CHARS)}-s{seed}{suffix}"


def build_plan(entries: list[Entry], make_spec: Callable[[str, dict[str, Any]], RenderSpec], out_dir: Path,
               suffix: str = ".mp4", seeds: list[int] | None = None, per_prompt: int | None = None) -> list[Item]:
    """Entries -> items with deterministic seeds and output names.

    Seed of an item: its own `seed` field > --seeds / --seeds-per-prompt > --seed (or the preset's) > derived from
    the prompt. Never random, so reruns and ranks agree."""
    items: list[Item] = []
    seen: dict[str, int] = {}
    for entry in entries:
        occurrence = seen.get(entry.prompt, 0)
        seen[entry.prompt] = occurrence + 1
        try:
            spec = make_spec(entry.prompt, dict(entry.fields))
        except UserError as e:
            raise UserError(cap(f"{entry.where}: {e}")) from None
        if "seed" in entry.fields:
            item_seeds = [entry.fields["seed"]]
        elif seeds is not None:
            item_seeds = seeds
        elif per_prompt is not None:
            item_seeds = [derive_seed(entry.prompt, occurrence, j) for j in range(per_prompt)]
        elif spec.seed is not None:
            item_seeds = [spec.seed]
        else:
            item_seeds = [derive_seed(entry.prompt, occurrence, 0)]
        for seed in item_seeds:
            index = len(items)
            if index >= MAX_ITEMS:
                raise UserError(f"the batch has more than {MAX_ITEMS} items")
            s = spec.replace(seed=seed)
            items.append(Item(index, entry.where, s, out_dir / output_name(index, s.prompt, seed, suffix),
                              item_key(s)))
    return items


def check_models(items: list[Item]) -> None:
    """Every model the plan names must exist and be a supported family: that is bad input (exit 2) for the whole
    batch, found before anything renders, not one failure per item."""
    from videogen.engine import inspect_model

    seen: set[str] = set()
    for item in items:
        if item.spec.model in seen:
            continue
        seen.add(item.spec.model)
        try:
            inspect_model(item.spec.model)
        except UserError as e:
            raise UserError(cap(f"{item.where}: {e}")) from None
