"""`videogen batch` rendering: resume, failures, reproducibility, interrupts, SIGKILL at random moments, and a
two-rank gloo run that must give the same files as one process."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import run_inprocess

from videogen.video import read_frames


@pytest.fixture(autouse=True)
def one_thread():
    """In-process renders on one thread, like the subprocesses (OMP_NUM_THREADS=1): on a busy 2-core machine two
    intra-op threads make these tiny renders about ten times slower, and frames do not depend on it."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


PROMPTS = "# three prompts\na red cat runs on the beach\n\na blue dog moving left\na white circle in the sky\n"
EXE = Path(sys.executable).with_name("videogen")


def tiny_args(model: Path, steps: int = 2) -> list[str]:
    return ["-m", str(model), "--frames", "9", "--height", "16", "--width", "16", "--steps", str(steps)]


def manifest(out: Path) -> list[dict]:
    path = out / "manifest.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def outputs(out: Path, suffix: str = ".mp4") -> list[Path]:
    return sorted(p for p in out.iterdir() if p.name.endswith(suffix) and not p.name.startswith("."))


def temp_files(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if ".partial-" in p.name or ".old-" in p.name)


def record(video: Path) -> dict:
    return json.loads(video.with_name(video.name + ".json").read_text())


def spawn(args: list[str], cwd: Path, env: dict | None = None) -> subprocess.Popen:
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    # A shell's background job inherits SIGINT ignored; a user at a terminal does not.
    return subprocess.Popen([str(EXE), *map(str, args)], cwd=cwd, env=full_env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def test_batch_renders_resumes_and_repairs(tiny_wan, tmp_path, capsys):
    (tmp_path / "p.txt").write_text(PROMPTS)
    args = ["batch", tmp_path / "p.txt", "-o", tmp_path / "out", "--seeds", "1..2", "-q", *tiny_args(tiny_wan)]
    first = run_inprocess(capsys, *args)
    out = tmp_path / "out"
    assert first.code == 0, first.err
    lines = manifest(out)
    assert [(line["index"], line["state"]) for line in lines] == [(i, "done") for i in range(6)]
    videos = [Path(line["output"]) for line in lines]  # in plan order; named by content
    assert [re.sub(r"-[0-9a-f]{10}\.mp4$", "", p.name) for p in videos] == [
        "a-red-cat-runs-on-the-beach-s1", "a-red-cat-runs-on-the-beach-s2",
        "a-blue-dog-moving-left-s1", "a-blue-dog-moving-left-s2",
        "a-white-circle-in-the-sky-s1", "a-white-circle-in-the-sky-s2"]
    assert sorted(videos) == outputs(out)
    assert first.out.split() == [str(p) for p in videos]
    for video, line in zip(videos, lines, strict=True):
        frames, _ = read_frames(video)
        assert frames.shape == (9, 16, 16, 3) and frames.std() > 1
        rec = record(video)
        assert rec["seed"] == line["seed"] and rec["batch"]["key"] == line["key"] and rec["steps"] == 2
        assert line["timings"]["denoise"] > 0 and line["sha256"]
    assert len({record(v)["frames_sha256"] for v in videos}) == 6
    assert len({line["timings"]["load"] for line in lines}) == 1  # one model load for the whole batch
    before = {p.name: p.stat().st_mtime_ns for p in videos}

    # Rerun: nothing is rendered again, and the manifest stays as it was (one line per item).
    again = run_inprocess(capsys, *args)
    assert again.code == 0
    assert manifest(out) == lines
    assert {p.name: p.stat().st_mtime_ns for p in outputs(out)} == before

    # Damage: a truncated file, a deleted one, a video whose record is gone, stale temp files of a killed run.
    sha = {p.name: record(p)["frames_sha256"] for p in videos}
    with open(videos[1], "r+b") as f:
        f.truncate(videos[1].stat().st_size // 2)
    videos[3].unlink()
    rec4 = videos[4].with_name(videos[4].name + ".json")
    rec4_text = rec4.read_text()
    rec4.unlink()
    (out / f".{videos[5].name}.partial-99999.mp4").write_bytes(b"half a video")
    (out / f".{videos[5].name}.json.partial-99999").write_text("{")
    third = run_inprocess(capsys, *args)
    assert third.code == 0, third.err
    after = manifest(out)
    assert [(line["index"], line["state"]) for line in after] == [(i, "done") for i in range(6)]
    assert [i for i, (old, new) in enumerate(zip(lines, after, strict=True)) if old != new] == [1, 3]
    # Restored from the copy in the MP4's comment tag, which is written before the write time is known.
    restored, original = json.loads(rec4.read_text()), json.loads(rec4_text)
    assert original["timings"].pop("write") > 0 and "write" not in restored["timings"]
    assert restored == original
    assert temp_files(out) == []
    assert {p.name: record(p)["frames_sha256"] for p in outputs(out)} == sha  # re-renders are bit-identical


def test_from_reproduces_a_batch_item_bit_for_bit(tiny_wan, tmp_path, capsys):
    (tmp_path / "p.yaml").write_text("- a red cat runs on the beach\n- prompt: a blue dog\n  guidance: 3.5\n")
    res = run_inprocess(capsys, "batch", tmp_path / "p.yaml", "-o", tmp_path / "out", "--format", "png", "-q",
                        *tiny_args(tiny_wan, steps=3))
    assert res.code == 0, res.err
    folders = sorted(p for p in (tmp_path / "out").iterdir() if p.is_dir())
    assert len(folders) == 2
    for i, folder in enumerate(folders):
        gen = run_inprocess(capsys, "generate", "--from", folder / "run.json", "-o", tmp_path / f"gen{i}", "-q")
        assert gen.code == 0, gen.err
        batch_frames, _ = read_frames(folder)
        gen_frames, _ = read_frames(tmp_path / f"gen{i}")
        assert batch_frames.std() > 1
        np.testing.assert_array_equal(batch_frames, gen_frames)
    guidance = {json.loads((f / "run.json").read_text())["prompt"]: json.loads((f / "run.json").read_text())["guidance"]
                for f in folders}
    assert guidance["a blue dog"] == 3.5 and guidance["a red cat runs on the beach"] != 3.5


def test_a_failing_item_is_recorded_and_the_batch_goes_on(tiny_wan, tmp_path, capsys, monkeypatch):
    import torch

    from videogen import engine

    real_render, real_sample = engine.Engine.render, engine.sample
    poisoned = {"on": False}

    def render(self, spec, progress=None):
        if "oom" in spec.prompt:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        poisoned["on"] = "nan" in spec.prompt
        return real_render(self, spec, progress)

    def sample(plan, callback=None):
        out = real_sample(plan, callback)
        return out * float("nan") if poisoned["on"] else out

    monkeypatch.setattr(engine.Engine, "render", render)
    monkeypatch.setattr(engine, "sample", sample)
    (tmp_path / "p.jsonl").write_text('{"prompt": "a red cat"}\n'
                                      '{"prompt": "a cat oom"}\n{"prompt": "a nan cat"}\n{"prompt": "a blue dog"}\n')
    res = run_inprocess(capsys, "batch", tmp_path / "p.jsonl", "-o", tmp_path / "out", *tiny_args(tiny_wan))
    assert res.code == 1
    states = {line["index"]: line for line in manifest(tmp_path / "out")}
    assert [states[i]["state"] for i in range(4)] == ["done", "failed", "failed", "done"]
    assert states[1]["error"].startswith("out of memory")
    assert "NaN" in states[2]["error"]
    assert "2 of 4 item(s) failed" in res.err and "Traceback" not in res.err
    assert len(outputs(tmp_path / "out")) == 2 and temp_files(tmp_path / "out") == []


def test_outputs_of_another_plan_are_not_replaced_silently(tiny_wan, tmp_path, capsys):
    (tmp_path / "p.txt").write_text("a red cat\n")
    out = tmp_path / "out"
    base = ["batch", tmp_path / "p.txt", "-o", out, "--seed", "4", "-q", *tiny_args(tiny_wan)]
    assert run_inprocess(capsys, *base).code == 0
    [first] = outputs(out)
    # Another render of the line is another item, under another name: the first one is left alone.
    assert run_inprocess(capsys, *base, "--guidance", "2.5").code == 0
    [second] = [p for p in outputs(out) if p != first]
    assert record(first)["guidance"] != 2.5 and record(second)["guidance"] == 2.5
    # A file under an item's name that is not that item's render is refused, and replaced only with --overwrite.
    for suffix in ("", ".json"):
        shutil.copyfile(f"{first}{suffix}", f"{second}{suffix}")
    changed = run_inprocess(capsys, *base, "--guidance", "2.5")
    assert changed.code == 2 and "--overwrite" in changed.err and changed.err.count("\n") == 1
    assert run_inprocess(capsys, *base, "--guidance", "2.5", "--overwrite").code == 0
    assert record(second)["guidance"] == 2.5 and record(first)["guidance"] != 2.5


def test_second_interrupt_aborts_at_once(monkeypatch):
    from videogen.batch import run as batch

    class Aborted(Exception):
        pass

    def fake_exit(code):
        raise Aborted(code)

    monkeypatch.setattr(batch.os, "_exit", fake_exit)
    # what was installed before (a shell's background job starts with SIGINT ignored, not Python's default)
    before = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))
    with batch._two_stage_interrupt():
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
        with pytest.raises(Aborted):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before  # handlers restored


# -- real processes: signals ------------------------------------------------------------------------------------


def wait_for_stderr(proc: subprocess.Popen, text: bytes, timeout: float = 90) -> None:
    """Read the live progress on stderr (forced on by TTY_* variables) until `text` shows."""
    seen = b""
    deadline = time.monotonic() + timeout
    os.set_blocking(proc.stderr.fileno(), False)
    while text not in seen:
        assert time.monotonic() < deadline and proc.poll() is None, seen[-500:]
        chunk = proc.stderr.read() or b""
        seen += chunk
        time.sleep(0.01)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_generate_interrupted_mid_render_leaves_nothing(tiny_wan, tmp_path, sig):
    proc = spawn(["generate", "a red cat", *tiny_args(tiny_wan, steps=1000), "--seed", "1", "-o",
                  tmp_path / "v.mp4"], tmp_path, env={"TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "1"})
    wait_for_stderr(proc, b"denoising")
    proc.send_signal(sig)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert err.rstrip().endswith(b"interrupted")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_batch_sigint_records_the_item_and_resumes(tiny_wan, tmp_path, capsys, monkeypatch):
    (tmp_path / "p.txt").write_text("a red cat\na blue dog\n")
    args = ["batch", "p.txt", "-o", "out", *tiny_args(tiny_wan, steps=120)]
    proc = spawn(args, tmp_path)
    out = tmp_path / "out"
    deadline = time.monotonic() + 90
    while not manifest(out):  # the first item is done ...
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.005)
    time.sleep(manifest(out)[0]["timings"]["denoise"] * 0.3)  # ... and the second one is rendering
    proc.send_signal(signal.SIGINT)
    _stdout, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    lines = manifest(out)
    assert [(line["index"], line["state"]) for line in lines] == [(0, "done"), (1, "interrupted")]
    assert [p.name for p in outputs(out)] == [Path(lines[0]["output"]).name]
    assert temp_files(out) == []
    monkeypatch.chdir(tmp_path)
    res = run_inprocess(capsys, *args, "-q")
    assert res.code == 0
    assert [(line["index"], line["state"]) for line in manifest(out)] == [(0, "done"), (1, "done")]
    assert manifest(out)[0] == lines[0]  # the item done before keeps its line


# -- SIGKILL at random moments, then the same command until done ---------------------------------------------------


def fault_args(model: Path) -> list[str]:
    per_prompt = os.environ.get("VIDEOGEN_FAULT_SEEDS", "2")  # 3 prompts x 2 seeds: 6 items
    return ["batch", "p.txt", "-o", "out", "--seeds-per-prompt", per_prompt, "-q", *tiny_args(model, steps=6)]


def kill_and_rerun(model: Path, folder: Path, kills: int, rng: random.Random, capsys, monkeypatch) -> dict:
    """Run the batch, SIGKILL it `kills` times at random moments, then run it to the end.

    Returns how each kill was timed (a run that ended before its moment came is not a kill)."""
    (folder / "p.txt").write_text("a red cat\na blue dog\na green square moving left\n")
    args = fault_args(model)
    monkeypatch.chdir(folder)
    out = folder / "out"
    moments = []
    for _ in range(kills):
        before = len(manifest(out))
        proc = spawn(args, folder)
        mode = rng.choice(["delay", "temp-file", "manifest-line", "new-output"])
        deadline = time.monotonic() + (rng.uniform(0.5, 10.0) if mode == "delay" else 90)
        seen_outputs = set(outputs(out)) if out.exists() else set()
        while proc.poll() is None and time.monotonic() < deadline:
            if out.exists() and (
                    (mode == "temp-file" and temp_files(out))
                    or (mode == "manifest-line" and len(manifest(out)) > before)
                    or (mode == "new-output" and set(outputs(out)) - seen_outputs)):
                break
            time.sleep(0.002)
        if proc.poll() is not None:  # it finished before the moment came: not a kill
            moments.append(f"{mode}: finished first")
            continue
        proc.kill()
        proc.wait()
        moments.append(mode)
        time.sleep(0.2)  # let an orphaned ffmpeg finish writing its temp file, as it would in real life
    final = run_inprocess(capsys, *args)
    assert final.code == 0, final.err
    return {"moments": moments, "out": out}


def test_sigkill_at_random_moments_renders_every_item_exactly_once(tiny_wan, tmp_path, capsys, monkeypatch):
    kills = int(os.environ.get("VIDEOGEN_FAULT_KILLS", "4"))
    seed = int(os.environ.get("VIDEOGEN_FAULT_SEED", str(random.randrange(2**32))))
    (tmp_path / "ref").mkdir()
    (tmp_path / "faults").mkdir()
    # Reference: the same batch, never interrupted.
    monkeypatch.chdir(tmp_path / "ref")
    (tmp_path / "ref" / "p.txt").write_text("a red cat\na blue dog\na green square moving left\n")
    assert run_inprocess(capsys, *fault_args(tiny_wan)).code == 0
    reference = {p.name: (record(p)["frames_sha256"], read_frames(p)[0]) for p in outputs(tmp_path / "ref" / "out")}

    result = kill_and_rerun(tiny_wan, tmp_path / "faults", kills, random.Random(seed), capsys, monkeypatch)
    out = result["out"]
    lines = manifest(out)
    done = [line["index"] for line in lines if line["state"] == "done"]
    names = [p.name for p in outputs(out)]
    lost = [name for name in reference if name not in names]
    duplicated = sorted({i for i in done if done.count(i) > 1}) + [n for n in names if n not in reference]
    corrupt = [p.name for p in outputs(out) if p.name in reference and
               (record(p)["frames_sha256"] != reference[p.name][0]
                or not np.array_equal(read_frames(p)[0], reference[p.name][1]))]
    figures = {"seed": seed, "items": len(reference), "kills": sum(m in ("delay", "temp-file", "manifest-line", "new-output")
                                          for m in result["moments"]),
               "moments": result["moments"], "lost": lost, "duplicated": duplicated, "corrupt": corrupt}
    print("fault test:", json.dumps(figures))
    assert sorted(set(done)) == list(range(len(reference))), figures  # every item recorded done ...
    assert not lost and not duplicated and not corrupt, figures  # ... exactly once, intact, as without faults
    assert temp_files(out) == [], figures
    assert not list(out.glob("manifest.rank*"))


# -- two ranks (gloo on CPU) against one process ---------------------------------------------------------------


def test_two_gloo_ranks_give_the_same_files_as_one_process(tiny_wan, tmp_path, capsys, monkeypatch):
    (tmp_path / "p.txt").write_text(PROMPTS)
    common = ["batch", "p.txt", "--seeds-per-prompt", "2", "-q", *tiny_args(tiny_wan, steps=3)]
    monkeypatch.chdir(tmp_path)
    assert run_inprocess(capsys, *common, "-o", "one").code == 0
    torchrun = shutil.which("torchrun", path=str(EXE.parent))
    assert torchrun is not None
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([torchrun, "--standalone", "--nproc_per_node", "2", str(EXE), *common, "-o", "two"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    one, two = outputs(tmp_path / "one"), outputs(tmp_path / "two")
    assert [p.name for p in one] == [p.name for p in two] and len(one) == 6
    for a, b in zip(one, two, strict=True):
        assert record(a)["frames_sha256"] == record(b)["frames_sha256"]
        np.testing.assert_array_equal(read_frames(a)[0], read_frames(b)[0])
    lines = manifest(tmp_path / "two")
    assert sorted((line["index"], line["rank"]) for line in lines) == [(i, i % 2) for i in range(6)]
    assert {line["state"] for line in lines} == {"done"}
    assert not list((tmp_path / "two").glob("manifest.rank*"))
    assert sorted(proc.stdout.split()) == sorted(f"two/{p.name}" for p in two)


def test_dry_run_plans_without_rendering_and_a_second_batch_is_refused(tiny_wan, tmp_path, capsys):
    from videogen.batch import FolderLock

    (tmp_path / "p.txt").write_text("a red cat\na blue dog\n")
    args = ["batch", tmp_path / "p.txt", "-o", tmp_path / "out", "--seeds", "3..4", "-q", *tiny_args(tiny_wan)]
    plan = run_inprocess(capsys, *args, "--dry-run")
    assert plan.code == 0 and not (tmp_path / "out").exists()
    assert plan.out.count("todo") == 4 and re.search(r" a-blue-dog-s4-[0-9a-f]{10}\.mp4 ", plan.out)
    (tmp_path / "out").mkdir()
    lock = FolderLock(tmp_path / "out", 0)
    lock.acquire()  # another batch running on the same folder
    try:
        busy = run_inprocess(capsys, *args)
    finally:
        lock.release()
    assert busy.code == 2 and "another videogen batch is writing" in busy.err and busy.err.count("\n") == 1
    assert run_inprocess(capsys, *args).code == 0
    assert not list((tmp_path / "out").glob(".videogen-batch*")), "the finished batch left its lock file behind"
    assert run_inprocess(capsys, *args, "--dry-run").out.count("done") == 4


def test_shard_merge_is_idempotent(tmp_path):
    from videogen.batch import MANIFEST, Manifest, merge_shards, read_manifest

    for rank in (0, 1):
        m = Manifest(tmp_path / f"manifest.rank{rank}.jsonl", "run", rank)
        for i in range(rank, 6, 2):
            m.append({"index": i, "state": "done"})
        m.close()
    copies = {p.name: p.read_bytes() for p in tmp_path.glob("manifest.rank*")}
    merge_shards(tmp_path)
    assert not list(tmp_path.glob("manifest.rank*"))
    # Killed after the merged file was written but before the shards were removed: merging again adds nothing.
    for name, data in copies.items():
        (tmp_path / name).write_bytes(data)
    with open(tmp_path / MANIFEST, "a") as f:
        f.write('{"id": "torn')  # a line cut short by a kill is skipped, and the next append starts afresh
    merge_shards(tmp_path)
    lines = read_manifest(tmp_path / MANIFEST)
    assert sorted(line["index"] for line in lines) == list(range(6))
    m = Manifest(tmp_path / MANIFEST, "next", 0)
    m.append({"index": 9, "state": "done"})
    m.close()
    assert [line["index"] for line in read_manifest(tmp_path / MANIFEST)][-1] == 9
