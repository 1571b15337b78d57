"""`videogen batch FILE`: many renders, one model load; resumable after a crash; split across torchrun ranks.

The command takes every render option of `generate` (read from its signature, so the two never drift apart) as a
default for every item, and builds each item's RenderSpec with the same `merge` as `generate`."""

from __future__ import annotations

import inspect
import os
import sys
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from videogen.cli import options as o
from videogen.errors import RenderError, UserError
from videogen.spec import INPUT_FILES


class OutputFormat(StrEnum):
    mp4 = "mp4"
    webm = "webm"
    gif = "gif"
    png = "png"


B = "Batch"
File = Annotated[Path, typer.Argument(help="Prompts: .txt (one a line, # comments), .jsonl or .yaml (items with "
                                           "'prompt' and any render field).", show_default=False)]
Seeds = Annotated[str | None, typer.Option("--seeds", help="Render every prompt with each seed A..B (inclusive).", rich_help_panel=B)]
SeedsPerPrompt = Annotated[int | None, typer.Option("--seeds-per-prompt", min=1, max=10_000, help="Render every prompt N times, with seeds derived from the prompt.", rich_help_panel=B)]
OutputDir = Annotated[Path | None, typer.Option("--output-dir", "-o", help="Folder for the videos and manifest.jsonl (default: outputs/<FILE name>).", rich_help_panel=B)]
Format = Annotated[OutputFormat, typer.Option("--format", help="Output type of every item (png: a folder of frames).", rich_help_panel=B)]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Print the plan (and what is already done) as a table; render nothing.", rich_help_panel=B)]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace files in the folder that are not this plan's renders (this plan's intact renders are always kept).", rich_help_panel=B)]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress on stderr.")]


# Options of `generate` that are not render fields (or that a batch has its own version of).
NOT_RENDER = {"prompt", "preset", "output", "from_", "allow_different_model", "overwrite", "as_json", "quiet",
              "preview", "trace", "trace_fast",  # watching the denoising: generate only, for now
              "audio"}  # one WAV file: generate only (a batch's videos carry their sound)


def batch_command(generate: Callable[..., Any]) -> Callable[..., None]:
    """The `batch` command: its own options, then every render option of `generate`."""

    def batch(**kwargs: Any) -> None:
        """Render every prompt of a file with one model load. Rerun the same command to resume after a crash.

        Under `torchrun --nproc_per_node N` (or `accelerate launch`) the items are split across the processes."""
        run(**kwargs)

    own = [("file", File, inspect.Parameter.empty), ("preset", o.PresetOpt, None), ("seeds", Seeds, None),
           ("seeds_per_prompt", SeedsPerPrompt, None), ("output_dir", OutputDir, None),
           ("format", Format, OutputFormat.mp4), ("dry_run", DryRun, False), ("overwrite", Overwrite, False),
           ("quiet", Quiet, False)]
    params = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=ann, default=default)
              for name, ann, default in own]
    for p in inspect.signature(generate, eval_str=True).parameters.values():
        if p.name not in NOT_RENDER:
            params.append(p.replace(kind=inspect.Parameter.KEYWORD_ONLY))
    batch.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    return batch


def run(file: Path, preset: str | None, seeds: str | None, seeds_per_prompt: int | None, output_dir: Path | None,
        format: OutputFormat, dry_run: bool, overwrite: bool, quiet: bool, **render: Any) -> None:
    from videogen import batch as b
    from videogen.video import slug

    flags = o.flag_values(**render)
    if seeds is not None and seeds_per_prompt is not None:
        raise UserError("give --seeds or --seeds-per-prompt, not both")
    if "seed" in flags and (seeds is not None or seeds_per_prompt is not None):
        raise UserError("give --seed (one seed for every item) or --seeds / --seeds-per-prompt, not both")
    seed_list = b.parse_seeds(seeds) if seeds is not None else None
    o.merge("check", dict(flags), preset)  # a bad flag or preset is named as such, not as the first item's problem
    entries = b.read_prompt_file(file)
    out_dir = output_dir if output_dir is not None else Path("outputs") / slug(file.stem)
    suffix = "" if format is OutputFormat.png else f".{format.value}"

    bases: dict[str | None, Any] = {}

    def beside(value: str) -> str:  # a relative path in the prompt file is relative to the file
        return value if Path(value).expanduser().is_absolute() else str((file.parent / value).absolute())

    def make_spec(prompt: str, fields: dict[str, Any]) -> Any:
        for key in INPUT_FILES:
            if key in fields:
                fields[key] = beside(fields[key])
        if "reference_images" in fields:
            fields["reference_images"] = tuple(beside(v) for v in fields["reference_images"])
        # The same merge as `generate`, once per model an item names (a `model` may name a preset): merging per
        # item re-read the preset 10,000 times for a 10,000-line file. The item's fields, already checked by the
        # prompt-file reader, then go over it as flags would.
        model = fields.pop("model", None)
        if model is not None and (model.startswith(".") or (file.parent / model).is_dir()):
            model = beside(model)  # a model folder beside the prompt file (a preset's model is beside the preset)
        if model not in bases:
            bases[model] = o.merge(prompt, {**flags, **({"model": model} if model is not None else {})}, preset)
        return b.with_values(bases[model], prompt=prompt, **fields)

    items = b.build_plan(entries, make_spec, out_dir, suffix, seed_list, seeds_per_prompt)
    if out_dir.is_dir():  # the folder's own names (index.html, thumbs, manifest.jsonl): the run would refuse them
        from videogen.batch.run import check_own_files

        check_own_files(out_dir, overwrite)
    b.check_items(items, fetch=not dry_run)  # a dry run fetches no weights
    if dry_run:
        rank, _world = b.launched_ranks()
        if rank == 0:
            print_plan(items, out_dir)
        return
    try:
        result = b.run_batch(items, out_dir, str(file), overwrite=overwrite,
                             make_reporter=lambda ranks, n: reporter(ranks, n, quiet))
    except b.Disagree:
        raise UserError("another rank refused to start the batch (see its message)") from None
    code, outcomes, ranks = result.code, result.outcomes, result.ranks
    try:
        if ranks.rank == 0 or code == 130:
            print_summary(outcomes, out_dir, code)
    finally:
        ranks.close()
    # Exit codes travel as the exceptions that `main` maps: 130 interrupted, 1 some item failed.
    if code == 130:
        raise KeyboardInterrupt
    if result.stopped:
        raise RenderError(result.stopped)
    if code == 1:
        failed = sum(oc.state == "failed" for oc in outcomes)
        raise RenderError(f"{failed} of {len(outcomes)} item(s) failed; see {out_dir / b.MANIFEST}")


def print_plan(items: list[Any], out_dir: Path) -> None:
    """The plan as a table on stdout, then what the folder holds that the plan does not (left alone)."""
    from videogen.batch import State, inspect_item, known_hashes, orphans

    hashes = known_hashes(out_dir) if out_dir.is_dir() else {}
    present = set(os.listdir(out_dir)) if out_dir.is_dir() else set()  # one listing, not a stat per item
    lines = [f"{len(items)} item(s) -> {out_dir}"]
    header = ("#", "state", "seed", "frames", "size", "steps", "model", "output", "prompt", "lines")
    rows = []
    for it in items:
        s = it.spec
        state = inspect_item(it, hashes, repair=False).state if it.name in present else State.TODO
        size = f"{s.width}x{s.height}" if s.width and s.height else "default"
        rows.append((str(it.index), state.value, str(s.seed), str(s.frames or "default"), size,
                     str(s.steps or "default"), s.model, it.name, s.prompt[:60],
                     ", ".join(w.rsplit(":", 1)[-1] for w in (it.where, *it.also))))
    # A plain table (a rich Table lays out 10,000 rows in seconds): columns padded to their widest cell.
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    for row in (header, *rows):
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    duplicates = sum(len(it.also) for it in items)
    if duplicates:
        lines.append(f"{duplicates} line(s) repeat an item exactly (same prompt, settings and seed): rendered once")
    left = orphans(out_dir, items)
    if left:
        shown = ", ".join(left[:5]) + (", ..." if len(left) > 5 else "")
        lines.append(f"{len(left)} output(s) in the folder belong to no item of this file (edited or deleted "
                     f"lines): left alone, not counted: {shown}")
    sys.stdout.write("\n".join(lines) + "\n")


def print_summary(outcomes: list[Any], out_dir: Path, code: int) -> None:
    from rich.table import Table

    from videogen.cli.progress import stderr

    counts: dict[str, list[float]] = {}
    for oc in outcomes:
        counts.setdefault(oc.state, []).append(oc.seconds)
    table = Table(title=f"batch {'interrupted' if code == 130 else 'finished'}: {out_dir}", title_justify="left")
    for col in ("state", "items", "seconds"):
        table.add_column(col)
    for state in ("done", "skipped", "failed", "interrupted"):
        if state in counts:
            table.add_row(state, str(len(counts[state])), f"{sum(counts[state]):.1f}")
    stderr.print(table)
    bad = [oc for oc in outcomes if oc.state in ("failed", "interrupted")]
    if bad:
        failures = Table(title="not rendered", title_justify="left")
        for col in ("#", "state", "output", "error"):
            failures.add_column(col, overflow="fold")
        for oc in bad:
            failures.add_row(str(oc.index), oc.state, Path(oc.output).name, oc.error)
        stderr.print(failures)


def reporter(ranks: Any, total: int, quiet: bool) -> Any:
    """Progress on stderr (rank 0 only: several live bars would garble one terminal); paths on stdout."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from videogen.batch import Reporter
    from videogen.cli.progress import STAGES, stderr

    show = not quiet and ranks.rank == 0
    bar = Progress(TextColumn("{task.description:<30}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                   console=stderr, transient=True, disable=not show)
    items = bar.add_task("items" if ranks.world == 1 else f"items (rank 0 of {ranks.world})", total=total)
    stage = bar.add_task("", total=1)
    started = {"on": False}

    def progress(name: str, done: int, n: int) -> None:
        if not started["on"]:
            bar.start()
            started["on"] = True
        bar.update(stage, description=STAGES.get(name, name), completed=done, total=n)

    def finished(outcome: Any) -> None:
        bar.advance(items)
        if outcome.state in ("done", "skipped"):
            sys.stdout.write(outcome.output + "\n")
            sys.stdout.flush()
        elif outcome.state == "failed":
            stderr.print(f"[red]failed:[/red] #{outcome.index} {Path(outcome.output).name}: {outcome.error}",
                         markup=True, highlight=False, soft_wrap=True)
        if bar.finished and started["on"]:
            bar.stop()
            started["on"] = False

    return Reporter(progress=progress, item_finished=finished)
