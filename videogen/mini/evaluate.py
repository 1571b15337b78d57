"""Evaluate the mini model with the oracle.

    python -m videogen.mini.evaluate --model videogen/mini/model --n 240 --report videogen/mini/REPORT.md

Samples prompts of the grammar (half from the held-out combinations), generates clips with a minimal
Wan-style sampling loop (same conventions as the engine) and asks the oracle what each clip shows.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from videogen.mini import DEFAULTS_PATH  # the built-in model's render defaults, in one place

from . import data
from . import modeling as M
from .oracle import read_clip

ATTRS = ("colour", "shape", "direction", "background")


def eval_prompts(n: int, seed: int = 7) -> list[tuple[data.Combo, bool]]:
    """n (combo, held_out) pairs: half from the held-out combos, half from the training combos."""
    train, held = data.split_combos()
    rng = np.random.default_rng(seed)
    nh = n // 2
    out = [(held[i % len(held)], True) for i in rng.permutation(max(nh, len(held)))[:nh] % len(held)]
    out += [(train[i], False) for i in rng.choice(len(train), n - nh, replace=n - nh > len(train))]
    return out


@torch.no_grad()
def generate(tok, te, tr, vae, sched, mean, std, prompts: list[str], seeds: list[int], steps: int,
             guidance: float, batch: int = 48, frames: int = data.FRAMES, size: int = data.SIZE) -> np.ndarray:
    c = vae.config.latent_channels
    f = 2 ** (len(vae.config.block_out_channels) - 1)
    shape = (1, c, frames, size // f, size // f)
    out = []
    for i in range(0, len(prompts), batch):
        ps, ss = prompts[i : i + batch], seeds[i : i + batch]
        cond = M.encode_prompts(tok, te, ps)
        uncond = M.encode_prompts(tok, te, [""] * len(ps))
        lat = M.sample(tr, sched, cond, uncond, shape, ss, steps, guidance)
        out.append(M.decode_latents(vae, lat, mean, std))
    return np.concatenate(out)


def score(videos: np.ndarray, combos: list[data.Combo]) -> np.ndarray:
    """[N, 4] boolean correctness per attribute (colour, shape, direction, background)."""
    return np.array([[a == b for a, b in zip(read_clip(v), c, strict=True)] for v, c in zip(videos, combos, strict=True)])


def quick_eval(tok, te, tr, vae, mean, std, shift, n=48, steps=None, guidance=None) -> dict:
    defaults = json.loads(DEFAULTS_PATH.read_text())
    steps = defaults["steps"] if steps is None else steps
    guidance = defaults["guidance"] if guidance is None else guidance
    sched = M.build_scheduler(shift)
    items = eval_prompts(n, seed=3)
    combos = [c for c, _ in items]
    held = np.array([h for _, h in items])
    vids = generate(tok, te, tr, vae, sched, mean, std, [data.caption(*c) for c in combos],
                    list(range(1000, 1000 + n)), steps, guidance)
    ok = score(vids, combos)
    res = {}
    for name, sel in (("seen", ~held), ("held", held)):
        res[name] = {a: round(float(ok[sel, j].mean()), 3) for j, a in enumerate(ATTRS)}
    return res


def main(argv=None):
    from .export import load

    p = argparse.ArgumentParser()
    p.add_argument("--model", default=str(Path(__file__).parent / "model"))
    p.add_argument("--n", type=int, default=240)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--guidance", type=float, default=None)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--report", default=None, help="write the markdown table here")
    p.add_argument("--extra", default=None, help="JSON file with extra report facts (training time etc.)")
    p.add_argument("--sweep", default=None, metavar="STEPS:GUIDANCE[:euler],...",
                   help="score these settings on n prompts instead of writing the report, e.g. 16:2,16:3,10:3")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)

    defaults = json.loads(DEFAULTS_PATH.read_text())
    steps = args.steps or defaults["steps"]
    g_def = args.guidance if args.guidance is not None else defaults["guidance"]
    tok, te, tr, vae, sched, mean, std = load(args.model)
    items = eval_prompts(args.n)
    combos = [c for c, _ in items]
    held = np.array([h for _, h in items])
    prompts = [data.caption(*c) for c in combos]
    seeds = list(range(len(prompts)))

    if args.sweep:
        euler = M.build_scheduler(sched.config.flow_shift, "euler")
        for item in args.sweep.split(","):
            st, g, kind = (item.split(":") + ["unipc"])[:3]
            st, g = int(st), float(g)
            t = time.time()
            sc = sched if kind == "unipc" else euler
            ok = score(generate(tok, te, tr, vae, sc, mean, std, prompts, seeds, st, g), combos)
            print(f"{kind} steps {st} g {g}: seen {ok[~held].mean(0).round(3)} held {ok[held].mean(0).round(3)} "
                  f"({time.time() - t:.0f}s)", flush=True)
        return

    rows = []
    results = {}
    for g in (g_def, 1.0):
        t = time.time()
        vids = generate(tok, te, tr, vae, sched, mean, std, prompts, seeds, steps, g)
        dt = time.time() - t
        ok = score(vids, combos)
        for name, sel in (("seen", ~held), ("held-out", held)):
            acc = ok[sel].mean(0)
            results[f"{name} g={g}"] = acc.tolist()
            rows.append(f"| {name} | {g:g} | {sel.sum()} | " + " | ".join(f"{100 * a:.1f}%" for a in acc)
                        + f" | {100 * ok[sel].all(1).mean():.1f}% |")
            print(rows[-1], flush=True)
        print(f"guidance {g}: {len(prompts)} clips in {dt:.0f}s", flush=True)

    # single-clip sampling time (batch 1, like one render)
    t = time.time()
    generate(tok, te, tr, vae, sched, mean, std, [prompts[0]], [0], steps, g_def)
    one = time.time() - t

    if args.report:
        extra = json.loads(Path(args.extra).read_text()) if args.extra else {}
        table = "\n".join(
            ["| prompts | guidance | n | colour | shape | direction | background | all four |",
             "|---|---|---|---|---|---|---|---|"] + rows
        )
        lines = [
            "# videogen mini model: report",
            "",
            f"Oracle accuracy on {len(prompts)} prompts of the grammar (half from the {len(data.split_combos()[1])} "
            f"held-out combinations), {steps} sampling steps, seeds 0..{len(prompts) - 1}.",
            "",
            table,
            "",
            f"- Sampling time for one clip ({steps} steps, guidance {g_def:g}, batch 1, transformer + VAE decode only, "
            f"machine: 2-core CPU): {one:.2f} s",
        ]
        for k, v in extra.items():
            lines.append(f"- {k}: {v}")
        Path(args.report).write_text("\n".join(lines) + "\n")
        print(f"wrote {args.report}")


if __name__ == "__main__":
    main()
