"""Procedural world of the miniature text-to-video model.

One object (circle, square or triangle) of one colour moves left, right, up or down over a
plain background.  Everything is pure numpy and vectorised over a batch of clips.

Captions follow exactly one grammar::

    a {colour} {shape} moving {direction} on a {background} background

("an" before a colour that starts with a vowel, i.e. "an orange ...").
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 190, 60),
    "blue": (40, 80, 235),
    "yellow": (240, 225, 40),
    "purple": (150, 50, 200),
    "orange": (250, 140, 30),
    "cyan": (40, 215, 230),
    "white": (245, 245, 245),
}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "black": (0, 0, 0),
    "white": (255, 255, 255),
    "gray": (128, 128, 128),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
DIRECTIONS: tuple[str, ...] = ("left", "right", "up", "down")

# unit motion vectors in image coordinates (x to the right, y downwards)
_DIR_VEC = {"left": (-1.0, 0.0), "right": (1.0, 0.0), "up": (0.0, -1.0), "down": (0.0, 1.0)}

FRAMES = 17
SIZE = 32
HELDOUT_SEED = 20261127
HELDOUT_FRACTION = 0.10

Combo = tuple[str, str, str, str]  # (colour, shape, direction, background)


def caption(colour: str, shape: str, direction: str, background: str) -> str:
    article = "an" if colour[0] in "aeiou" else "a"
    return f"{article} {colour} {shape} moving {direction} on a {background} background"


def vocabulary() -> list[str]:
    """Every word the grammar can produce (sorted, deterministic)."""
    words = {"a", "an", "moving", "on", "background"}
    words.update(COLOURS, BACKGROUNDS, SHAPES, DIRECTIONS)
    return sorted(words)


def all_combos() -> list[Combo]:
    """All valid (colour, shape, direction, background) combinations, in a fixed order."""
    out = []
    for c, s, d, b in itertools.product(COLOURS, SHAPES, DIRECTIONS, BACKGROUNDS):
        if c == b:
            continue  # object colour never equals the background colour
        out.append((c, s, d, b))
    return out


def split_combos(seed: int = HELDOUT_SEED, fraction: float = HELDOUT_FRACTION) -> tuple[list[Combo], list[Combo]]:
    """Fixed train / held-out split of the combinations (held-out = ``round(fraction * N)`` combos)."""
    combos = all_combos()
    rng = np.random.default_rng(seed)
    n_held = int(round(fraction * len(combos)))
    idx = rng.permutation(len(combos))
    held = sorted(idx[:n_held].tolist())
    held_set = set(held)
    train = [combos[i] for i in range(len(combos)) if i not in held_set]
    return train, [combos[i] for i in held]


@dataclass
class Batch:
    video: np.ndarray  # uint8 [N, F, H, W, 3]
    combos: list[Combo]
    captions: list[str]


def _shape_masks(shape_idx: np.ndarray, cx: np.ndarray, cy: np.ndarray, r: np.ndarray, size: int) -> np.ndarray:
    """Boolean masks [N, F, H, W]; cx, cy are [N, F] centres (pixels), r is [N] half-size."""
    g = np.arange(size, dtype=np.float32) + 0.5
    dx = g[None, None, None, :] - cx[:, :, None, None]
    dy = g[None, None, :, None] - cy[:, :, None, None]
    rr = r[:, None, None, None]
    circle = dx * dx + dy * dy <= rr * rr
    square = (np.abs(dx) <= rr) & (np.abs(dy) <= rr)
    # isosceles triangle pointing up: apex at (0, -r), base at y = +r spanning [-r, r]
    triangle = (dy <= rr) & (np.abs(dx) <= (dy + rr) * 0.5)
    s = shape_idx[:, None, None, None]
    return np.where(s == 0, circle, np.where(s == 1, square, triangle))


def render(
    combos: list[Combo],
    rng: np.random.Generator,
    frames: int = FRAMES,
    size: int = SIZE,
) -> np.ndarray:
    """Render one clip per combo with random start, speed and size.  uint8 [N, F, H, W, 3]."""
    n = len(combos)
    scale = size / 32.0
    r = rng.uniform(4.0, 6.0, n).astype(np.float32) * scale  # half-size in pixels
    span = size - 2.0 * r  # room for the centre so the object stays fully inside
    travel = rng.uniform(0.55, 1.0, n).astype(np.float32) * span  # distance covered over the clip
    along0 = r + rng.uniform(0.0, 1.0, n).astype(np.float32) * (span - travel)
    across = r + rng.uniform(0.0, 1.0, n).astype(np.float32) * span
    t = np.linspace(0.0, 1.0, frames, dtype=np.float32)[None, :]
    vx = np.array([_DIR_VEC[c[2]][0] for c in combos], dtype=np.float32)[:, None]
    vy = np.array([_DIR_VEC[c[2]][1] for c in combos], dtype=np.float32)[:, None]
    horizontal = vx != 0
    # position along the motion axis, oriented so the object covers `travel` in the right sense
    pos = along0[:, None] + travel[:, None] * t  # increasing along the axis
    neg = (size - along0[:, None]) - travel[:, None] * t  # decreasing along the axis
    along = np.where((vx + vy) > 0, pos, neg)
    cx = np.where(horizontal, along, across[:, None] * np.ones_like(t))
    cy = np.where(horizontal, across[:, None] * np.ones_like(t), along)
    shape_idx = np.array([SHAPES.index(c[1]) for c in combos])
    mask = _shape_masks(shape_idx, cx, cy, r, size)
    fg = np.array([COLOURS[c[0]] for c in combos], dtype=np.uint8)[:, None, None, None, :]
    bg = np.array([BACKGROUNDS[c[3]] for c in combos], dtype=np.uint8)[:, None, None, None, :]
    return np.where(mask[..., None], fg, bg).astype(np.uint8)


def sample_batch(
    n: int,
    rng: np.random.Generator,
    combos: list[Combo] | None = None,
    frames: int = FRAMES,
    size: int = SIZE,
) -> Batch:
    """Random clips whose combinations are drawn uniformly from ``combos`` (default: training split)."""
    if combos is None:
        combos = split_combos()[0]
    pick = rng.integers(0, len(combos), n)
    chosen = [combos[i] for i in pick]
    video = render(chosen, rng, frames=frames, size=size)
    return Batch(video=video, combos=chosen, captions=[caption(*c) for c in chosen])
