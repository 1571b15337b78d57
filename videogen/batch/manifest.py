"""The manifest (one JSON line per finished item, fsynced) and resume: is an item's output done and intact?

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
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from videogen.batch.plan import Item, State

MANIFEST = "manifest.jsonl"


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


def read_text(path: Path) -> str | None:
    """A file of the batch folder as text (undecodable bytes replaced), or None where it cannot be read."""
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def read_manifest(path: Path) -> list[dict[str, Any]]:
    """The lines of a manifest; a torn or foreign line is skipped."""
    out = []
    for line in (read_text(path) or "").split("\n"):
        with contextlib.suppress(ValueError):
            obj = json.loads(line)
            if isinstance(obj, dict) and "id" in obj:
                out.append(obj)
    return out


def is_manifest(path: Path) -> bool:
    """Whether every line of `path` is a manifest line, or the torn start of one (a process killed mid-write):
    a file of that name holding anything else is someone's, and compacting the manifest would drop its lines."""
    text = read_text(path)
    return text is not None and all(not line.strip() or line.startswith('{"id": ') for line in text.split("\n"))


def shard_paths(out_dir: Path) -> list[Path]:
    return sorted(out_dir.glob("manifest.rank*.jsonl"))


def merge_shards(out_dir: Path, order: dict[str, int] | None = None) -> None:
    """Fold every rank's shard into manifest.jsonl and compact it: one line per item (its latest), written
    atomically (temporary file, fsync, rename, fsync of the folder), then drop the shards.

    With `order` (item key -> index in the plan), the plan's items come first in plan order, and lines of items
    no longer in the plan are kept only while their output is on disk: the manifest stays as long as the plan plus
    the renders in the folder, however often the batch is rerun. Lines carry unique ids and the latest line of an
    item wins, so a merge killed after the rewrite but before the shards were removed is simply repeated."""
    for stale in out_dir.glob(f".{MANIFEST}.partial-*"):  # a merge killed half-way
        stale.unlink(missing_ok=True)
    shards = shard_paths(out_dir)
    main = out_dir / MANIFEST
    lines = read_manifest(main)
    new = sorted((line for shard in shards for line in read_manifest(shard)),
                 key=lambda line: (str(line.get("time")), str(line["id"])))
    latest: dict[str, dict[str, Any]] = {}
    for line in lines + new:
        key = str(line.get("key") or line["id"])
        latest.pop(key, None)  # re-inserted: the dict keeps the order of each item's latest line
        latest[key] = line
    kept = list(latest.values())
    if order is not None:
        kept = [line for line in kept if str(line.get("key")) in order or _output_exists(line)]
        kept.sort(key=lambda line: order.get(str(line.get("key")), len(order)))
    if kept != lines:
        write_atomic(main, "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in kept))
    for shard in shards:
        shard.unlink(missing_ok=True)


def _output_exists(line: dict[str, Any]) -> bool:
    output = line.get("output")
    return isinstance(output, str) and os.path.lexists(output)


def write_atomic(path: Path, text: str) -> None:
    """Replace `path` with `text` all at once, durably: a crash leaves the old file or the new one, never half."""
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # the rename itself survives a power cut once the folder is synced
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def known_hashes(out_dir: Path) -> dict[tuple[str, str], str]:
    """(output name, item key) -> sha256 of the output, from every done line of every manifest."""
    out: dict[tuple[str, str], str] = {}
    for path in [out_dir / MANIFEST, *shard_paths(out_dir)]:
        for line in read_manifest(path):
            if line.get("state") in (State.DONE, State.SKIPPED) and line.get("sha256") and line.get("output"):
                out[(Path(str(line["output"])).name, str(line.get("key")))] = str(line["sha256"])
    return out


# ---------------------------------------------------------------------------------------------------------------
# Resume: is an item done?


@dataclass
class Status:
    state: State  # TODO, DONE or CONFLICT
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
    """(record, came from the comment tag): the record reader of `--from`, which falls back to the MP4/WebM tag."""
    from videogen.errors import UserError
    from videogen.video import load_record, record_path

    from_comment = not record_path(item.output).is_file()
    try:
        return load_record(item.output), from_comment
    except (UserError, OSError):
        return None, False


def inspect_item(item: Item, hashes: dict[tuple[str, str], str], repair: bool = True) -> Status:
    from videogen.video import read_frames, record_path

    out = item.output
    if not (out.exists() or out.is_symlink()):
        return Status(State.TODO, "not rendered yet")
    record, from_comment = _read_record(item)
    if record is None:
        return Status(State.TODO, "output without a readable run record")
    batch = record.get("batch") if isinstance(record.get("batch"), dict) else {}
    if batch.get("key") != item.key:
        return Status(State.CONFLICT, "holds another render" if batch else "holds a render that is not this batch's")
    known = hashes.get((out.name, item.key))
    sha = file_sha256(out) if out.is_file() else None
    if known is not None and sha is not None:
        if sha != known:
            return Status(State.TODO, "output corrupt (checksum differs)")
    else:  # no checksum noted: decode it
        try:
            frames, _fps = read_frames(out)
        except Exception:  # any failure to decode is a corrupt file, whatever the decoder raises
            return Status(State.TODO, "output corrupt (cannot decode)")
        want = (record.get("frames"), record.get("height"), record.get("width"))
        if (len(frames), frames.shape[1], frames.shape[2]) != want:
            return Status(State.TODO, f"output corrupt ({len(frames)} frames of {want[0]})")
    if from_comment and repair:  # the process died between the video and its record: write the record now
        write_atomic(record_path(out), json.dumps(record, indent=2, ensure_ascii=False))
    return Status(State.DONE, "intact", recovered=known is None, sha256=sha)


def clean_stale(item: Item) -> None:
    """Temporary files of this item left by a killed process (the caller holds the folder's lock for its rank)."""
    from videogen.video import clean_stale_partials, record_path

    clean_stale_partials(item.output)
    clean_stale_partials(record_path(item.output))


def remove_output(item: Item) -> None:
    from videogen.video import record_path

    out = item.output
    if out.is_dir() and not out.is_symlink():
        shutil.rmtree(out)
    elif out.exists() or out.is_symlink():
        out.unlink()
    with contextlib.suppress(OSError):
        record_path(out).unlink()


def orphans(out_dir: Path, items: list[Item]) -> list[str]:
    """Names of outputs in the folder that the manifest reports for items no longer in the plan (their line was
    edited or deleted): left alone, and counted neither as done nor as to do."""
    keys = {item.key for item in items}
    lines = [line for path in [out_dir / MANIFEST, *shard_paths(out_dir)] for line in read_manifest(path)]
    names = {Path(str(line["output"])).name for line in lines
             if line.get("state") == State.DONE and str(line.get("key")) not in keys and _output_exists(line)}
    return sorted(names)
