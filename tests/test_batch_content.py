"""`videogen batch` items are their content (prompt, settings, seed), not their line: editing a prompt file
re-renders only what changed, names stay, nothing is orphaned or rendered twice, the manifest stays bounded; a
full disk stops the batch with one line; item values are named by file and line. Run as a user runs it: the
`videogen` command in a subprocess, configured by files only."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from cli_helpers import run_cli

ENV = {"OMP_NUM_THREADS": "1"}


def tiny_args(model: Path) -> list[str]:
    return ["-m", str(model), "--frames", "5", "--height", "16", "--width", "16", "--steps", "1"]


def manifest(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines() if line.strip()]


def videos(out: Path) -> dict[str, int]:
    """Output name -> modification time (a re-render changes it)."""
    return {p.name: p.stat().st_mtime_ns for p in out.glob("*.mp4")}


def batch(model: Path, folder: Path, *extra: str):
    return run_cli("batch", "p.txt", "-o", "out", "-q", *tiny_args(model), *extra, cwd=folder, env=ENV, timeout=300)


def test_editing_the_file_rerenders_only_changed_items(tiny_wan, tmp_path):
    out = tmp_path / "out"
    (tmp_path / "p.txt").write_text("a red cat\na blue dog\na green square\n")
    assert batch(tiny_wan, tmp_path).code == 0
    first = videos(out)
    assert len(first) == 3 and len(manifest(out)) == 3

    # Insert a line at the top, move one, edit one: one new item, one edited item; two untouched.
    (tmp_path / "p.txt").write_text("a white circle\na green square\na red cat\na blue dog moving left\n")
    plan = run_cli("batch", "p.txt", "-o", "out", "--dry-run", *tiny_args(tiny_wan), cwd=tmp_path, env=ENV)
    assert plan.code == 0, plan.err
    assert plan.out.count(" done ") == 2 and plan.out.count(" todo ") == 2, plan.out
    [dog] = [name for name in first if name.startswith("a-blue-dog-")]
    assert "1 output(s) in the folder belong to no item of this file" in plan.out and dog in plan.out
    res = batch(tiny_wan, tmp_path)
    assert res.code == 0, res.err
    second = videos(out)
    assert {n: t for n, t in second.items() if n in first} == first  # nothing rendered again, nothing renamed
    assert len(second) == 5  # two new renders; the edited line's old output is left alone
    lines = manifest(out)
    assert [line["prompt"] for line in lines[:4]] == ["a white circle", "a green square", "a red cat",
                                                     "a blue dog moving left"]
    assert [line["state"] for line in lines] == ["done"] * 5  # the orphan's line is kept while its file is there

    # Rerun three times: nothing rendered, the manifest does not grow.
    for _ in range(3):
        assert batch(tiny_wan, tmp_path).code == 0
    assert videos(out) == second and manifest(out) == lines

    # Its output deleted by the user, the orphan's line goes too: the manifest is the plan plus files on disk.
    (out / dog).unlink()
    assert batch(tiny_wan, tmp_path).code == 0
    assert len(manifest(out)) == 4 and videos(out) == {n: t for n, t in second.items() if n != dog}


def test_identical_lines_are_rendered_once(tiny_wan, tmp_path):
    (tmp_path / "p.txt").write_text("a red cat\na blue dog\na red cat\n")
    res = batch(tiny_wan, tmp_path, "--seed", "5")
    assert res.code == 0, res.err
    assert len(videos(tmp_path / "out")) == 2 and len(res.out.split()) == 2
    assert [line["prompt"] for line in manifest(tmp_path / "out")] == ["a red cat", "a blue dog"]
    plan = run_cli("batch", "p.txt", "-o", "out", "--dry-run", "--seed", "5", *tiny_args(tiny_wan), cwd=tmp_path)
    assert "1 line(s) repeat an item exactly" in plan.out


def test_an_item_value_the_model_refuses_names_its_file_and_line(tiny_wan, tmp_path):
    (tmp_path / "p.jsonl").write_text('{"prompt": "a red cat"}\n{"prompt": "a blue dog", "width": 33}\n')
    res = run_cli("batch", "p.jsonl", "-o", "out", "-m", tiny_wan, "--height", "16", cwd=tmp_path, env=ENV)
    assert res.code == 2
    assert res.err.startswith(f"error: {Path('p.jsonl')}:2: ") and res.err.count("\n") == 1, res.err
    assert "width 33 (set on this line)" in res.err and "--width" not in res.err, res.err
    assert not (tmp_path / "out").exists()  # refused before anything was written or loaded


# -- a full disk ------------------------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB tmpfs: where the machine lets us mount one (root in a container that allows it)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("disk-full test needs root to mount a small tmpfs (not root here)")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", f"videogen-test-{uuid.uuid4().hex[:6]}",
                           str(disk)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"disk-full test needs a small tmpfs; mount refused: {proc.stderr.strip()}")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def fill(disk: Path) -> Path:
    """Fill the file system to the last byte."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as f:
        for size in (2**16, 2**12, 2**8, 1):
            try:
                while True:
                    f.write(b"\0" * size)
            except OSError:
                pass
    return filler


def test_a_full_disk_stops_the_batch_with_one_line(tiny_wan, small_disk, tmp_path):
    (tmp_path / "p.txt").write_text("a red cat\na blue dog\na green square\na white circle\n")
    args = ["batch", tmp_path / "p.txt", "-o", small_disk / "out", "-q", *tiny_args(tiny_wan)]
    filler = fill(small_disk)
    res = run_cli(*args, env=ENV, timeout=300)
    assert res.code == 1, res.err
    full = [line for line in res.err.splitlines() if "no space left" in line.lower()]
    assert len(full) == 1 and full[0].startswith("error: disk full writing ") and str(small_disk) in full[0], res.err
    assert "Traceback" not in res.err and "ffmpeg" not in res.err
    # It stopped at the first item that found no room: the others were not tried.
    assert sum(line.get("state") == "failed" for line in manifest(small_disk / "out")) <= 1
    filler.unlink()
    again = run_cli(*args, env=ENV, timeout=300)
    assert again.code == 0, again.err
    assert len(list((small_disk / "out").glob("*.mp4"))) == 4
    assert not [p.name for p in (small_disk / "out").iterdir() if ".partial-" in p.name]
