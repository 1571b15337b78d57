"""Running a plan: this rank's items that are not done, one engine load per model, one manifest line per item."""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from videogen.batch.manifest import (
    MANIFEST,
    Manifest,
    Status,
    clean_stale,
    file_sha256,
    inspect_item,
    known_hashes,
    merge_shards,
    remove_output,
)
from videogen.batch.plan import Item
from videogen.batch.prompts import cap
from videogen.batch.ranks import FolderLock, Ranks, init_ranks
from videogen.errors import UserError
from videogen.spec import RenderSpec


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
        return cap(str(e))
    if type(e).__name__ == "OutOfMemoryError" or "out of memory" in str(e).lower():
        return "out of memory (try --offload model, --vae-tiling, fewer frames or a smaller size)"
    text = str(e).strip().splitlines()
    return cap(f"{type(e).__name__}: {text[0] if text else ''}")


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
