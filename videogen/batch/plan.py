"""The plan: prompt-file entries -> items with deterministic seeds, output names and content keys."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from videogen.batch.prompts import MAX_ITEMS, Entry, cap
from videogen.errors import UserError
from videogen.spec import RenderSpec, check_value

MAX_SEEDS = 10_000
SLUG_CHARS = 40
HASH_CHARS = 10  # of the content key, in output names
ITEM_LABEL = "set on this line"  # where an item's own value came from, in messages


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


class State(StrEnum):
    """Where an item stands: in the folder (TODO, DONE, CONFLICT) and after a run (SKIPPED, FAILED, INTERRUPTED)."""

    TODO = "todo"
    DONE = "done"
    CONFLICT = "conflict"  # its output name holds something else: replaced only with --overwrite
    SKIPPED = "skipped"  # already done before this run
    FAILED = "failed"
    INTERRUPTED = "interrupted"


@dataclass(frozen=True)
class Item:
    index: int
    where: str
    spec: RenderSpec  # as `generate` would build it (defaults < preset < flags < item fields), seed always set
    folder: Path  # the batch's output folder
    name: str  # the output's file name in it
    key: str  # what the item renders (its content): a record with another key is not this item's
    also: tuple[str, ...] = ()  # other lines of the file asking for exactly the same render (rendered once)
    fields: tuple[str, ...] = ()  # the render fields the item's own line set (for naming them in errors)

    @property
    def output(self) -> Path:  # built on use: a Path costs more than the rest of an item (10,000 in a plan)
        return self.folder / self.name


def item_key(spec: RenderSpec) -> str:
    """The item's identity: a hash of its spec (prompt, settings, seed), not of its position. Fields left at
    their default are not part of it, so that a field added to RenderSpec in a later version (at its default)
    does not make every finished item of a folder look new."""
    values = dict(_settings(_settings_of(spec)))
    values["prompt"] = spec.prompt
    if spec.seed is not None:  # the seed's default, None, is left out like any other default
        values["seed"] = spec.seed
    return hashlib.sha256(_KEY_JSON.encode(values).encode()).hexdigest()[:20]


_NO_DEFAULT = object()
# json.dumps(values, sort_keys=True, default=str), without building an encoder per item
_KEY_JSON = json.JSONEncoder(sort_keys=True, default=str)


@functools.cache
def _spec_fields() -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(RenderSpec) if f.name != "extras")


@functools.cache
def _spec_defaults() -> dict[str, Any]:
    return {f.name: f.default for f in dataclasses.fields(RenderSpec) if f.default is not dataclasses.MISSING}


@functools.cache
def _setting_names() -> tuple[str, ...]:
    """Every field but the prompt and the seed: what the items of one batch mostly share."""
    return tuple(name for name in _spec_fields() if name not in ("prompt", "seed"))


def _settings_of(spec: RenderSpec) -> tuple[Any, ...]:
    """The values of `_setting_names()`, read in one C call (planning reads them for every item)."""
    return _getter()(spec)


@functools.cache
def _getter() -> Callable[[RenderSpec], tuple[Any, ...]]:
    return operator.attrgetter(*_setting_names())


@functools.lru_cache(maxsize=1024)
def _settings(values: tuple[Any, ...]) -> dict[str, Any]:
    """The settings that differ from their defaults; cached, as 10,000 prompts usually share a few settings."""
    defaults = _spec_defaults()
    return {name: v for name, v in zip(_setting_names(), values, strict=True)
            if v != defaults.get(name, _NO_DEFAULT)}


def with_values(spec: RenderSpec, **changes: Any) -> RenderSpec:
    """spec.replace(...) for values already checked, at a fifth of its cost (planning calls it per item and
    seed): RenderSpec's __init__ checks nothing, so a copy of its fields is the same object."""
    new = object.__new__(RenderSpec)
    new.__dict__.update(spec.__dict__)
    new.__dict__.update(changes)
    return new


def output_name(prompt: str, seed: int, key: str, suffix: str) -> str:
    """Named by content, not position: inserting, moving or deleting other lines never renames an item."""
    from videogen.video import slug

    return f"{slug(prompt, SLUG_CHARS)}-s{seed}-{key[:HASH_CHARS]}{suffix}"


def build_plan(entries: list[Entry], make_spec: Callable[[str, dict[str, Any]], RenderSpec], out_dir: Path,
               suffix: str = ".mp4", seeds: list[int] | None = None, per_prompt: int | None = None) -> list[Item]:
    """Entries -> items with deterministic seeds and output names; identical renders become one item.

    Seed of an item: its own `seed` field > --seeds / --seeds-per-prompt > --seed (or the preset's) > derived from
    the prompt. Never random, so reruns and ranks agree."""
    found: dict[str, tuple[Entry, RenderSpec, list[str]]] = {}  # key -> first entry, its spec, later lines
    seen: dict[str, int] = {}
    for entry in entries:
        occurrence = seen.get(entry.prompt, 0)
        seen[entry.prompt] = occurrence + 1
        try:
            spec = make_spec(entry.prompt, dict(entry.fields))
        except UserError as e:
            raise UserError(cap(f"{entry.where}: {e}")) from None
        if entry.fields:  # errors found later name the line's own values as such, not as flags never typed
            sources = {**spec.extras.get("where", {}), **dict.fromkeys(entry.fields, ITEM_LABEL)}
            spec = with_values(spec, extras={**spec.extras, "where": sources})
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
            s = spec if seed == spec.seed else with_values(spec, seed=seed)
            key = item_key(s)
            if key in found:
                found[key][2].append(entry.where)
                continue
            if len(found) >= MAX_ITEMS:
                raise UserError(f"the batch has more than {MAX_ITEMS} items")
            found[key] = (entry, s, [])
    return [Item(index, entry.where, s, out_dir, output_name(s.prompt, s.seed or 0, key, suffix), key,
                 tuple(also), tuple(sorted(entry.fields)))
            for index, (key, (entry, s, also)) in enumerate(found.items())]


def check_items(items: list[Item], fetch: bool = True) -> None:
    """What can be checked before loading is bad input (exit 2) for the whole batch, found before anything renders:
    every model must exist and be a supported family, and every item's settings must suit its model. The error
    names the file and line of the item (and the item's own field, where the value came from the line). A Hub
    model not in the cache is checked against its configs; its weights are fetched (with `fetch`) only once every
    item has passed, and then its items' LoRAs are matched against them."""
    from videogen.resolve import inspect_model, lora_infos, resolve_spec

    infos: dict[tuple[Any, ...], Any] = {}
    checked: set[tuple[Any, ...]] = set()
    for item in items:
        try:
            model = (item.spec.model, item.spec.revision, item.spec.variant)
            if model not in infos:  # a Hub model not in the cache: its configs only, until every item is checked
                infos[model] = inspect_model(*model, weights=False)
            # The checks depend on neither the prompt nor the seed: 10,000 prompts with one setting check once.
            shape = _settings_of(item.spec)
            if shape not in checked:
                resolve_spec(item.spec, infos[model])
                checked.add(shape)
        except UserError as e:
            raise UserError(cap(f"{item.where}: {e}")) from None
    fetched = {model: inspect_model(*model) for model, info in infos.items() if fetch and info.source.configs_only}
    matched: set[tuple[Any, ...]] = set()
    for item in items:  # the LoRAs of those models, matched against their weights once they are here (once each)
        model = (item.spec.model, item.spec.revision, item.spec.variant)
        if model in fetched and item.spec.loras and (model, item.spec.loras) not in matched:
            matched.add((model, item.spec.loras))
            try:
                lora_infos(item.spec, fetched[model])
            except UserError as e:
                raise UserError(cap(f"{item.where}: {e}")) from None
