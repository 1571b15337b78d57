"""Hypothesis strategies for parity properties: random prompt, negative prompt, frames, size, steps, guidance, seed.

Each family's test draws a few cases from these and compares the engine's frames with its diffusers pipeline's on
the same tiny weights. Few examples per run (the suite stays fast); a failing case is printed by Hypothesis.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from tiny import WORDS

from videogen.spec import RenderSpec

# Few examples, no deadline (the first render of a model warms caches), no example database on disk.
FEW = settings(max_examples=4, deadline=None, database=None, derandomize=False,
               suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@dataclass(frozen=True)
class Case:
    prompt: str
    negative: str | None
    frames: int
    height: int
    width: int
    steps: int
    guidance: float
    seed: int

    def spec(self, model: str, **extra: Any) -> RenderSpec:
        return RenderSpec(prompt=self.prompt, model=model, negative_prompt=self.negative, frames=self.frames,
                          height=self.height, width=self.width, steps=self.steps, guidance=self.guidance,
                          seed=self.seed, **extra)


def words(min_size: int, max_size: int) -> st.SearchStrategy[str]:
    return st.lists(st.sampled_from(WORDS), min_size=min_size, max_size=max_size).map(" ".join)


def cases(frames: list[int], sizes: list[int], steps: tuple[int, int] = (1, 3),
          guidance: tuple[float, float] = (1.5, 8.0)) -> st.SearchStrategy[Case]:
    """Guidance is 1 (no negative pass) a third of the time, else drawn from `guidance`."""
    return st.builds(
        Case, prompt=words(1, 8), negative=st.none() | words(1, 4), frames=st.sampled_from(frames),
        height=st.sampled_from(sizes), width=st.sampled_from(sizes), steps=st.integers(*steps),
        guidance=st.just(1.0) | st.floats(*guidance).map(lambda g: round(g, 2)) | st.floats(*guidance).map(
            lambda g: round(g, 2)),
        seed=st.integers(0, 2**31 - 1))
