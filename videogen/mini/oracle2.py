"""The oracle of the second-generation world: reads a clip and says what it shows, object by object.

`read(video)` takes uint8 [F, H, W, 3] and returns the background and, for each object colour found, its shape,
action (left, right, up, down, growing, shrinking), size and speed, and where it starts. `score(scene, reading)`
compares that with what the prompt asked for, attribute by attribute.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .data import BACKGROUNDS, COLOURS
from .world import DIRECTIONS, Scene

_BG = list(BACKGROUNDS)
_BG_RGB = np.array([BACKGROUNDS[k] for k in _BG], np.float32)
_FG = list(COLOURS)
_FG_RGB = np.array([COLOURS[k] for k in _FG], np.float32)
MASK_DIST = 70.0  # RGB distance from the background above which a pixel is an object's
MIN_PIXELS = 30.0  # mean pixels per frame for a colour to count as an object
SQUARE_MIN = 0.9  # bounding-box fill: square ~1, circle ~0.79, triangle ~0.5
TOP_MAX_TRIANGLE = 0.38  # share of the pixels in the top half of the box: triangle ~0.25, others 0.5
GROW_RATIO = 1.8  # last/first area beyond which an object grows (or shrinks, below its inverse)
SPEED_EDGES = (0.8, 1.6)  # px/frame between slowly, normally and quickly
SIZE_EDGES = (10.5, 17.0)  # half-size in px between small, medium and big
ATTRIBUTES = ("count", "colour", "shape", "action", "size", "speed", "background")


@dataclass
class Seen:
    colour: str
    shape: str
    action: str
    size: str
    speed: str
    start: tuple[float, float]  # centre in the first frame it is seen (x, y)


def _clean(m: np.ndarray) -> np.ndarray:
    """Opening with a 3x3 cross: drops what is under 3 pixels thick. A decoded object's soft edge blends its colour
    with the background's, and the blend can be nearest to another palette colour (yellow on black gives a green
    rim): a ring, not an object, which must neither count as one nor join a real object of that colour."""
    p = np.pad(m, ((0, 0), (1, 1), (1, 1)))
    core = p[:, 1:-1, 1:-1] & p[:, :-2, 1:-1] & p[:, 2:, 1:-1] & p[:, 1:-1, :-2] & p[:, 1:-1, 2:]
    q = np.pad(core, ((0, 0), (1, 1), (1, 1)))
    return m & (q[:, 1:-1, 1:-1] | q[:, :-2, 1:-1] | q[:, 2:, 1:-1] | q[:, 1:-1, :-2] | q[:, 1:-1, 2:])


def background(video: np.ndarray) -> int:
    v = video.astype(np.float32)
    border = np.concatenate([v[:, 0], v[:, -1], v[:, :, 0], v[:, :, -1]], axis=1).reshape(-1, 3)
    votes = np.bincount(((border[:, None] - _BG_RGB[None]) ** 2).sum(-1).argmin(1), minlength=len(_BG))
    return int(votes.argmax())


def shape_of(mask: np.ndarray) -> str:
    """Median bounding-box fill and top-half share over the frames (robust to a few occluded frames)."""
    fills, tops = [], []
    for m in mask:
        n = m.sum()
        if n < 12:
            continue
        rows, cols = np.nonzero(m.any(1))[0], np.nonzero(m.any(0))[0]
        fills.append(n / ((rows[-1] - rows[0] + 1) * (cols[-1] - cols[0] + 1)))
        mid = 0.5 * (rows[0] + rows[-1])
        per_row, r = m.sum(1), np.arange(m.shape[0])
        tops.append((per_row[r < mid].sum() + 0.5 * per_row[r == mid].sum()) / n)
    if not fills:
        return "none"
    if np.median(tops) < TOP_MAX_TRIANGLE:
        return "triangle"
    return "square" if np.median(fills) >= SQUARE_MIN else "circle"


def half_size(area: float, shape: str) -> float:
    return float(np.sqrt(area / {"circle": np.pi, "square": 4.0, "triangle": 2.0}.get(shape, np.pi)))


def read(video: np.ndarray) -> tuple[str, list[Seen]]:
    """The background's name and the objects seen, largest first."""
    video = np.asarray(video)
    bgi = background(video)
    v = video.astype(np.float32)
    fg = np.sqrt(((v - _BG_RGB[bgi]) ** 2).sum(-1)) > MASK_DIST
    nearest = np.full(fg.shape, -1, np.int64)  # palette index of each object pixel, -1 on the background
    nearest[fg] = ((v[fg][:, None, :] - _FG_RGB) ** 2).sum(-1).argmin(-1)
    f = video.shape[0]
    found = []
    for ci, name in enumerate(_FG):
        if name == _BG[bgi]:
            continue
        mask = _clean(fg & (nearest == ci))
        if mask.sum() / f < MIN_PIXELS:
            continue
        found.append((mask.sum(), name, mask))
    found.sort(key=lambda x: -x[0])
    return _BG[bgi], [_describe(name, mask) for _, name, mask in found[:2]]


def _describe(colour: str, mask: np.ndarray) -> Seen:
    area = mask.sum((1, 2)).astype(np.float32)
    seen = np.nonzero(area > 0)[0]
    ys, xs = np.arange(mask.shape[1], dtype=np.float32), np.arange(mask.shape[2], dtype=np.float32)
    cy = (mask.sum(2) * ys).sum(1) / np.maximum(area, 1)
    cx = (mask.sum(1) * xs).sum(1) / np.maximum(area, 1)
    k = max(1, min(4, len(seen) // 4))
    first, last = seen[:k], seen[-k:]
    shape = shape_of(mask)
    a0, a1 = area[first].mean(), area[last].mean()
    dx, dy = cx[last].mean() - cx[first].mean(), cy[last].mean() - cy[first].mean()
    frames = max(float(last.mean() - first.mean()), 1.0)
    speed_px = float(np.hypot(dx, dy)) / frames
    if a1 > GROW_RATIO * a0 or a0 > GROW_RATIO * a1:
        action = "growing" if a1 > a0 else "shrinking"
    else:
        action = ("right" if dx > 0 else "left") if abs(dx) >= abs(dy) else ("down" if dy > 0 else "up")
    r = half_size(float(np.median(area[seen])), shape)
    size = "small" if r < SIZE_EDGES[0] else "big" if r > SIZE_EDGES[1] else "medium"
    speed = "slowly" if speed_px < SPEED_EDGES[0] else "quickly" if speed_px > SPEED_EDGES[1] else "normally"
    return Seen(colour, shape, action, size, speed, (float(cx[seen[0]]), float(cy[seen[0]])))


def score(scene: Scene, reading: tuple[str, list[Seen]]) -> dict[str, bool]:
    """Attribute -> right or wrong. Size and speed are scored on moving objects only (the others have none)."""
    bg, seen = reading
    by_colour = {s.colour: s for s in seen}
    out = {"count": len(seen) == len(scene.things), "background": bg == scene.background}
    checks: dict[str, list[bool]] = {"colour": [], "shape": [], "action": [], "size": [], "speed": []}
    for thing in scene.things:
        s = by_colour.get(thing.colour)
        checks["colour"].append(s is not None)
        checks["shape"].append(s is not None and s.shape == thing.shape)
        checks["action"].append(s is not None and s.action == thing.action)
        if thing.action in DIRECTIONS:
            checks["size"].append(s is not None and s.size == thing.size)
            checks["speed"].append(s is not None and s.speed == thing.speed)
    out.update({k: all(v) for k, v in checks.items() if v})
    return out
