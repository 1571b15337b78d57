"""Tests of the miniature model's world: generator, caption grammar, held-out split and oracle."""

import re

import numpy as np
import pytest

from videogen.mini import data
from videogen.mini.oracle import read_clip

CAPTION_RE = re.compile(
    r"^(a|an) (red|green|blue|yellow|purple|orange|cyan|white) (circle|square|triangle) "
    r"moving (left|right|up|down) on a (black|white|gray) background$"
)


def test_caption_grammar():
    assert data.caption("red", "circle", "left", "black") == "a red circle moving left on a black background"
    assert data.caption("orange", "square", "up", "gray") == "an orange square moving up on a gray background"
    for combo in data.all_combos():
        cap = data.caption(*combo)
        m = CAPTION_RE.match(cap)
        assert m, cap
        assert (m.group(1) == "an") == (combo[0] == "orange")
        assert m.groups()[1:] == combo
        assert set(cap.split()) <= set(data.vocabulary())


def test_combos_exclude_same_colour_as_background():
    combos = data.all_combos()
    assert len(combos) == 8 * 3 * 4 * 3 - 3 * 4  # white object on white background excluded
    assert all(c != b for c, _, _, b in combos)
    assert len(set(combos)) == len(combos)


def test_heldout_split_fixed_disjoint_ten_percent():
    train, held = data.split_combos()
    train2, held2 = data.split_combos()
    assert train == train2 and held == held2  # fixed
    assert not set(train) & set(held)
    assert set(train) | set(held) == set(data.all_combos())
    assert len(held) == round(0.1 * len(data.all_combos()))
    # every single attribute value still occurs in training
    for j, values in enumerate((data.COLOURS, data.SHAPES, data.DIRECTIONS, data.BACKGROUNDS)):
        assert {c[j] for c in train} == set(values)


def test_sample_batch_uses_training_combos_and_shapes():
    rng = np.random.default_rng(0)
    b = data.sample_batch(64, rng)
    assert b.video.shape == (64, data.FRAMES, data.SIZE, data.SIZE, 3)
    assert b.video.dtype == np.uint8
    held = set(data.split_combos()[1])
    assert not held & set(b.combos)
    assert b.captions == [data.caption(*c) for c in b.combos]


def test_generator_reproducible():
    a = data.sample_batch(8, np.random.default_rng(5)).video
    b = data.sample_batch(8, np.random.default_rng(5)).video
    assert np.array_equal(a, b)


def test_motion_is_visible_and_object_inside():
    rng = np.random.default_rng(1)
    combos = data.all_combos()
    b = data.sample_batch(200, rng, combos)
    for v, (_, _, direction, background) in zip(b.video, b.combos, strict=True):
        bg = np.array(data.BACKGROUNDS[background])
        mask = np.abs(v.astype(int) - bg).sum(-1) > 0
        area = mask.sum((1, 2))
        assert area.min() > 20  # object visible in every frame
        assert area.max() <= 1.3 * area.min()  # never clipped by the frame edge
        ys, xs = np.nonzero(mask[0])
        ye, xe = np.nonzero(mask[-1])
        dx, dy = xe.mean() - xs.mean(), ye.mean() - ys.mean()
        travel = {"left": -dx, "right": dx, "up": -dy, "down": dy}[direction]
        assert travel > 0.25 * data.SIZE  # travels a good fraction of the frame


@pytest.mark.parametrize("seed", [0, 1])
def test_oracle_perfect_on_ground_truth(seed):
    rng = np.random.default_rng(100 + seed)
    b = data.sample_batch(300, rng, data.all_combos())
    wrong = [(c, read_clip(v)) for v, c in zip(b.video, b.combos, strict=True) if read_clip(v) != c]
    assert not wrong, wrong[:5]


def test_oracle_every_combo():
    rng = np.random.default_rng(3)
    combos = data.all_combos()
    video = data.render(combos, rng)
    for v, c in zip(video, combos, strict=True):
        assert read_clip(v) == c
