"""`make bench`: videogen against diffusers on a CPU, side by side, on the same weights and settings.

Every measurement is repeated; the table gives medians and ratios (videogen / reference: below 1 is faster) and
is appended to BENCHMARKS.md with the machine named. Models: a small random Wan (always) and the built-in model
(when it has been exported to videogen/mini/model/). The GPU benchmark is bench/gpu.py.

    python bench/run.py [--repeats 3] [--threads 1] [--prompts 16] [--no-cli-loop] [--out BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BIN = Path(sys.executable).parent
sys.path.insert(0, str(HERE))

# Prompts from the words the small model's tokenizer knows (tests/tiny.py) and from the built-in model's world.
SMALL_PROMPTS = [f"a {c} {a} {m} on the {p}" for c in ("red", "green", "blue", "black")
                 for a, m, p in (("cat", "runs", "beach"), ("dog", "moving left", "sky"),
                                 ("circle", "moving up", "background"), ("square", "moving down", "beach"))]
BUILTIN_PROMPTS = [f"a {c} {s} moving {d} on a {b} background" for c in ("red", "green", "blue", "white")
                   for s, d, b in (("circle", "left", "black"), ("square", "right", "gray"),
                                   ("circle", "up", "black"), ("square", "down", "black"))]


def machine(threads: int) -> str:
    name = platform.processor() or "unknown CPU"
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                name = line.split(":", 1)[1].strip()
    except OSError:
        pass
    import torch

    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"{name}, {os.cpu_count()} cores, torch {torch.__version__}, {threads} torch thread(s); "
            f"load average at start {load}")


def child_env(threads: int) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
            "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONWARNINGS": "ignore"}


def wall(cmd: list[str], env: dict[str, str], cwd: Path | None = None) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    took = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"bench: {' '.join(cmd[:4])} ... failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return took


def child_json(args: list[str], env: dict[str, str]) -> Any:
    proc = subprocess.run([sys.executable, str(HERE / "sidebyside.py"), *args], env=env, capture_output=True,
                          text=True)
    if proc.returncode != 0:
        raise SystemExit(f"bench: sidebyside {args[0]} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def startup(repeats: int, env: dict[str, str]) -> dict[str, float]:
    cmds = {
        "`videogen --help`": [str(BIN / "videogen"), "--help"],
        "`diffusers-cli run --help`": [str(BIN / "diffusers-cli"), "run", "--help"],
        "`import videogen.cli.main` (what --help loads)": [sys.executable, "-c", "import videogen.cli.main"],
        "`import videogen.engine` (torch, diffusers, transformers)": [sys.executable, "-c", "import videogen.engine"],
    }
    out = {k: statistics.median(wall(c, env) for _ in range(repeats)) for k, c in cmds.items()}
    # What a user gets: the built-in model with its defaults, every core (no thread override), a new MP4 each time.
    user_env = {k: v for k, v in env.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    with tempfile.TemporaryDirectory() as tmp:
        took = [wall([str(BIN / "videogen"), "generate", BUILTIN_PROMPTS[0], "--seed", str(i), "-q",
                      "-o", str(Path(tmp) / f"{i}.mp4")], user_env) for i in range(repeats)]
    out[f"`videogen generate \"{BUILTIN_PROMPTS[0]}\"` (built-in model, defaults, all cores): "
        "process start to MP4 written"] = statistics.median(took)
    return out


PLAN_LINES = 10_000


def wall_and_cpu(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Seconds of wall time and of CPU (user + system) of one child process: on a machine shared with other work
    the CPU time is the steadier of the two."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    took = wall(cmd, env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return took, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def plan(repeats: int, env: dict[str, str]) -> dict[str, float]:
    """Planning a 10,000-line prompt file (`batch --dry-run`: parse, seeds, names, checks before loading, what is
    done), with the built-in model and with a preset, against a process that only reads the same file: the ratio
    is what planning costs over reading."""
    with tempfile.TemporaryDirectory() as tmp:
        prompts = Path(tmp) / "prompts.txt"
        prompts.write_text("".join(f"{BUILTIN_PROMPTS[i % len(BUILTIN_PROMPTS)]}, take {i}\n"
                                   for i in range(PLAN_LINES)))
        preset = Path(tmp) / "preset.yaml"
        preset.write_text("steps: 8\nguidance: 3.0\nfps: 12\n")
        out = str(Path(tmp) / "out")
        cmds = {"read": [sys.executable, "-c", f"open({str(prompts)!r}, encoding='utf-8').read().split(chr(10))"],
                "dry": [str(BIN / "videogen"), "batch", str(prompts), "--dry-run", "-o", out],
                "preset": [str(BIN / "videogen"), "batch", str(prompts), "--dry-run", "-p", str(preset), "-o", out]}
        times: dict[str, list[tuple[float, float]]] = {k: [] for k in cmds}
        for _ in range(repeats):  # alternating, so load hits every side alike
            for k, cmd in cmds.items():
                times[k].append(wall_and_cpu(cmd, env))
    wall_s = {k: statistics.median(w for w, _ in v) for k, v in times.items()}
    cpu_s = {k: statistics.median(c for _, c in v) for k, v in times.items()}
    name = f"`videogen batch prompts.txt --dry-run` ({PLAN_LINES:,} lines"
    return {f"{name}, built-in model), wall": wall_s["dry"], f"{name}, built-in model), CPU": cpu_s["dry"],
            f"{name}, `-p preset.yaml`), wall": wall_s["preset"], f"{name}, `-p preset.yaml`), CPU": cpu_s["preset"],
            "a Python process that only reads the same file, wall": wall_s["read"],
            "a Python process that only reads the same file, CPU": cpu_s["read"],
            "ratio (dry run / reading), wall": wall_s["dry"] / wall_s["read"],
            "ratio (dry run with the preset / reading), wall": wall_s["preset"] / wall_s["read"],
            "ratio (dry run / reading), CPU": cpu_s["dry"] / cpu_s["read"]}


def max_tokens(model: Path) -> int:
    cfg = json.loads((model / "tokenizer" / "tokenizer_config.json").read_text())
    return min(int(cfg.get("model_max_length", 512)), 512)


def render(model: Path, settings: dict[str, Any], repeats: int, threads: int, env: dict[str, str],
           compile_too: bool) -> dict:
    s = dict(settings, max_sequence_length=max_tokens(model), threads=threads)
    timing = child_json(["time", str(model), json.dumps(s | {"repeats": repeats, "compile": compile_too})], env)
    rss = {side: statistics.median(child_json([side, str(model), json.dumps(s)], env) for _ in range(2))
           for side in ("videogen", "pipeline")}
    return {"timing": timing, "rss_mib": rss, "settings": s}


def batch(model: Path, settings: dict[str, Any], prompts: list[str], cli_loop: bool, repeats: int,
          env: dict[str, str]) -> dict:
    """Videos per minute of whole processes, each writing one MP4 per prompt. The one-process sides alternate
    `repeats` times (median); the shell loop of diffusers-cli, by far the slowest, runs once."""
    s = dict(settings, max_sequence_length=max_tokens(model))
    runs: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="videogen-bench-") as tmp:
        work = Path(tmp)
        (work / "prompts.txt").write_text("\n".join(prompts) + "\n")
        if "batch" in subprocess.run([str(BIN / "videogen"), "--help"], capture_output=True, text=True,
                                     env=env).stdout:
            runs["`videogen batch` (one process)"] = lambda i: wall([
                str(BIN / "videogen"), "batch", "prompts.txt", "-m", str(model), "--frames", str(s["frames"]),
                "--height", str(s["height"]), "--width", str(s["width"]), "--steps", str(s["steps"]),
                "--guidance", str(s["guidance"]), "--seed", str(s["seed"]), "-n", s["negative_prompt"],
                "--max-sequence-length", str(s["max_sequence_length"]), "--device", "cpu", "--dtype", "float32",
                "-o", f"videogen-out-{i}", "-q"], env, cwd=work)
        else:
            print("bench: `videogen batch` is not available in this build; skipped", file=sys.stderr)
        loop = f"""
import json, sys, torch
from diffusers import WanPipeline
from diffusers.utils import export_to_video
sys.path.insert(0, {str(HERE)!r})
from sidebyside import pipeline_call
s = json.loads({json.dumps(json.dumps(s))})
pipe = WanPipeline.from_pretrained({str(model)!r}, torch_dtype=torch.float32).to("cpu")
pipe.set_progress_bar_config(disable=True)
for i, line in enumerate(open("prompts.txt").read().splitlines()):
    export_to_video(list(pipeline_call(pipe, dict(s, prompt=line))), f"loop-{{sys.argv[1]}}-{{i}}.mp4", fps=16)
"""
        runs["Python loop over one loaded `WanPipeline`"] = lambda i: wall(
            [sys.executable, "-c", loop, str(i)], env, cwd=work)
        times: dict[str, list[float]] = {k: [] for k in runs}
        for i in range(repeats):
            for k, fn in runs.items():
                times[k].append(fn(i))
        if cli_loop:
            kwargs = {"negative_prompt": s["negative_prompt"], "num_frames": s["frames"], "height": s["height"],
                      "width": s["width"], "num_inference_steps": s["steps"], "guidance_scale": s["guidance"],
                      "max_sequence_length": s["max_sequence_length"]}
            for i, prompt in enumerate(prompts):
                (work / f"kw-{i}.json").write_text(json.dumps({"prompt": prompt, **kwargs}))
            script = (f'for i in $(seq 0 {len(prompts) - 1}); do "{BIN / "diffusers-cli"}" run -m "{model}" '
                      f'--dtype fp32 --device-map cpu --seed {s["seed"]} --pipeline-kwargs "$(cat kw-$i.json)" '
                      f'-o "cli-$i.mp4" >/dev/null 2>&1 || exit 1; done')
            times["shell loop of `diffusers-cli run` per prompt"] = [wall(["bash", "-c", script], env, cwd=work)]
    out = {k: statistics.median(v) for k, v in times.items()}
    return {k: len(prompts) / v * 60 for k, v in out.items()} | {"_seconds": out, "_repeats": repeats,
                                                                  "_settings": s}


def fmt(x: float, digits: int = 3) -> str:
    return f"{x:.{digits}g}" if x < 100 else f"{x:.0f}"


def report(args: argparse.Namespace, info: str, start: dict, renders: dict, batches: dict, notes: list[str],
           planning: dict | None = None) -> str:
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"## CPU benchmark, {now}", "", f"Machine: {info}.", "",
             f"Command: `python bench/run.py --repeats {args.repeats} --threads {args.threads} "
             f"--prompts {args.prompts} --batch-repeats {args.batch_repeats}{'' if args.cli_loop else ' --no-cli-loop'}"
             f"{'' if args.compile else ' --no-compile'}{f' --model {args.model}' if args.model else ''}"
             f"{''.join(f' --only {o}' for o in args.only or [])}` (`make bench` runs it with no options). "
             "Medians of the repeats; ratio = videogen / reference (below 1: videogen is faster or smaller).", ""]
    lines += [*notes, ""] if notes else []
    for name, r in renders.items():
        m, s = r["timing"]["medians"], r["settings"]
        ref = m["WanPipeline"]
        lines += [f"### Render: {name} ({s['frames']} frames, {s['width']}x{s['height']}, {s['steps']} steps, "
                  f"guidance {s['guidance']}, float32)", "",
                  "| | s / render | s / step | ratio render | ratio step |", "|---|---|---|---|---|"]
        for side, v in m.items():
            lines.append(f"| {side} | {fmt(v['render'])} | {fmt(v['step'])} | {v['render'] / ref['render']:.2f} "
                         f"| {v['step'] / ref['step']:.2f} |")
        rss = r["rss_mib"]
        warm = r["timing"].get("warmup_s", {})
        if "videogen --compile" in warm:
            lines += ["", f"`--compile`: the first render (inductor compiling the repeated blocks) took "
                          f"{warm['videogen --compile']:.0f} s, once per process; the row above is after it."]
        drift = r["timing"].get("max_abs_diff_vs_videogen", {})
        if drift:
            lines += ["", "Max abs difference of the frames against plain videogen: "
                      + ", ".join(f"{k.removeprefix('videogen ')} {v:.2g}" for k, v in drift.items()) + "."]
        lines += ["", f"Peak RSS (fresh process, load + one render): videogen {rss['videogen']:.0f} MiB, "
                      f"WanPipeline {rss['pipeline']:.0f} MiB (ratio {rss['videogen'] / rss['pipeline']:.2f}). "
                      f"Max abs difference of the frames, videogen vs WanPipeline: "
                      f"{r['timing']['max_abs_diff_vs_pipeline']:.2g}.", ""]
    for name, b in batches.items():
        secs = b["_seconds"]
        ref = b.get("shell loop of `diffusers-cli run` per prompt")
        bs = b["_settings"]
        lines += [f"### Batch of {args.prompts} prompts: {name} ({bs['frames']} frames, {bs['width']}x{bs['height']}, "
                  f"{bs['steps']} steps; whole processes, one MP4 per prompt; medians of {b['_repeats']} alternating "
                  "runs, the diffusers-cli loop once)", "",
                  "| | seconds | videos / minute | throughput vs `diffusers-cli` loop |", "|---|---|---|---|"]
        for k, v in secs.items():
            rel = f"{b[k] / ref:.1f}x" if ref else "n/a (diffusers-cli cannot run this model)"
            lines.append(f"| {k} | {v:.1f} | {b[k]:.1f} | {rel} |")
        lines.append("")
    if start:
        lines += ["### Start-up (medians of 5)", "", "| | seconds |", "|---|---|"]
        lines += [f"| {k} | {v:.2f} |" for k, v in start.items()]
    if planning:
        lines += ["", f"### Planning a batch (medians of {args.repeats}, whole processes)", "", "| | seconds |",
                  "|---|---|"]
        lines += [f"| {k} | {v:.2f}{'x' if k.startswith('ratio') else ''} |" for k, v in planning.items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads for every side (1 keeps timings stable on a shared machine)")
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--no-cli-loop", dest="cli_loop", action="store_false",
                    help="skip the (slow) shell loop of diffusers-cli runs")
    ap.add_argument("--batch-repeats", type=int, default=2)
    ap.add_argument("--model", help="only the models whose name contains this (tiny, small, built-in)")
    ap.add_argument("--no-compile", dest="compile", action="store_false",
                    help="skip the videogen --compile row (inductor compiles for about a minute on 2 cores)")
    ap.add_argument("--only", choices=["startup", "render", "batch", "plan"], action="append")
    ap.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    args = ap.parse_args()
    only = set(args.only or ["startup", "render", "batch", "plan"])
    from models import builtin_model, save_small_wan, save_tiny

    env = child_env(args.threads)
    info = machine(args.threads)
    print(f"bench: {info}", file=sys.stderr)
    notes = ["The machine's cores were shared with a background training job and other work during the run (load "
             "average above); every comparison alternates its sides within one run so load hits each alike, but "
             "treat differences under about 10% as noise."]
    cache = Path(os.environ.get("VIDEOGEN_BENCH_CACHE", Path(tempfile.gettempdir()) / "videogen-bench"))
    small = save_small_wan(cache / "small-wan")
    tiny = save_tiny(cache / "tiny-wan")
    models = {
        "tiny random Wan 2.1 (tests/tiny.py)": (tiny, SMALL_PROMPTS, dict(
            prompt=SMALL_PROMPTS[0], negative_prompt="gray", frames=17, height=32, width=32, steps=16,
            guidance=5.0, seed=1)),
        "small random Wan 2.1 (4 blocks, width 128)": (small, SMALL_PROMPTS, dict(
            prompt=SMALL_PROMPTS[0], negative_prompt="gray", frames=17, height=128, width=128, steps=20,
            guidance=5.0, seed=1)),
    }
    builtin = builtin_model()
    if builtin is not None:
        models["built-in model (`builtin:mini`)"] = (builtin, BUILTIN_PROMPTS, dict(
            prompt=BUILTIN_PROMPTS[0], negative_prompt="", frames=17, height=32, width=32, steps=16, guidance=5.0,
            seed=1))
    else:
        notes.append("The built-in model was not exported yet (videogen/mini/model/ missing): not measured.")
        print("bench: " + notes[-1], file=sys.stderr)
    start = startup(5, env) if "startup" in only else {}
    planning = plan(args.repeats, env) if "plan" in only else None
    renders, batches = {}, {}
    for name, (path, prompts, settings) in models.items():
        if args.model and args.model not in name:
            continue
        if "render" in only:
            print(f"bench: render side by side, {name}", file=sys.stderr)
            renders[name] = render(path, settings, args.repeats, args.threads, env, args.compile)
        if "batch" in only:
            print(f"bench: batch of {args.prompts}, {name}", file=sys.stderr)
            # diffusers-cli cannot decode the built-in model's image VAE (WanPipeline decodes 5-D latents)
            cli_loop = args.cli_loop and path != builtin
            batches[name] = batch(path, settings, (prompts * 4)[:args.prompts], cli_loop, args.batch_repeats, env)
    text = report(args, info, start, renders, batches, notes, planning)
    sys.stdout.write(text)
    with args.out.open("a", encoding="utf-8") as f:
        if f.tell() == 0:
            f.write("# Benchmarks\n\nAppended by `make bench` (bench/run.py, CPU) and bench/gpu.py (GPU).\n\n")
        f.write(text + "\n")


if __name__ == "__main__":
    main()
