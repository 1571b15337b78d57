"""Batch renders: prompt files, a deterministic plan, a crash-safe manifest, resume, and a split across ranks.

A batch folder holds the outputs (each with its `<output>.json` run record), `manifest.jsonl` (one JSON line per
finished item, fsynced before the next item starts) and, while several ranks run, one shard
`manifest.rank<r>.jsonl` per rank, merged into `manifest.jsonl` by rank 0.

Modules, one job each: `prompts` (reading prompt files), `plan` (items, seeds, names), `manifest` (the manifest
and resume), `ranks` (processes and the folder lock), `run` (rendering the plan).
"""

from videogen.batch.manifest import (
                                     MANIFEST,
                                     Manifest,
                                     Status,
                                     inspect_item,
                                     known_hashes,
                                     merge_shards,
                                     orphans,
                                     read_manifest,
)
from videogen.batch.plan import (
                                     Item,
                                     State,
                                     build_plan,
                                     check_items,
                                     derive_seed,
                                     item_key,
                                     output_name,
                                     parse_seeds,
    with_values,
)
from videogen.batch.prompts import (
                                     ITEM_KEYS,
                                     MAX_ITEMS,
                                     MAX_PROMPT_CHARS,
                                     Entry,
                                     check_prompt,
                                     read_prompt_file,
)
from videogen.batch.ranks import FolderLock, Ranks, init_ranks, launched_ranks
from videogen.batch.run import Disagree, Outcome, Reporter, Result, _two_stage_interrupt, run_batch

__all__ = ["ITEM_KEYS", "MANIFEST", "MAX_ITEMS", "MAX_PROMPT_CHARS", "Disagree", "Entry", "FolderLock", "Item",
           "Manifest", "Outcome", "Ranks", "Reporter", "Result", "State", "Status", "_two_stage_interrupt",
           "build_plan", "check_items", "check_prompt", "derive_seed", "init_ranks", "inspect_item", "item_key",
           "known_hashes", "launched_ranks", "merge_shards", "orphans", "output_name", "parse_seeds",
           "read_manifest", "read_prompt_file", "run_batch", "with_values"]
