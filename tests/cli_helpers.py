"""Run the real `videogen` entry point, in-process (fast) or as a subprocess (the real thing)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Run:
    code: int
    out: str
    err: str


def exit_code_of_main(*args: str) -> int:
    """Run the entry point in this process with `args` and return its exit code."""
    from videogen.cli.main import main

    old = sys.argv
    sys.argv = ["videogen", *map(str, args)]
    try:
        main()
        return 0
    except SystemExit as e:
        return int(e.code or 0)
    finally:
        sys.argv = old


def run_inprocess(capsys, *args: str) -> Run:
    code = exit_code_of_main(*args)
    cap = capsys.readouterr()
    return Run(code, cap.out, cap.err)


def run_here(*args: str) -> Run:
    """The entry point in this process, stderr captured: for a test's control run (e.g. that a folder fails at
    loading), not for the behaviour a test is about, which goes through `run_cli`."""
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = exit_code_of_main(*args)
    return Run(code, "", err.getvalue())


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 120,
            input: str | None = None) -> Run:
    exe = Path(sys.executable).with_name("videogen")
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, cwd=cwd, env=full_env,
                          timeout=timeout, input=input if input is not None else "")
    return Run(proc.returncode, proc.stdout, proc.stderr)


def user_env(root: Path) -> dict[str, str]:
    """A user's environment: their own home, config folder and Hugging Face cache (offline), nothing else."""
    home = root / "home"
    home.mkdir(parents=True, exist_ok=True)
    return {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), "HF_HOME": str(root / "hf"),
            "HF_HUB_OFFLINE": "1"}


def one_error_line(r: Run, code: int = 2) -> str:
    """The single `error:` line of a refused command (and that it was refused cleanly)."""
    lines = r.err.strip().splitlines()
    assert r.code == code, (r.code, r.err)
    assert len(lines) == 1 and lines[0].startswith("error: "), r.err
    assert "Traceback" not in r.err
    return lines[0]


def files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")} if folder.exists() else set()
