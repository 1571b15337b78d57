"""Batch renders: prompt files, a deterministic plan, a crash-safe manifest, resume, and a split across ranks.

A batch folder holds the outputs (`NNNNN-<slug>-s<seed>.mp4` plus `<output>.json`), `manifest.jsonl` (one JSON line
per item and run, appended and fsynced before the next item starts) and, while several ranks run, one shard
`manifest.rank<r>.jsonl` per rank, merged into `manifest.jsonl` by rank 0.

"Done" is decided from the files, never from the manifest alone: an item is done when its output exists, its run
record (the `.json` beside it, or for MP4/WebM the copy in the container's comment tag) belongs to this item, and the
output is intact (its sha256 equals the one the manifest noted, or, when none was noted because the process died
between writing the files and the manifest line, it decodes to the recorded frame count and size).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from videogen.errors import UserError
from videogen.spec import RenderSpec, check_value, spec_field_types

MAX_FILE_BYTES = 32 * 2**20
MAX_PROMPT_CHARS = 10_000
MAX_ITEMS = 100_000
MAX_SEEDS = 10_000
SLUG_CHARS = 40
MANIFEST = "manifest.jsonl"
PROMPT_SUFFIXES = (".txt", ".jsonl", ".yaml", ".yml")
# Fields a prompt-file item may set: every render field (the prompt is the item's own key).
ITEM_KEYS = sorted(set(spec_field_types()) - {"prompt"})
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")


# ---------------------------------------------------------------------------------------------------------------
# Prompt files


@dataclass(frozen=True)
class Entry:
    """One prompt-file entry: where it is, its prompt, and the render fields it sets."""

    where: str  # "FILE:LINE"
    prompt: str
    fields: dict[str, Any]


def read_prompt_file(path: Path) -> list[Entry]:
    """Parse a .txt / .jsonl / .yaml prompt file; any problem is a UserError naming the file and line or key."""
    suffix = path.suffix.lower()
    if suffix not in PROMPT_SUFFIXES:
        raise UserError(f"{path}: unsupported prompt file type '{suffix}': use .txt, .jsonl or .yaml")
    text = _read_text(path)
    if suffix == ".txt":
        entries = _parse_txt(path, text)
    elif suffix == ".jsonl":
        entries = _parse_jsonl(path, text)
    else:
        entries = _parse_yaml(path, text)
    if not entries:
        raise UserError(f"{path}: no prompts in the file")
    if len(entries) > MAX_ITEMS:
        raise UserError(f"{path}: more than {MAX_ITEMS} prompts")
    return entries


def _read_text(path: Path) -> str:
    try:
        if not path.is_file():
            raise UserError(f"prompt file not found: {path}" if not path.exists() else f"{path}: not a file")
        if path.stat().st_size > MAX_FILE_BYTES:
            raise UserError(f"{path}: larger than {MAX_FILE_BYTES // 2**20} MiB")
        raw = path.read_bytes()
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise UserError(f"{path}:{line}: not UTF-8 text (byte {e.start}); save the file as UTF-8") from None


def _lines(text: str) -> Iterator[tuple[int, str]]:
    # Only "\n" ends a line (str.splitlines would also split on form feeds and U+2028, shifting line numbers).
    for number, line in enumerate(text.split("\n"), start=1):
        yield number, line.removesuffix("\r")


def check_prompt(prompt: Any, where: str) -> str:
    if not isinstance(prompt, str):
        raise UserError(f"{where}: 'prompt' must be a string, not {_short(prompt)}")
    if not prompt.strip():
        raise UserError(f"{where}: the prompt is empty")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise UserError(f"{where}: the prompt is longer than {MAX_PROMPT_CHARS} characters ({len(prompt)})")
    bad = _CONTROL.search(prompt)
    if bad:
        raise UserError(f"{where}: control character U+{ord(bad.group()):04X} in the prompt")
    return prompt


def _parse_txt(path: Path, text: str) -> list[Entry]:
    entries = []
    for number, line in _lines(text):
        prompt = line.strip()
        if not prompt or prompt.startswith("#"):
            continue
        where = f"{path}:{number}"
        entries.append(Entry(where, check_prompt(prompt, where), {}))
    return entries


def _item(mapping: dict[str, Any], where: str, key_where: Callable[[str], str] | None = None) -> Entry:
    """A mapping -> Entry: 'prompt' plus known render fields, each type- and range-checked."""
    key_where = key_where or (lambda _k: where)
    if "prompt" not in mapping:
        raise UserError(f"{where}: missing 'prompt'")
    fields: dict[str, Any] = {}
    for key, value in mapping.items():
        if key == "prompt":
            continue
        if key not in ITEM_KEYS:
            from videogen.presets import suggest

            raise UserError(f"{key_where(key)}: unknown key {_short(key)}{suggest(key, ITEM_KEYS)}; "
                            f"valid keys: prompt, {', '.join(ITEM_KEYS)}")
        try:
            fields[key] = check_value(key, value, key_where(key))
        except UserError as e:
            raise UserError(_cap(str(e))) from None
    prompt = check_prompt(mapping["prompt"], key_where("prompt"))
    return Entry(where, prompt, fields)


def _parse_jsonl(path: Path, text: str) -> list[Entry]:
    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in pairs:
            if k in out:
                raise ValueError(f"duplicate key {_short(k)}")
            out[k] = v
        return out

    entries = []
    for number, line in _lines(text):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            obj = json.loads(line, object_pairs_hook=no_duplicates)
        except json.JSONDecodeError as e:
            raise UserError(f"{where}: invalid JSON: {e.msg} (column {e.colno})") from None
        except ValueError as e:  # duplicate keys
            raise UserError(f"{where}: invalid item: {e}") from None
        except RecursionError:
            raise UserError(f"{where}: invalid JSON: nested too deeply") from None
        if isinstance(obj, str):
            obj = {"prompt": obj}
        if not isinstance(obj, dict):
            raise UserError(f"{where}: each line must be a JSON object with a 'prompt' (or a string), "
                            f"not {type(obj).__name__}")
        entries.append(_item(obj, where))
    return entries


def _parse_yaml(path: Path, text: str) -> list[Entry]:
    """A YAML list of items (a prompt string, or a mapping with 'prompt' and render fields); no aliases."""
    import yaml

    class Loader(yaml.SafeLoader):
        def compose_node(self, parent, index):  # type: ignore[no-untyped-def]
            if self.check_event(yaml.AliasEvent):  # aliases allow billion-laughs; prompt files never need them
                mark = self.peek_event().start_mark
                raise yaml.composer.ComposerError(None, None, "aliases (*name) are not allowed", mark)
            return super().compose_node(parent, index)

    def line(node: Any) -> str:
        return f"{path}:{node.start_mark.line + 1}"

    def value(node: Any) -> Any:
        try:
            return loader.construct_object(node, deep=True)
        except yaml.YAMLError as e:
            raise UserError(f"{line(node)}: invalid value: {_yaml_problem(e)}") from None
        except (ValueError, TypeError, OverflowError) as e:
            raise UserError(f"{line(node)}: invalid value ({type(e).__name__})") from None

    bad = re.search(r"[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]", text)
    if bad:  # what YAML's reader refuses, named by line before the reader sees it
        raise UserError(f"{path}:{text.count(chr(10), 0, bad.start()) + 1}: control character "
                        f"U+{ord(bad.group()):04X} is not allowed in YAML")
    loader = Loader(text)
    try:
        try:
            root = loader.get_single_node()
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
            raise UserError(f"{where}: invalid YAML: {_yaml_problem(e)}") from None
        except RecursionError:
            line_no = loader.get_mark().line + 1
            raise UserError(f"{path}:{line_no}: invalid YAML: nested too deeply") from None
        if root is None:
            return []
        if not isinstance(root, yaml.SequenceNode):
            raise UserError(f"{line(root)}: a YAML prompt file is a list of items ('- prompt' or "
                            f"'- {{prompt: ..., seed: ...}}'), not a {_node_kind(root)}")
        entries = []
        for node in root.value:
            if isinstance(node, yaml.MappingNode):
                mapping: dict[str, Any] = {}
                key_lines: dict[str, str] = {}
                for knode, vnode in node.value:
                    key = value(knode) if isinstance(knode, yaml.ScalarNode) else None
                    if not isinstance(key, str):
                        raise UserError(f"{line(knode)}: keys must be strings, not {_short(key) if key is not None else _node_kind(knode)}")
                    if key in mapping:
                        raise UserError(f"{line(knode)}: duplicate key {_short(key)}")
                    mapping[key] = value(vnode)
                    key_lines[key] = line(knode)
                entries.append(_item(mapping, line(node), lambda k, kl=key_lines, n=node: kl.get(k, line(n))))
            elif isinstance(node, yaml.ScalarNode):
                prompt = value(node)
                entries.append(Entry(line(node), check_prompt(prompt, line(node)), {}))
            else:
                raise UserError(f"{line(node)}: an item is a prompt or a mapping with 'prompt', not a list")
        return entries
    finally:
        loader.dispose()


def _yaml_problem(e: Exception) -> str:
    problem = getattr(e, "problem", None) or (str(e).strip().splitlines() or ["invalid"])[0]
    return _cap(" ".join(str(problem).split()))


def _node_kind(node: Any) -> str:
    return {"MappingNode": "mapping", "SequenceNode": "list", "ScalarNode": "single value"}.get(
        type(node).__name__, "value")


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _cap(message: str, limit: int = 400) -> str:
    message = " ".join(message.split())  # one line, whatever the values held
    return message if len(message) <= limit else message[: limit - 3] + "..."


# ---------------------------------------------------------------------------------------------------------------
# Seeds and the plan


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
            raise UserError(_cap(f"{entry.where}: {e}")) from None
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
            inspect_model(item.spec.model, item.spec.revision, item.spec.variant)
        except UserError as e:
            raise UserError(_cap(f"{item.where}: {e}")) from None


# ---------------------------------------------------------------------------------------------------------------
# Manifest


class Manifest:
    """An append-only JSON-lines file; every line is one write() and fsynced before the next item starts."""

    def __init__(self, path: Path, run_id: str, rank: int):
        self.path, self.run_id, self.rank, self.count = path, run_id, rank, 0
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        size = os.fstat(self.fd).st_size
        if size:  # a process killed mid-line leaves no newline: start on a fresh line
            with open(path, "rb") as f:
                f.seek(size - 1)
                if f.read(1) != b"\n":
                    os.write(self.fd, b"\n")

    def append(self, entry: dict[str, Any]) -> None:
        self.count += 1
        line = {"id": f"{self.run_id}-{self.rank}-{self.count}", "time": _now(), "rank": self.rank, **entry}
        os.write(self.fd, (json.dumps(line, ensure_ascii=False) + "\n").encode())
        os.fsync(self.fd)

    def close(self) -> None:
        if self.fd >= 0:  # closing twice could close a descriptor the number was reused for
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def read_manifest(path: Path) -> list[dict[str, Any]]:
    """The lines of a manifest; a torn or foreign line is skipped."""
    out = []
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    for line in text.split("\n"):
        with contextlib.suppress(ValueError):
            obj = json.loads(line)
            if isinstance(obj, dict) and "id" in obj:
                out.append(obj)
    return out


def shard_paths(out_dir: Path) -> list[Path]:
    return sorted(out_dir.glob("manifest.rank*.jsonl"))


def merge_shards(out_dir: Path) -> None:
    """Fold every rank's shard into manifest.jsonl (atomic rewrite), then drop the shards.

    Lines carry unique ids, so a merge that was killed after the rewrite but before the shards were removed is
    simply repeated without duplicating anything."""
    for stale in out_dir.glob(f".{MANIFEST}.partial-*"):  # a merge killed half-way
        stale.unlink(missing_ok=True)
    shards = shard_paths(out_dir)
    if not shards:
        return
    main = out_dir / MANIFEST
    lines = read_manifest(main)
    ids = {line["id"] for line in lines}
    new = [line for shard in shards for line in read_manifest(shard) if line["id"] not in ids]
    new.sort(key=lambda line: (str(line.get("time")), str(line["id"])))
    if new:
        tmp = out_dir / f".{MANIFEST}.partial-{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(line, ensure_ascii=False) + "\n" for line in lines + new)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, main)
    for shard in shards:
        shard.unlink(missing_ok=True)


def known_hashes(out_dir: Path) -> dict[tuple[str, str], str]:
    """(output name, item key) -> sha256 of the output, from every done/skipped line of every manifest."""
    out: dict[tuple[str, str], str] = {}
    for path in [out_dir / MANIFEST, *shard_paths(out_dir)]:
        for line in read_manifest(path):
            if line.get("state") in ("done", "skipped") and line.get("sha256") and line.get("output"):
                out[(Path(str(line["output"])).name, str(line.get("key")))] = str(line["sha256"])
    return out


# ---------------------------------------------------------------------------------------------------------------
# Resume: is an item done?


@dataclass
class Status:
    state: str  # "done" | "todo" | "conflict"
    reason: str = ""
    recovered: bool = False  # complete files that no manifest line reports (the process died right after)
    sha256: str | None = None


def file_sha256(path: Path) -> str | None:
    if path.is_dir():
        return None  # a PNG folder is checked by decoding it
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(2**20), b""):
            h.update(chunk)
    return h.hexdigest()


def _read_record(item: Item) -> tuple[dict[str, Any] | None, bool]:
    """(record, came from the comment tag)."""
    from videogen.video import read_comment, record_path

    rec = record_path(item.output)
    with contextlib.suppress(OSError, ValueError):
        data = json.loads(rec.read_text(encoding="utf-8"))
        if isinstance(data, dict):
            return data, False
    if item.output.suffix.lower() in (".mp4", ".webm") and item.output.is_file():
        comment = read_comment(item.output)
        with contextlib.suppress(ValueError, TypeError):
            data = json.loads(comment or "")
            if isinstance(data, dict):
                return data, True
    return None, False


def inspect_item(item: Item, hashes: dict[tuple[str, str], str], repair: bool = True) -> Status:
    from videogen.video import read_frames, record_path

    out = item.output
    if not (out.exists() or out.is_symlink()):
        return Status("todo", "not rendered yet")
    record, from_comment = _read_record(item)
    if record is None:
        return Status("todo", "output without a readable run record")
    batch = record.get("batch") if isinstance(record.get("batch"), dict) else {}
    if batch.get("key") != item.key:
        return Status("conflict", "holds another render" if batch else "holds a render that is not this batch's")
    known = hashes.get((out.name, item.key))
    sha = file_sha256(out) if out.is_file() else None
    if known is not None and sha is not None:
        if sha != known:
            return Status("todo", "output corrupt (checksum differs)")
    else:  # no checksum noted: decode it
        try:
            frames, _fps = read_frames(out)
        except Exception:  # any failure to decode is a corrupt file, whatever the decoder raises
            return Status("todo", "output corrupt (cannot decode)")
        want = (record.get("frames"), record.get("height"), record.get("width"))
        if (len(frames), frames.shape[1], frames.shape[2]) != want:
            return Status("todo", f"output corrupt ({len(frames)} frames of {want[0]})")
    if from_comment and repair:  # the process died between the video and its record: write the record now
        _write_atomic(record_path(out), json.dumps(record, indent=2, ensure_ascii=False))
    return Status("done", "intact", recovered=known is None, sha256=sha)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def clean_stale(item: Item) -> None:
    """Temporary files of this item left by a killed process (the caller holds the folder's lock for its rank)."""
    name = item.output.name
    for pattern in (f".{name}.partial-*", f".{name}.json.partial-*", f".{name}.old-*"):
        for p in item.output.parent.glob(pattern):
            with contextlib.suppress(OSError):
                shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()


def remove_output(item: Item) -> None:
    from videogen.video import record_path

    out = item.output
    if out.is_dir() and not out.is_symlink():
        shutil.rmtree(out)
    elif out.exists() or out.is_symlink():
        out.unlink()
    with contextlib.suppress(OSError):
        record_path(out).unlink()


# ---------------------------------------------------------------------------------------------------------------
# Ranks


@dataclass
class Ranks:
    """This process's place among the batch's processes (torchrun / accelerate set RANK and WORLD_SIZE)."""

    rank: int = 0
    world: int = 1
    group: Any = None  # the process group used for coordination (gloo), when world > 1
    backend: str = ""

    def mine(self, items: list[Item]) -> list[Item]:
        return [it for it in items if it.index % self.world == self.rank]

    def gather(self, obj: Any) -> list[Any]:
        if self.world == 1:
            return [obj]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj, group=self.group)
        return out

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier(group=self.group)

    def close(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            with contextlib.suppress(Exception):
                dist.destroy_process_group()


def launched_ranks() -> tuple[int, int]:
    """(rank, world size) from the launcher's environment; (0, 1) when started directly."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
    except ValueError:
        raise UserError("RANK and WORLD_SIZE must be integers") from None
    if world < 1 or not 0 <= rank < world:
        raise UserError(f"RANK {rank} is not within WORLD_SIZE {world}")
    return rank, world


def init_ranks(device: str) -> Ranks:
    """Join the launcher's process group: nccl when rendering on GPUs (each rank on its LOCAL_RANK GPU), else gloo.

    Coordination (a few small objects) always goes through a gloo group, so it needs no GPU memory."""
    rank, world = launched_ranks()
    if world == 1:
        return Ranks()
    if device.startswith("cuda:"):
        raise UserError(f"--device {device}: under torchrun every rank would use that one GPU; use --device cuda "
                        "(each rank takes the GPU of its LOCAL_RANK) or auto")
    from datetime import timedelta

    import torch
    import torch.distributed as dist

    cuda = device != "cpu" and torch.cuda.is_available()
    if cuda:
        # The spec keeps device "cuda" (no index) so run records replay on any one-GPU machine.
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", rank % max(torch.cuda.device_count(), 1))))
    backend = "nccl" if cuda else "gloo"
    # Ranks wait for each other only at the start and the end; one rank may finish hours before another.
    timeout = timedelta(hours=72)
    dist.init_process_group(backend=backend, timeout=timeout)
    group = dist.new_group(backend="gloo", timeout=timeout) if cuda else None
    return Ranks(rank=dist.get_rank(), world=dist.get_world_size(), group=group, backend=backend)


class FolderLock:
    """One batch process per rank and output folder: a second copy of the same command is refused, not raced."""

    def __init__(self, out_dir: Path, rank: int):
        self.path = out_dir / f".videogen-batch.rank{rank}.lock"
        self.fd: int | None = None

    def acquire(self) -> None:
        try:
            import fcntl
        except ImportError:  # no flock (Windows): run unguarded
            return
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            self.fd = None
            raise UserError(f"another videogen batch is writing to {self.path.parent} (rank {rank_of(self.path)}); "
                            "wait for it or use another --output-dir") from None

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing drops the flock; the kernel also drops it when a process is killed
            self.fd = None


def rank_of(lock: Path) -> str:
    return lock.name.removeprefix(".videogen-batch.rank").removesuffix(".lock")


# ---------------------------------------------------------------------------------------------------------------
# Running


@dataclass
class Outcome:
    index: int
    state: str  # done | skipped | failed | interrupted
    output: str
    seed: int
    prompt: str
    seconds: float = 0.0
    error: str = ""


@dataclass
class Reporter:
    """What the command shows while a batch runs (progress on stderr, finished paths on stdout)."""

    progress: Callable[[str, int, int], None] | None = None
    item_started: Callable[[Item, int, int], None] = lambda item, n, total: None
    item_finished: Callable[[Outcome], None] = lambda outcome: None
    warn: Callable[[str], None] = lambda message: None
    extra: dict[str, Any] = field(default_factory=dict)


def run_batch(items: list[Item], out_dir: Path, batch_file: str, *, overwrite: bool,
              make_reporter: Callable[[Ranks, int], Reporter]) -> tuple[int, list[Outcome], Ranks]:
    """Run this process's share of the plan. Returns (exit code, outcomes of every rank, ranks).

    Exit code: 0 all done, 1 some item failed, 130 interrupted. A folder that cannot be used (locked by another
    batch, holding other renders) raises UserError on the rank that found it and Disagree on the others.
    """
    devices = {item.spec.device for item in items}
    ranks = init_ranks(next((d for d in sorted(devices) if d.startswith("cuda:")), items[0].spec.device))
    lock = FolderLock(out_dir, ranks.rank)
    manifest: Manifest | None = None
    outcomes: list[Outcome] = []
    try:
        error = None
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            lock.acquire()
            if ranks.rank == 0:  # shards of a killed multi-rank run: fold them in before anyone appends
                merge_shards(out_dir)
        except UserError as e:
            error = str(e)
        except OSError as e:
            error = f"cannot use output folder {out_dir}: {e.strerror or e}"
        _agree(ranks, error)
        mine = ranks.mine(items)
        hashes = known_hashes(out_dir)
        statuses: dict[int, Status] = {}
        for item in mine:
            clean_stale(item)
            statuses[item.index] = inspect_item(item, hashes)
        conflicts = [it for it in mine if statuses[it.index].state == "conflict"]
        error = None
        if conflicts and not overwrite:
            first = conflicts[0]
            error = (f"{len(conflicts)} output(s) in {out_dir} are not this batch's renders, e.g. {first.output.name} "
                     f"({statuses[first.index].reason}); use --overwrite to replace them, or another --output-dir")
        _agree(ranks, error)
        name = MANIFEST if ranks.world == 1 else f"manifest.rank{ranks.rank}.jsonl"
        manifest = Manifest(out_dir / name, new_run_id(), ranks.rank)
        report = make_reporter(ranks, len(mine))
        with _two_stage_interrupt():
            try:
                run_items(mine, statuses, manifest, batch_file, report, outcomes)
            except KeyboardInterrupt:
                return 130, outcomes, ranks
        manifest.close()
        everyone = [Outcome(**o) for part in ranks.gather([vars(o) for o in outcomes]) for o in part]
        ranks.barrier()
        if ranks.rank == 0 and ranks.world > 1:
            merge_shards(out_dir)
        everyone.sort(key=lambda o: o.index)
        return (1 if any(o.state == "failed" for o in everyone) else 0), everyone, ranks
    except BaseException:
        ranks.close()
        raise
    finally:
        if manifest is not None:
            manifest.close()
        lock.release()


class Disagree(Exception):
    """Another rank refused to start; this one stops quietly with exit code 2."""


def _agree(ranks: Ranks, error: str | None) -> None:
    """Every rank learns whether any rank hit an input error, so none is left waiting at a barrier."""
    errors = ranks.gather(error)
    if error is not None:
        raise UserError(error)
    if any(e is not None for e in errors):
        raise Disagree()


@contextlib.contextmanager
def _two_stage_interrupt() -> Iterator[None]:
    """First Ctrl-C / SIGTERM: stop cleanly (temp files removed, item recorded). Second one: abort at once."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    hits = {"n": 0}

    def handler(signum: int, frame: object) -> None:
        hits["n"] += 1
        if hits["n"] > 1:
            os.write(2, b"aborted\n")
            os._exit(130)
        raise KeyboardInterrupt

    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)


def run_items(items: list[Item], statuses: dict[int, Status], manifest: Manifest, batch_file: str,
              report: Reporter, outcomes: list[Outcome]) -> None:
    """Render this rank's items that are not done, loading each engine once; outcomes are appended as they end.

    Raises KeyboardInterrupt after recording the interrupted item (the caller exits 130)."""
    for item in items:
        st = statuses[item.index]
        if st.state == "done":
            # Complete files that no manifest line reports: the render finished just before a crash. Record it
            # as done now (once), so the manifest says each item was rendered exactly once.
            state = "done" if st.recovered else "skipped"
            manifest.append(_line(item, state, sha256=st.sha256, recovered=st.recovered or None))
            o = Outcome(item.index, "skipped", str(item.output), item.spec.seed or 0, item.spec.prompt)
            outcomes.append(o)
            report.item_finished(o)
    todo = [item for item in items if statuses[item.index].state != "done"]
    # Items needing the same engine run together, in file order, so each model loads once.
    first_use: dict[tuple[Any, ...], int] = {}
    for item in todo:
        first_use.setdefault(_engine_key(item.spec), item.index)
    todo.sort(key=lambda it: (first_use[_engine_key(it.spec)], it.index))
    engine: Any = None
    failed_loads: dict[tuple[Any, ...], str] = {}
    current: Item | None = None  # the item being worked on, for the manifest if Ctrl-C comes now
    start = time.perf_counter()
    try:
        for n, item in enumerate(todo, start=1):
            current, start = item, time.perf_counter()
            report.item_started(item, n, len(todo))
            try:
                key = _engine_key(item.spec)
                if key in failed_loads:
                    raise _LoadFailed(failed_loads[key])
                if engine is None or not engine.accepts(item.spec):
                    engine = None  # free the previous model before loading the next
                    engine = _load(item.spec, report, failed_loads)
                record = render_item(engine, item, batch_file, report)
            except Exception as e:  # the item failed: record it and go on with the next one
                error = describe_error(e)
                seconds = time.perf_counter() - start
                manifest.append(_line(item, "failed", seconds=seconds, error=error))
                current = None
                o = Outcome(item.index, "failed", str(item.output), item.spec.seed or 0, item.spec.prompt,
                            seconds, error)
                outcomes.append(o)
                report.item_finished(o)
                _free_memory(e)
                continue
            seconds = time.perf_counter() - start
            manifest.append(_line(item, "done", sha256=file_sha256(item.output), seconds=seconds,
                                  timings=record.get("timings"), record=record))
            current = None
            o = Outcome(item.index, "done", str(item.output), item.spec.seed or 0, item.spec.prompt, seconds)
            outcomes.append(o)
            report.item_finished(o)
    except KeyboardInterrupt:
        if current is not None:
            seconds = time.perf_counter() - start
            manifest.append(_line(current, "interrupted", seconds=seconds, error="interrupted (Ctrl-C or SIGTERM)"))
            outcomes.append(Outcome(current.index, "interrupted", str(current.output), current.spec.seed or 0,
                                    current.spec.prompt, seconds, "interrupted"))
        raise


class _LoadFailed(Exception):
    pass


def _engine_key(spec: RenderSpec) -> tuple[Any, ...]:
    from videogen.engine import engine_key

    return engine_key(spec)


def _load(spec: RenderSpec, report: Reporter, failed: dict[tuple[Any, ...], str]) -> Any:
    from videogen.engine import Engine

    try:
        return Engine.load(spec, report.progress)
    except Exception as e:  # every item of this engine fails the same way: load it only once
        failed[_engine_key(spec)] = f"cannot load the model: {describe_error(e)}"
        raise _LoadFailed(failed[_engine_key(spec)]) from None


def render_item(engine: Any, item: Item, batch_file: str, report: Reporter) -> dict[str, Any]:
    from videogen.video import write_video

    result = engine.render(item.spec, report.progress)
    if report.progress:
        report.progress("write", 0, 1)
    start = time.perf_counter()
    record = dict(result.record)
    record["frames_sha256"] = hashlib.sha256(result.frames.tobytes()).hexdigest()
    record["batch"] = {"file": batch_file, "where": item.where, "index": item.index, "key": item.key}
    remove_output(item)  # a corrupt or foreign file that resume decided to replace
    write_video(result.frames, item.output, result.spec.fps or 16, record, crf=item.spec.crf, overwrite=False)
    record["timings"] = {**record["timings"], "write": round(time.perf_counter() - start, 4)}
    if report.progress:
        report.progress("write", 1, 1)
    return record


def describe_error(e: BaseException) -> str:
    from videogen.errors import VideogenError

    if isinstance(e, VideogenError | _LoadFailed):
        return _cap(str(e))
    if type(e).__name__ == "OutOfMemoryError" or "out of memory" in str(e).lower():
        return "out of memory (try --offload model, --vae-tiling, fewer frames or a smaller size)"
    text = str(e).strip().splitlines()
    return _cap(f"{type(e).__name__}: {text[0] if text else ''}")


def _free_memory(e: BaseException) -> None:
    if type(e).__name__ != "OutOfMemoryError":
        return
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _line(item: Item, state: str, **extra: Any) -> dict[str, Any]:
    from videogen.video import record_path

    line: dict[str, Any] = {"index": item.index, "state": state, "prompt": item.spec.prompt,
                            "seed": item.spec.seed, "output": str(item.output),
                            "record": str(record_path(item.output)), "key": item.key, "where": item.where}
    if "seconds" in extra:
        extra["seconds"] = round(extra["seconds"], 3)
    record = extra.pop("record", None)
    if record is not None:
        line["frames_sha256"] = record.get("frames_sha256")
    line.update({k: v for k, v in extra.items() if v is not None})
    return line


def new_run_id() -> str:
    # Shared by all ranks of a run only in spirit: ids need to be unique, not equal (rank is part of the id).
    return uuid.uuid4().hex[:12]
