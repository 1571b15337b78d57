"""Running a plan: this rank's items that are not done, one engine load per model, one manifest line per item."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from videogen.batch.gallery import INDEX, THUMBS, Gallery, is_gallery, write_poster
from videogen.batch.gallery import clean_stale as clean_gallery
from videogen.batch.manifest import (
    MANIFEST,
    Manifest,
    Status,
    clean_stale,
    file_sha256,
    inspect_item,
    is_manifest,
    known_hashes,
    merge_shards,
    remove_output,
)
from videogen.batch.plan import Item, State
from videogen.batch.prompts import cap
from videogen.batch.ranks import FolderLock, Ranks, init_ranks
from videogen.errors import UserError
from videogen.spec import RenderSpec


@dataclass
class Outcome:
    index: int
    state: State  # DONE, SKIPPED, FAILED or INTERRUPTED
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


@dataclass
class Result:
    code: int  # 0 all done, 1 some item failed (or the disk is full), 130 interrupted
    outcomes: list[Outcome]  # of every rank, in plan order
    ranks: Ranks
    stopped: str | None = None  # why the batch stopped before its end (disk full), one line


def run_batch(items: list[Item], out_dir: Path, batch_file: str, *, overwrite: bool,
              make_reporter: Callable[[Ranks, int], Reporter]) -> Result:
    """Run this process's share of the plan.

    A folder that cannot be used (locked by another batch, holding other renders) raises UserError on the rank that
    found it and Disagree on the others."""
    devices = {item.spec.device for item in items}
    ranks = init_ranks(next((d for d in sorted(devices) if d.startswith("cuda:")), items[0].spec.device))
    lock = FolderLock(out_dir, ranks.rank)
    order = {item.key: item.index for item in items}
    run: Run | None = None
    try:
        error = None
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            lock.acquire()
            if ranks.rank == 0:  # shards of a killed multi-rank run: fold them in before anyone appends
                check_own_files(out_dir, overwrite)
                merge_shards(out_dir, order)
                clean_gallery(out_dir)
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
        conflicts = [it for it in mine if statuses[it.index].state is State.CONFLICT]
        error = None
        if conflicts and not overwrite:
            first = conflicts[0]
            error = (f"{len(conflicts)} output(s) in {out_dir} are not this batch's renders, e.g. {first.output.name} "
                     f"({statuses[first.index].reason}); use --overwrite to replace them, or another --output-dir")
        _agree(ranks, error)
        name = MANIFEST if ranks.world == 1 else f"manifest.rank{ranks.rank}.jsonl"
        gallery = Gallery(out_dir, items, batch_file) if ranks.rank == 0 else None
        run = Run(Manifest(out_dir / name, new_run_id(), ranks.rank), make_reporter(ranks, len(mine)), gallery)
        stopped = None
        with _two_stage_interrupt():
            try:
                if gallery is not None:
                    try:
                        gallery.write()  # every item pending, before the first render
                    except OSError as e:
                        if (stopped := disk_full(e, gallery.index)) is None:
                            raise
                if stopped is None:
                    stopped = run_items(mine, statuses, run, batch_file)
            except KeyboardInterrupt:
                return Result(130, run.outcomes, ranks)
        run.manifest.close()
        parts = ranks.gather(([vars(o) for o in run.outcomes], stopped))
        everyone = [Outcome(**o) for part, _ in parts for o in part]
        stopped = next((why for _, why in parts if why), None)
        ranks.barrier()
        if ranks.rank == 0:
            with contextlib.suppress(OSError):  # a full disk keeps the appended manifest: valid, only longer
                merge_shards(out_dir, order)
                if gallery is not None:
                    gallery.write()
        everyone.sort(key=lambda o: o.index)
        code = 1 if stopped or any(o.state is State.FAILED for o in everyone) else 0
        return Result(code, everyone, ranks, stopped)
    except BaseException:
        ranks.close()
        raise
    finally:
        if run is not None:
            run.manifest.close()
        lock.release()


def check_own_files(out_dir: Path, overwrite: bool) -> None:
    """The batch writes index.html, thumbs/ and manifest.jsonl into its folder. Where those names already hold
    something of the user's (their own page, a manifest.jsonl of their own), refuse before loading unless
    --overwrite; where they hold the wrong kind of thing (a folder for a file), refuse even then: every render
    would otherwise fail after it is made."""
    page, thumbs, manifest = out_dir / INDEX, out_dir / THUMBS, out_dir / MANIFEST
    for path in (page, manifest):
        if path.is_dir():
            raise UserError(f"{path} is a folder, where the batch writes its {path.name}: move it, or give "
                            "another --output-dir")
    if (thumbs.exists() or thumbs.is_symlink()) and not thumbs.is_dir():
        raise UserError(f"{thumbs} is a file, where the batch keeps its posters in a folder: move it, or give "
                        "another --output-dir")
    if overwrite:
        return
    if page.exists() and not is_gallery(page):
        raise UserError(f"{page} is not a videogen batch page, and the batch writes its gallery there: use "
                        "--overwrite to replace it, or another --output-dir")
    if manifest.exists() and not is_manifest(manifest):
        raise UserError(f"{manifest} holds lines that are not a videogen batch's: use --overwrite to let the "
                        "batch rewrite it, or another --output-dir")


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


@dataclass
class Run:
    """One rank's run in progress: where the end of each item is told."""

    manifest: Manifest
    report: Reporter
    gallery: Gallery | None
    outcomes: list[Outcome] = field(default_factory=list)

    def finish(self, item: Item, state: State, *, seconds: float = 0.0, error: str = "",
               line: dict[str, Any] | None = None, gallery: bool = True) -> None:
        """The one way an item ends: its manifest line (fsynced; none for an item done before), its outcome,
        what the command shows, and the gallery."""
        if line is not None:
            self.manifest.append(_line(item, line.pop("state", state), seconds=seconds, error=error or None, **line))
        outcome = Outcome(item.index, state, str(item.output), item.spec.seed or 0, item.spec.prompt, seconds, error)
        self.outcomes.append(outcome)
        self.report.item_finished(outcome)
        if gallery and self.gallery is not None:
            self.gallery.write()


def run_items(items: list[Item], statuses: dict[int, Status], run: Run, batch_file: str) -> str | None:
    """Render this rank's items that are not done, loading each engine once. Returns why it stopped early (the
    disk is full: every next item would fail the same way), or None.

    Raises KeyboardInterrupt after recording the interrupted item (the caller exits 130)."""
    try:
        for item in items:
            st = statuses[item.index]
            if st.state is State.DONE:
                # Complete files that no manifest line reports: the render finished just before a crash. Record
                # it as done now (once); an item the manifest already reports keeps its line.
                line = {"state": State.DONE, "sha256": st.sha256, "recovered": True} if st.recovered else None
                run.finish(item, State.SKIPPED, line=line, gallery=False)  # the page already shows it done
        if run.gallery is not None and any(statuses[item.index].recovered for item in items):
            run.gallery.write()
    except OSError as e:
        if (full := disk_full(e, items[0].output)) is None:
            raise
        return full
    todo = [item for item in items if statuses[item.index].state is not State.DONE]
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
            run.report.item_started(item, n, len(todo))
            try:
                key = _engine_key(item.spec)
                if key in failed_loads:
                    raise _LoadFailed(failed_loads[key])
                if engine is None or not engine.accepts(item.spec):
                    engine = None  # free the previous model before loading the next
                    engine = _load(item.spec, run.report, failed_loads)
                record = render_item(engine, item, batch_file, run.report)
                current = None
                run.finish(item, State.DONE, seconds=time.perf_counter() - start,
                           line={"sha256": file_sha256(item.output), "timings": record.get("timings"),
                                 "frames_sha256": record.get("frames_sha256")})
            except Exception as e:  # the item failed: record it and go on with the next one
                current = None
                seconds = time.perf_counter() - start
                if full := disk_full(e, item.output):  # every next item would fail the same way: stop here
                    with contextlib.suppress(OSError):  # the manifest line too may find no room
                        run.manifest.append(_line(item, State.FAILED, seconds=seconds, error=full))
                    run.outcomes.append(Outcome(item.index, State.FAILED, str(item.output), item.spec.seed or 0,
                                                item.spec.prompt, seconds, full))
                    return full  # told once, by the caller, as the batch's error
                run.finish(item, State.FAILED, seconds=seconds, error=describe_error(e), line={})
                _free_memory(e)
    except KeyboardInterrupt:
        if current is not None:
            run.finish(current, State.INTERRUPTED, seconds=time.perf_counter() - start,
                       error="interrupted (Ctrl-C or SIGTERM)", line={})
        raise
    return None


def disk_full(e: BaseException, writing: Path) -> str | None:
    """One line for a full disk (or quota), naming where the batch was writing; None for any other error."""
    text = str(e)
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
        path = e.filename or writing
    elif "no space left" in text.lower() or "disk quota exceeded" in text.lower():  # ffmpeg's or write_video's
        path = writing
    else:
        return None
    return (f"disk full writing {path}: no space left on the device; free some space, then rerun the same "
            "command to resume")


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
    record = dict(result.record)
    record["frames_sha256"] = hashlib.sha256(result.frames.tobytes()).hexdigest()
    record["batch"] = {"file": batch_file, "where": item.where, "index": item.index, "key": item.key}
    remove_output(item)  # a corrupt or foreign file that resume decided to replace
    write_video(result.frames, item.output, result.spec.fps or 16, record, crf=item.spec.crf, overwrite=False,
                audio=result.audio)  # the sound is muxed in the same atomic write as the frames
    write_poster(result.frames, item.output)
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
    line.update({k: v for k, v in extra.items() if v is not None})
    return line


def new_run_id() -> str:
    # Shared by all ranks of a run only in spirit: ids need to be unique, not equal (rank is part of the id).
    return uuid.uuid4().hex[:12]
