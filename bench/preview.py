"""What --preview costs, as a fraction of a denoising step, on a CPU with small models.

For each model and size: the median time of a step without a preview, and the preview's own time per step
(x0 to RGB by the factors, grid, PNG written atomically), measured inside the same renders. The ratio is the
second over the first. A last table times the preview alone at the latent sizes of real models (random
latents), where a transformer step takes seconds even on a GPU.

    python bench/preview.py [--repeats 3] [--threads 2] [--out BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

# (label, frames, height, width, steps)
SMALL_SIZES = [("17x128x128", 17, 128, 128, 4), ("33x192x192", 33, 192, 192, 3)]
# (model, channels, latent frames, latent h, latent w, factors key)
REAL_LATENTS = [("Wan 2.1 480p, 81 frames", 16, 21, 60, 104, ("wan", 16)),
                ("Wan 2.1 720p, 81 frames", 16, 21, 90, 160, ("wan", 16)),
                ("Wan 2.2 TI2V-5B 704p, 121 frames", 48, 31, 44, 80, ("wan", 48)),
                ("LTX-Video 704x480, 121 frames", 128, 16, 15, 22, ("ltx", 128))]


def measure(model: str, frames: int, height: int, width: int, steps: int, repeats: int,
            guidance: float | None = None, batch_cfg: bool = False) -> dict[str, float]:
    from videogen.engine import Engine
    from videogen.preview import Preview, factors_for
    from videogen.spec import RenderSpec

    spec = RenderSpec(prompt="a red circle moving left on a black background", model=model, frames=frames,
                      height=height, width=width, steps=steps, guidance=guidance, seed=0, device="cpu",
                      dtype="float32", batch_cfg=batch_cfg)
    engine = Engine.load(spec)
    spec = engine.resolve(spec)
    factors = factors_for(engine.info)
    plain, watched, share = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeats):
            plain.append(engine.render(spec).record["timings"]["per_step"])
            writer = Preview(Path(tmp) / "p.png", factors, engine.model, spec)
            result = engine.render(spec, on_step=lambda i, n, _latents, x0, w=writer: w(i, n, x0))
            watched.append(result.record["timings"]["per_step"])
            share.append(writer.seconds / writer.steps)
    step = statistics.median(plain)
    cost = statistics.median(share)
    return {"step_s": step, "preview_s": cost, "ratio": cost / step, "steps": steps,
            "watched_step_s": statistics.median(watched)}


def preview_alone(channels: int, frames: int, h: int, w: int, key: tuple[str, int], repeats: int) -> float:
    import torch

    from videogen import preview as pv
    from videogen.preview_factors import COMFY_FACTORS

    name, matrix, bias = COMFY_FACTORS[key]
    factors = pv.RgbFactors(matrix, bias, name)
    x0 = torch.randn(channels, frames, h, w)
    took = []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeats):
            start = time.perf_counter()
            rgb = factors.apply(x0)
            image = pv.grid(pv.upscale(rgb, pv.tile_scale(h, w)), pv.grid_shape(frames)[1])
            pv.write_png(image, Path(tmp) / "p.png")
            took.append(time.perf_counter() - start)
    return statistics.median(took)


def row(lines: list[str], model: str, size: str, m: dict[str, float]) -> None:
    lines.append(f"| {model} | {size} | {m['step_s']:.3f} | {m['preview_s'] * 1000:.2f} | {m['ratio']:.2%} |")
    print(lines[-1], flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None, help="append the tables to this Markdown file")
    args = ap.parse_args()
    import torch
    from models import builtin_model, save_small_wan

    torch.set_num_threads(args.threads)
    lines = ["## --preview: cost per denoising step (CPU)", "",
             f"torch {torch.__version__}, {args.threads} thread(s), median of {args.repeats}", "",
             "| model | size (frames x h x w) | step, s | preview, ms/step | preview / step |",
             "|---|---|---|---|---|"]
    print("\n".join(lines), flush=True)
    if builtin_model() is not None:
        d = json.loads((HERE.parent / "videogen" / "mini" / "model" / "videogen_defaults.json").read_text())
        row(lines, "built-in model", f"{d['frames']}x{d['height']}x{d['width']} (its own)",
                     measure("builtin:mini", d["frames"], d["height"], d["width"], d["steps"], args.repeats,
                             d["guidance"], d.get("batch_cfg", False)))
    with tempfile.TemporaryDirectory() as tmp:
        small = str(save_small_wan(Path(tmp) / "small-wan"))
        for label, f, h, w, steps in SMALL_SIZES:
            row(lines, "small random Wan 2.1 (16 ch)", label, measure(small, f, h, w, steps, args.repeats))
    lines += ["", "Preview alone at real models' latent sizes (random latents):", "",
              "| model | latents (C x F x h x w) | preview, ms |", "|---|---|---|"]
    for model, c, f, h, w, key in REAL_LATENTS:
        ms = preview_alone(c, f, h, w, key, args.repeats) * 1000
        lines.append(f"| {model} | {c}x{f}x{h}x{w} | {ms:.1f} |")
    text = "\n".join(lines) + "\n"
    print("\n" + "\n".join(lines[-len(REAL_LATENTS) - 4:]), flush=True)
    if args.out is not None:
        with args.out.open("a", encoding="utf-8") as fh:
            fh.write("\n" + text)


if __name__ == "__main__":
    main()
