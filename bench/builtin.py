"""The built-in model's default render, process start to MP4 written: the first generation (`builtin:mini-v1`)
and the second generation's folder, side by side, alternating, whole `videogen generate` processes on every core.

Until the second generation ships (`builtin:mini-v2`), its time is measured on the training recipe's own export of
freshly initialised weights (videogen.mini.train2.export): the architecture, the defaults and the file sizes are
the shipped ones, and weights do not change how long a render takes.

    python bench/builtin.py [--repeats 5] [--out BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT)]
BIN = Path(sys.executable).parent
PROMPTS = {"v1": "a red circle moving left on a black background",
           "v2": "a small red circle moving left quickly and a blue square growing on a black background"}


def random_v2(work: Path) -> Path:
    """The recipe's export of fresh weights: the folder layout, precision and defaults the trained model ships in."""
    import torch

    from videogen.mini import train2

    torch.manual_seed(0)
    vae = train2.new_vae()
    torch.save(vae.state_dict(), work / "vae.pt")
    torch.save(vae.state_dict(), work / f"{train2.DECODER_PHASE.name}.pt")
    torch.save((torch.zeros(1, 64, 1, 1, 1), torch.ones(1, 64, 1, 1, 1)), work / "latent_stats.pt")
    te, tr = train2.new_text_encoder(len(train2.build_tokenizer())), train2.new_transformer()
    torch.save({"ema": {"te": te.state_dict(), "tr": tr.state_dict()}, "step": 0}, work / "transformer.pt")
    train2.export(work, work / "model")
    return work / "model"


def wall(cmd: list[str]) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    t = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def folder_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*.safetensors")) / 2**20


def main() -> None:
    from videogen.loading import BUILTIN_FOLDERS, builtin_model_path

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=None, help="append the table to this Markdown file")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        shipped = "mini-v2" in BUILTIN_FOLDERS
        v2 = builtin_model_path("builtin:mini-v2") if shipped else random_v2(work)
        models = {"v1": ("builtin:mini-v1", builtin_model_path("builtin:mini-v1")), "v2": (str(v2), v2)}
        size = {k: folder_mb(folder) for k, (_, folder) in models.items()}
        times: dict[str, list[float]] = {k: [] for k in models}
        for i in range(args.repeats):
            for key, (ref, _) in models.items():
                out = work / f"{key}-{i}.mp4"
                times[key].append(wall([str(BIN / "videogen"), "generate", PROMPTS[key], "-m", ref, "--seed", str(i),
                                        "-q", "-o", str(out)]))
    med = {k: statistics.median(v) for k, v in times.items()}
    what = "builtin:mini-v2" if shipped else "second generation, untrained export"
    import platform

    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").is_file() else ""
    lines = [f"## Built-in model: default render, process start to MP4 ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
             f"{cpu}, {os.cpu_count()} cores, medians of {args.repeats} alternating runs)", "",
             "| model | defaults | safetensors (MB) | seconds | / v1 |", "|---|---|---|---|---|",
             f"| builtin:mini-v1 | 17 frames 32x32, 16 steps | {size['v1']:.1f} | {med['v1']:.2f} | 1.00 |",
             f"| {what} | 33 frames 128x128, 16 steps | {size['v2']:.1f} | {med['v2']:.2f} | "
             f"{med['v2'] / med['v1']:.2f} |"]
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    if args.out is not None:
        with args.out.open("a", encoding="utf-8") as f:
            f.write("\n" + text)


if __name__ == "__main__":
    main()
