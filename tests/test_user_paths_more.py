"""More of the user's paths, walked from a shell: `videogen` in a subprocess, configured only by environment
variables and files (see test_user_paths.py). Each of these failed before its fix."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
from cli_helpers import one_error_line, run_cli, user_env
from PIL import Image

PROMPT = "a red circle moving left on a black background"
BUILTIN = Path(__file__).resolve().parents[1] / "videogen" / "mini" / "model"
TYPER = re.compile(r"^import time:.*\|\s*typer\s*$")  # PYTHONPROFILEIMPORTTIME's line for the typer package


def snapshot(folder: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None for p in folder.rglob("*")}


def test_batch_never_replaces_the_users_own_page_manifest_or_thumbs(tmp_path):
    """The batch writes index.html, thumbs/ and manifest.jsonl into its folder. Where those names hold the
    user's own things, the batch is refused before loading (it used to replace index.html, or fail every item
    after rendering it when `thumbs` was a file)."""
    env = user_env(tmp_path)
    (tmp_path / "p.txt").write_text(PROMPT + "\n")
    cases = {"index.html": ("<h1>my page</h1>\n", "is not a videogen batch page"),
             "manifest.jsonl": ('{"my": "notes"}\n', "holds lines that are not a videogen batch's"),
             "thumbs": ("a file, not a folder\n", "is a file, where the batch keeps its posters")}
    for name, (content, message) in cases.items():
        folder = tmp_path / f"site-{name}"
        folder.mkdir()
        (folder / name).write_text(content)
        (folder / "notes.txt").write_text("mine\n")
        before = snapshot(folder)
        for extra in ([], ["--dry-run"]) if name == "index.html" else ([],):
            r = run_cli("batch", "p.txt", "-o", folder, "--steps", "1", "-q", *extra, cwd=tmp_path, env=env,
                        timeout=300)
            line = one_error_line(r)
            assert str(folder / name) in line and message in line, line
            assert snapshot(folder) == before  # nothing rendered, nothing changed
    # --overwrite lets the batch rewrite a page of the user's; a folder of the wrong kind stays refused.
    r = run_cli("batch", "p.txt", "-o", tmp_path / "site-thumbs", "--overwrite", "--dry-run", cwd=tmp_path, env=env)
    assert "is a file, where the batch keeps its posters" in one_error_line(r)
    r = run_cli("batch", "p.txt", "-o", tmp_path / "site-index.html", "--overwrite", "--dry-run", cwd=tmp_path,
                env=env)
    assert r.code == 0, r.err


def test_preset_with_a_key_given_twice_is_refused_naming_file_and_line(tmp_path):
    env = user_env(tmp_path)
    (tmp_path / "p.yaml").write_text("steps: 3\nguidance: 2.0\nsteps: 4\n")
    r = run_cli("generate", PROMPT, "-p", "p.yaml", "-o", "x.mp4", cwd=tmp_path, env=env)
    line = one_error_line(r)
    assert "p.yaml" in line and "line 3" in line and "duplicate key 'steps'" in line, line
    assert not (tmp_path / "x.mp4").exists()
    (tmp_path / "p.yaml").write_text("steps: 3\nguidance: 2.0\n")  # the same preset without the repeat is fine
    (tmp_path / "p.txt").write_text(PROMPT + "\n")
    r = run_cli("batch", "p.txt", "-p", "p.yaml", "--dry-run", cwd=tmp_path, env=env)
    assert r.code == 0 and " 3 " in r.out.splitlines()[2], r.out + r.err


def test_prompt_file_paths_are_relative_to_the_file_from_any_folder(tmp_path):
    """A prompt file's input clip and model folder are found beside the file, as its images always were (the
    clip used to be looked for in the current folder)."""
    env = user_env(tmp_path)
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    for i in range(17):  # the built-in model's frames and size
        Image.fromarray(np.full((32, 32, 3), 15 * i, np.uint8)).save(project / "src" / f"frame_{i:05d}.png")
    shutil.copytree(BUILTIN, project / "mymodel")
    (project / "p.jsonl").write_text(
        json.dumps({"prompt": PROMPT, "video": "src", "strength": 0.5}) + "\n"
        + json.dumps({"prompt": PROMPT, "model": "mymodel", "seed": 3}) + "\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # The dry run reads the clip (its frames and size set the render's) and the model's configs, as a run does.
    r = run_cli("batch", "../project/p.jsonl", "--dry-run", "-o", "out", cwd=elsewhere, env=env)
    assert r.code == 0, r.err
    assert "2 item(s)" in r.out and "../project/mymodel" in r.out, r.out
    (project / "src" / "frame_00016.png").unlink()  # and it is that clip: 16 frames are refused by name
    r = run_cli("batch", "../project/p.jsonl", "--dry-run", "-o", "out", cwd=elsewhere, env=env)
    assert "p.jsonl:1: " in one_error_line(r) and "16" in r.err, r.err


def test_ctrl_c_while_the_command_starts_is_interrupted_not_a_traceback(tmp_path):
    """Ctrl-C in the first tenths of a second (the command still importing) printed a Python traceback."""
    exe = Path(sys.executable).with_name("videogen")
    env = {**os.environ, **user_env(tmp_path), "PYTHONPROFILEIMPORTTIME": "1"}
    proc = subprocess.Popen([str(exe), "batch", "p.txt", "--dry-run"], cwd=tmp_path, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:  # an import line is written as each module finishes: typer loads first
        seen.append(line)
        if TYPER.search(line):
            proc.send_signal(signal.SIGINT)
            break
    rest = proc.stderr.read()
    proc.wait(timeout=60)
    errors = [line for line in rest.splitlines() if not line.startswith("import time:")]
    assert any(TYPER.search(line) for line in seen)
    assert proc.returncode == 130 and errors == ["interrupted"], (proc.returncode, errors[-8:])
