"""Oracle that reads a clip of the procedural world and says what it shows.

``read_clip(video)`` takes uint8 [F, H, W, 3] and returns (colour, shape, direction, background).
"""

from __future__ import annotations

import numpy as np

from .data import BACKGROUNDS, COLOURS

_BG_NAMES = list(BACKGROUNDS)
_BG_RGB = np.array([BACKGROUNDS[k] for k in _BG_NAMES], dtype=np.float32)
_FG_NAMES = list(COLOURS)
_FG_RGB = np.array([COLOURS[k] for k in _FG_NAMES], dtype=np.float32)

MASK_DIST = 70.0  # RGB distance from the background above which a pixel belongs to the object
SQUARE_MIN = 0.92  # bounding-box fill ratio: square ~1, circle ~0.8
TOP_MAX_TRIANGLE = 0.38  # share of object pixels in the top half of the box: triangle ~0.25, others ~0.5


def _nearest(rgb: np.ndarray, palette: np.ndarray) -> int:
    return int(np.argmin(((palette - rgb[None, :]) ** 2).sum(-1)))


def background_of(video: np.ndarray) -> int:
    v = video.astype(np.float32)
    border = np.concatenate(
        [v[:, 0, :, :], v[:, -1, :, :], v[:, :, 0, :], v[:, :, -1, :]], axis=1
    ).reshape(-1, 3)
    # dominant border colour: snap every border pixel, take the majority vote
    d = ((border[:, None, :] - _BG_RGB[None]) ** 2).sum(-1)
    votes = np.bincount(d.argmin(1), minlength=len(_BG_NAMES))
    return int(votes.argmax())


def object_mask(video: np.ndarray, bg_rgb: np.ndarray) -> np.ndarray:
    """[F, H, W] boolean object mask with isolated pixels removed."""
    v = video.astype(np.float32)
    m = np.sqrt(((v - bg_rgb) ** 2).sum(-1)) > MASK_DIST
    # drop pixels with fewer than 2 masked 4-neighbours (noise clean-up)
    p = np.pad(m, ((0, 0), (1, 1), (1, 1)))
    nb = p[:, :-2, 1:-1].astype(np.int8) + p[:, 2:, 1:-1] + p[:, 1:-1, :-2] + p[:, 1:-1, 2:]
    return m & (nb >= 2)


def read_clip(video: np.ndarray) -> tuple[str, str, str, str]:
    """Return (colour, shape, direction, background) for a uint8 [F, H, W, 3] clip."""
    video = np.asarray(video)
    bgi = background_of(video)
    bg_rgb = _BG_RGB[bgi]
    mask = object_mask(video, bg_rgb)
    background = _BG_NAMES[bgi]
    if mask.sum() == 0:
        return ("none", "none", "none", background)
    pix = video[mask].astype(np.float32)
    colour = _FG_NAMES[_nearest(pix.mean(0), _FG_RGB)]

    f, h, w = mask.shape
    ys = np.arange(h, dtype=np.float32)
    xs = np.arange(w, dtype=np.float32)
    cnt = mask.sum((1, 2)).astype(np.float32)
    valid = cnt > 0
    cy = np.where(valid, (mask.sum(2) * ys).sum(1) / np.maximum(cnt, 1), np.nan)
    cx = np.where(valid, (mask.sum(1) * xs).sum(1) / np.maximum(cnt, 1), np.nan)
    idx = np.nonzero(valid)[0]
    k = max(1, min(3, len(idx) // 3))
    first, last = idx[:k], idx[-k:]
    dx = np.nanmean(cx[last]) - np.nanmean(cx[first])
    dy = np.nanmean(cy[last]) - np.nanmean(cy[first])
    horizontal = "right" if dx > 0 else "left"
    vertical = "down" if dy > 0 else "up"
    direction = horizontal if abs(dx) >= abs(dy) else vertical

    fill, top = shape_features(mask)
    round_or_square = "square" if fill >= SQUARE_MIN else "circle"
    shape = "triangle" if top < TOP_MAX_TRIANGLE else round_or_square
    return (colour, shape, direction, background)


def shape_features(mask: np.ndarray) -> tuple[float, float]:
    """Mean bounding-box fill ratio and mean fraction of object pixels in the top half of the box.

    square: fill ~1, top ~0.5; circle: fill ~0.8, top ~0.5; triangle (apex up): top ~0.25.
    """
    fills, tops = [], []
    for m in mask:
        n = m.sum()
        if n == 0:
            continue
        rows = np.nonzero(m.any(1))[0]
        cols = np.nonzero(m.any(0))[0]
        fills.append(n / ((rows[-1] - rows[0] + 1) * (cols[-1] - cols[0] + 1)))
        mid = 0.5 * (rows[0] + rows[-1])
        per_row = m.sum(1)
        r = np.arange(m.shape[0])
        top = per_row[r < mid].sum() + 0.5 * per_row[r == mid].sum()
        tops.append(top / n)
    if not fills:
        return float("nan"), float("nan")
    return float(np.mean(fills)), float(np.mean(tops))


def features(video: np.ndarray) -> tuple[float, float]:
    bgi = background_of(video)
    return shape_features(object_mask(np.asarray(video), _BG_RGB[bgi]))
