"""The procedural world of the second-generation built-in model (128x128, one or two objects).

Each object has a colour, a shape, a size (small, medium or big) and an action: moving left, right, up or down at a
speed (slowly, normally or quickly), or growing or shrinking in place. A clip shows one or two objects of different
colours over a plain background. Captions follow one grammar::

    {object} [and {object}] on a {background} background
    object := {a|an} [small|big] {colour} {shape} (moving {direction} [slowly|quickly] | growing | shrinking)

Medium size and normal speed are the unmarked values (no word). Everything is numpy, vectorised over frames.
Speeds are in pixels per frame, so "quickly" means the same at any clip length.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from .data import BACKGROUNDS, COLOURS, SHAPES

SIZE = 128
FRAMES = 33
FPS = 8
DIRECTIONS: tuple[str, ...] = ("left", "right", "up", "down")
ACTIONS: tuple[str, ...] = (*DIRECTIONS, "growing", "shrinking")
SIZES: tuple[str, ...] = ("small", "medium", "big")
SPEEDS: tuple[str, ...] = ("slowly", "normally", "quickly")
# half-size (pixels) ranges per size word; growing and shrinking sweep from small to big
RADIUS: dict[str, tuple[float, float]] = {"small": (7.0, 9.0), "medium": (12.0, 15.0), "big": (19.0, 23.0)}
GROW_FROM, GROW_TO = (6.0, 8.0), (20.0, 24.0)
# pixels per frame
SPEED: dict[str, tuple[float, float]] = {"slowly": (0.45, 0.65), "normally": (1.0, 1.3), "quickly": (1.9, 2.3)}
HELDOUT_SEED = 20261207
HELDOUT_COUNT = 14  # of the 144 (colour, shape, action) triples

_DIR_VEC = {"left": (-1.0, 0.0), "right": (1.0, 0.0), "up": (0.0, -1.0), "down": (0.0, 1.0)}

Triple = tuple[str, str, str]  # (colour, shape, action)


@dataclass(frozen=True)
class Thing:
    colour: str
    shape: str
    action: str
    size: str = "medium"  # only for moving objects
    speed: str = "normally"  # only for moving objects

    @property
    def triple(self) -> Triple:
        return (self.colour, self.shape, self.action)

    def words(self) -> str:
        size = "" if self.size == "medium" or self.action not in DIRECTIONS else f"{self.size} "
        article = "an" if (size or self.colour)[0] in "aeiou" else "a"
        if self.action in DIRECTIONS:
            speed = "" if self.speed == "normally" else f" {self.speed}"
            return f"{article} {size}{self.colour} {self.shape} moving {self.action}{speed}"
        return f"{article} {self.colour} {self.shape} {self.action}"


@dataclass(frozen=True)
class Scene:
    things: tuple[Thing, ...]
    background: str

    def caption(self) -> str:
        return " and ".join(t.words() for t in self.things) + f" on a {self.background} background"


def vocabulary() -> list[str]:
    words = {"a", "an", "and", "on", "background", "moving", "growing", "shrinking", "small", "big", "slowly", "quickly"}
    words.update(COLOURS, BACKGROUNDS, SHAPES, DIRECTIONS)
    return sorted(words)


def all_triples() -> list[Triple]:
    return list(itertools.product(COLOURS, SHAPES, ACTIONS))


def split_triples() -> tuple[list[Triple], list[Triple]]:
    """A fixed set of (colour, shape, action) triples never shown in training, and the rest."""
    triples = all_triples()
    held = set(np.random.default_rng(HELDOUT_SEED).permutation(len(triples))[:HELDOUT_COUNT].tolist())
    return [t for i, t in enumerate(triples) if i not in held], [triples[i] for i in sorted(held)]


def random_scene(rng: np.random.Generator, triples: list[Triple], two: float = 0.5,
                 must: list[Triple] | None = None) -> Scene:
    """A scene whose objects' triples come from `triples` (the first from `must` when given)."""
    n = 2 if rng.random() < two else 1
    background = list(BACKGROUNDS)[rng.integers(len(BACKGROUNDS))]
    things: list[Thing] = []
    while len(things) < n:
        pool = must if (must and not things) else triples
        colour, shape, action = pool[rng.integers(len(pool))]
        if colour == background or any(t.colour == colour for t in things):
            if must and not things:
                background = next(b for b in BACKGROUNDS if b != colour)
            else:
                continue
        size = SIZES[rng.integers(3)] if action in DIRECTIONS else "medium"
        speed = SPEEDS[rng.integers(3)] if action in DIRECTIONS else "normally"
        things.append(Thing(colour, shape, action, size, speed))
    order = rng.permutation(n)  # the held-out object is not always the first one named
    return Scene(tuple(things[i] for i in order), background)


@dataclass
class Track:
    """Where one object is in each frame: centre (x, y) and half-size, each [F]."""

    cx: np.ndarray
    cy: np.ndarray
    r: np.ndarray
    extra: dict[str, float] = field(default_factory=dict)


def track(thing: Thing, frames: int, rng: np.random.Generator, size: int = SIZE,
          start: tuple[float, float] | None = None) -> Track:
    """A random path for `thing` that keeps it inside the frame; `start` fixes the first centre."""
    t = np.arange(frames, dtype=np.float32)
    if thing.action in DIRECTIONS:
        r = float(rng.uniform(*RADIUS[thing.size]))
        v = float(rng.uniform(*SPEED[thing.speed]))
        room = size - 2 * r
        v = min(v, room / max(frames - 1, 1))  # a long clip slows the object rather than losing it
        travel = v * (frames - 1)
        dx, dy = _DIR_VEC[thing.action]
        if start is None:
            along0 = r + rng.uniform(0, max(room - travel, 0.0))  # rounding can leave -1e-15
            across = r + rng.uniform(0, room)
            first = (along0, across) if dx else (across, along0)
            if dx < 0 or dy < 0:
                first = (size - first[0], first[1]) if dx else (first[0], size - first[1])
        else:
            first = start
        return Track(first[0] + dx * v * t, first[1] + dy * v * t, np.full(frames, r, np.float32), {"speed": v})
    small, big = float(rng.uniform(*GROW_FROM)), float(rng.uniform(*GROW_TO))
    a, b = (small, big) if thing.action == "growing" else (big, small)
    r = a + (b - a) * t / max(frames - 1, 1)
    if start is None:
        start = (float(rng.uniform(big, size - big)), float(rng.uniform(big, size - big)))
    return Track(np.full(frames, start[0], np.float32), np.full(frames, start[1], np.float32), r.astype(np.float32))


def shape_mask(shape: str, tr: Track, size: int = SIZE) -> np.ndarray:
    """Boolean [F, H, W] mask of one object along its track."""
    g = np.arange(size, dtype=np.float32) + 0.5
    dx = g[None, None, :] - tr.cx[:, None, None]
    dy = g[None, :, None] - tr.cy[:, None, None]
    r = tr.r[:, None, None]
    if shape == "circle":
        return dx * dx + dy * dy <= r * r
    if shape == "square":
        return (np.abs(dx) <= r) & (np.abs(dy) <= r)
    return (dy <= r) & (np.abs(dx) <= (dy + r) * 0.5)  # triangle, apex up


def apart(scene: Scene, frames: int, rng: np.random.Generator, size: int = SIZE, tries: int = 50) -> list[Track]:
    """Tracks along which the objects never touch (so that each stays whole and readable), if one is found."""
    for _ in range(tries):
        tracks = [track(t, frames, rng, size) for t in scene.things]
        if len(tracks) < 2 or _clear(tracks[0], tracks[1]):
            return tracks
    return tracks


def _clear(a: Track, b: Track, gap: float = 3.0) -> bool:
    reach = 1.42 * (a.r + b.r) + gap  # the squares' corners reach 1.42 half-sizes from the centre
    return bool(np.all(np.hypot(a.cx - b.cx, a.cy - b.cy) > reach))


def render(scene: Scene, frames: int, rng: np.random.Generator, size: int = SIZE,
           tracks: list[Track] | None = None) -> tuple[np.ndarray, list[Track]]:
    """uint8 [F, H, W, 3] and the objects' tracks; later objects are drawn over earlier ones."""
    tracks = tracks or apart(scene, frames, rng, size)
    video = np.empty((frames, size, size, 3), np.uint8)
    video[:] = BACKGROUNDS[scene.background]
    for thing, tr in zip(scene.things, tracks, strict=True):
        video[shape_mask(thing.shape, tr, size)] = COLOURS[thing.colour]
    return video, tracks
