"""`videogen doctor`: what this machine can render with, and each problem with what to do about it."""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

ENCODERS = ("libx264", "libvpx-vp9", "aac", "libopus")
ATTENTION = {"flash": "flash_attn", "flash3": "flash_attn_interface", "sage": "sageattention", "xformers": "xformers"}
LOW_DISK = 5 * 10**9  # a real model's renders and downloads need more than this


def doctor(as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON on stdout.")] = False,
           ) -> None:
    """Python, torch, GPUs, ffmpeg, attention backends, the Hugging Face cache and disk: what is missing and how to fix it."""
    problems: list[dict[str, str]] = []
    report: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform()}
    report.update(_torch(problems))
    report["ffmpeg"] = _ffmpeg(problems)
    report["attention"] = _attention()
    report["hf_cache"] = _cache(problems)
    report["output_disk"] = _disk(problems)
    report["problems"] = problems
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    else:
        sys.stdout.write(_text(report))


def _problem(problems: list[dict[str, str]], what: str, fix: str) -> None:
    problems.append({"problem": what, "fix": fix})


def _torch(problems: list[dict[str, str]]) -> dict[str, Any]:
    try:
        import torch
    except ImportError as e:
        _problem(problems, f"torch cannot be imported ({e})", "pip install torch")
        return {"torch": None, "cuda": None, "gpus": []}
    gpus = []
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            free, total = torch.cuda.mem_get_info(i)
            cap = (props.major, props.minor)
            gpus.append({"index": i, "name": props.name, "capability": f"{cap[0]}.{cap[1]}",
                         "memory_total_gb": round(total / 2**30, 2), "memory_free_gb": round(free / 2**30, 2),
                         "bf16": cap >= (8, 0), "fp8": cap >= (8, 9)})
    else:
        _problem(problems, "no CUDA GPU is visible to torch: renders of real models run on the CPU (very slow)",
                 "on a machine with an NVIDIA GPU, install a CUDA build of torch (https://pytorch.org/get-started)")
    return {"torch": torch.__version__, "cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available(),
            "gpus": gpus}


def _ffmpeg(problems: list[dict[str, str]]) -> dict[str, Any]:
    try:
        import imageio_ffmpeg

        exe = imageio_ffmpeg.get_ffmpeg_exe()
        listing = subprocess.run([exe, "-hide_banner", "-encoders"], capture_output=True, text=True, timeout=30).stdout
    except (ImportError, RuntimeError, OSError, subprocess.SubprocessError) as e:
        _problem(problems, f"no ffmpeg ({type(e).__name__}): only PNG frames can be written",
                 "pip install imageio-ffmpeg")
        return {"path": None, "encoders": {}}
    names = {line.split()[1] for line in listing.splitlines() if len(line.split()) > 1 and len(line.split()[0]) == 6}
    encoders = {e: e in names for e in ENCODERS}
    for e, ok in encoders.items():
        if not ok:
            _problem(problems, f"ffmpeg ({exe}) has no {e} encoder", "pip install --force-reinstall imageio-ffmpeg")
    return {"path": exe, "encoders": encoders}


def _attention() -> dict[str, bool]:
    found = {"sdpa": importlib.util.find_spec("torch") is not None}
    for name, module in ATTENTION.items():
        try:
            found[name] = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found[name] = False
    return found


def _cache(problems: list[dict[str, str]]) -> dict[str, Any]:
    from videogen import hub, presets
    from videogen.errors import UserError
    from videogen.loading import HUB_ID, check_model_folder

    root = hub.cache_dir()
    size = 0
    for folder, _dirs, files in os.walk(root):
        size += sum(os.lstat(os.path.join(folder, f)).st_size for f in files)
    models: dict[str, dict[str, Any]] = {}
    for name, path in sorted(presets.all_presets().items()):
        try:
            p = presets.parse_preset(path, name)
        except UserError as e:
            _problem(problems, f"preset {name}: {e}", f"fix or remove {path}")
            continue
        repo = p.model
        if not repo or not HUB_ID.match(repo) or Path(repo).expanduser().exists():
            continue
        if repo in models:  # presets sharing one model
            models[repo]["presets"].append(name)
            continue
        entry: dict[str, Any] = {"presets": [name], "cached": False, "complete": False}
        models[repo] = entry
        if not hub.repo_folder(repo).is_dir():
            continue
        entry["cached"] = True
        revision, variant = p.values.get("revision"), p.values.get("variant")
        try:
            snap, _commit = hub.cached_snapshot(repo, revision)
            check_model_folder(snap, variant, hub.download_hint(repo, revision))
            entry["complete"] = True
        except UserError as e:
            entry["problem"] = str(e)
            _problem(problems, f"cached model {repo} is incomplete: {e}", hub.download_hint(repo, revision))
    return {"path": str(root), "exists": root.is_dir(), "size_bytes": size, "size_gb": round(size / 1e9, 3), "models": models}


def _disk(problems: list[dict[str, str]]) -> dict[str, Any]:
    from videogen.hub import free_space

    where = Path.cwd() / "outputs"
    free = free_space(where)
    if free < LOW_DISK:
        _problem(problems, f"only {free / 1e9:.1f} GB free where outputs go ({where})",
                 "free some space or write elsewhere with -o")
    return {"path": str(where), "free_gb": round(free / 1e9, 2)}


def _text(r: dict[str, Any]) -> str:
    yes = {True: "yes", False: "no"}
    lines = [f"python     {r['python']} ({r['platform']})",
             f"torch      {r['torch']}  CUDA {r['cuda'] or 'none'}"]
    for g in r["gpus"]:
        lines.append(f"gpu {g['index']}      {g['name']} (sm {g['capability']}): {g['memory_free_gb']:.1f} of "
                     f"{g['memory_total_gb']:.1f} GiB free, bf16 {yes[g['bf16']]}, fp8 {yes[g['fp8']]}")
    if not r["gpus"]:
        lines.append("gpu        none")
    ff = r["ffmpeg"]
    enc = ", ".join(f"{e} {yes[ok]}" for e, ok in ff["encoders"].items())
    lines.append(f"ffmpeg     {ff['path'] or 'not found'}" + (f"  ({enc})" if enc else ""))
    lines.append("attention  " + ", ".join(f"{k} {yes[v]}" for k, v in r["attention"].items()))
    c = r["hf_cache"]
    lines.append(f"hf cache   {c['path']} ({c['size_gb']:.2f} GB)")
    for repo, m in c["models"].items():  # the state first: repo ids run from 15 to 70 characters
        state = "complete" if m["complete"] else ("incomplete" if m["cached"] else "not cached")
        lines.append(f"  {state:<11} {repo}  ({', '.join(m['presets'])})")
    d = r["output_disk"]
    lines.append(f"outputs    {d['path']}: {d['free_gb']:.1f} GB free")
    if r["problems"]:
        lines.append("problems:")
        lines += [f"  - {p['problem']}\n    fix: {p['fix']}" for p in r["problems"]]
    else:
        lines.append("no problems found")
    return "\n".join(lines) + "\n"
