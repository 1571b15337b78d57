"""Oracle evaluation of the second-generation built-in model, rendered through videogen's own engine.

    python -m videogen.mini.evaluate2 --n 240 --report runs/mini2/REPORT.md

Half the prompts hold a (colour, shape, action) triple never seen in training; each is rendered at the model's
default guidance and at guidance 1 (none), text-to-video, and from a first frame of the world (image-to-video:
the objects must start where the image has them, within START_PX, and then do what the prompt says).
"""

from __future__ import annotations

import argparse
import collections
import tempfile
import time
from pathlib import Path

import numpy as np

from . import oracle2 as O
from . import world as W

START_PX = 6.0
MODEL = "builtin:mini-v2"


def prompts(n: int, seed: int = 7) -> list[tuple[W.Scene, bool]]:
    """n scenes, alternating seen and held-out (a held-out scene has a held-out triple in it)."""
    train, held = W.split_triples()
    rng = np.random.default_rng(seed)
    return [(W.random_scene(rng, train, must=held if i % 2 else None), bool(i % 2)) for i in range(n)]


def evaluate(n: int, model: str = MODEL, guidances: tuple[float | None, ...] = (None, 1.0),
             i2v: bool = True, steps: int | None = None) -> dict[str, dict[str, list[bool]]]:
    import imageio.v3 as iio

    import videogen

    session = videogen.load(model)
    fixed = {"steps": steps} if steps is not None else {}  # None: the model's default
    table: dict[str, dict[str, list[bool]]] = collections.defaultdict(lambda: collections.defaultdict(list))
    scenes = prompts(n)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "clip.mp4"
        for i, (scene, held) in enumerate(scenes):
            half = "held-out" if held else "seen"
            for g in guidances:
                settings = {"seed": 1000 + i} | fixed | ({"guidance": g} if g is not None else {})
                r = session.generate(scene.caption(), out, overwrite=True, **settings)
                row = f"{half}, guidance {'default' if g is None else g}"
                for k, ok in O.score(scene, O.read(r.frames)).items():
                    table[row][k].append(ok)
            if i2v:
                rng = np.random.default_rng(5000 + i)
                truth, tracks = W.render(scene, W.FRAMES, rng)
                image = Path(tmp) / "first.png"
                iio.imwrite(image, truth[0])
                r = session.generate(scene.caption(), out, overwrite=True, seed=1000 + i, image=str(image), **fixed)
                bg, seen = O.read(r.frames)
                row = f"{half}, image-to-video"
                for k, ok in O.score(scene, (bg, seen)).items():
                    table[row][k].append(ok)
                by_colour = {s.colour: s for s in seen}
                table[row]["start"].append(all(
                    t.colour in by_colour and np.hypot(by_colour[t.colour].start[0] - tr.cx[0],
                                                       by_colour[t.colour].start[1] - tr.cy[0]) <= START_PX
                    for t, tr in zip(scene.things, tracks, strict=True)))
    return table


def report(table: dict[str, dict[str, list[bool]]]) -> str:
    attrs = [*O.ATTRIBUTES, "start", "all"]
    lines = ["| prompts | n | " + " | ".join(attrs) + " |", "|---|---|" + "---|" * len(attrs)]
    for row, scores in sorted(table.items()):
        n = len(scores["count"])
        every = [all(v[i] for k, v in scores.items() if len(v) == n) for i in range(n)]
        cells = []
        for a in attrs:
            v = every if a == "all" else scores.get(a)
            cells.append(f"{100 * np.mean(v):.1f}% ({len(v)})" if v else "-")
        lines.append(f"| {row} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m videogen.mini.evaluate2")
    ap.add_argument("--n", type=int, default=240)
    ap.add_argument("--model", default=MODEL)
    ap.add_argument("--report", type=Path)
    ap.add_argument("--no-i2v", action="store_true")
    ap.add_argument("--steps", type=int, default=None, help="denoising steps (default: the model's)")
    args = ap.parse_args(argv)
    t0 = time.time()
    text = report(evaluate(args.n, args.model, i2v=not args.no_i2v, steps=args.steps))
    steps = f", {args.steps} steps" if args.steps else ""
    text += f"\n\n{args.n} prompts, {args.model}{steps}, {time.time() - t0:.0f} s\n"
    print(text)
    if args.report:
        args.report.write_text(text)


if __name__ == "__main__":
    main()
