"""Step caches (FirstBlockCache, MagCache, TaylorSeer, PAB): diffusers' hooks switched on per render, MagCache's
calibration, and the drift against an uncached render. Which modules are the repeated blocks is the family's
declaration (`Family.block_attributes`), never a list of names here."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from videogen.errors import UserError
from videogen.spec import RenderSpec

if TYPE_CHECKING:  # `check` runs before loading, where torch is not imported yet
    import torch

# Caches whose one knob is a threshold; the others take their diffusers defaults.
THRESHOLDS = {"fbc": 0.05, "mag": 0.06}
# Caches that compare one block's output with the next block's input, so need two blocks or more.
NEEDS_TWO_BLOCKS = ("fbc",)


def attention_modules(block_attributes: tuple[str, ...]) -> str:
    """What TaylorSeer predicts: the attention layers of every repeated block, as a full-match pattern."""
    return rf"({'|'.join(block_attributes)})\.\d+\.attn\d*"


def check(spec: RenderSpec, blocks: int | None) -> None:
    """Refuse a cache that cannot work on this model, before loading (`blocks`: its repeated block count)."""
    if spec.cache_threshold is not None and spec.cache not in THRESHOLDS:
        raise UserError(f"--cache-threshold applies to --cache {' and '.join(THRESHOLDS)}, not --cache {spec.cache}")
    if spec.cache_drift and spec.cache == "none":
        raise UserError("--cache-drift measures a step cache against the uncached render: add --cache")
    if spec.cache in NEEDS_TWO_BLOCKS and blocks is not None and blocks < 2:
        raise UserError(f"--cache {spec.cache} skips the blocks after the first when the first changes little; this "
                        f"model's transformer has {blocks} block (use another --cache, or none)")


def _calibration_hook() -> type:
    """MagCache's calibration (mean ratio of the blocks' residual norms between consecutive steps), per context.

    diffusers' own calibration mode prints its ratios on stdout and forgets them; this keeps them.
    """
    import torch
    from diffusers.hooks import ModelHook
    from diffusers.hooks.hooks import BaseState, StateManager

    class Ratios(BaseState):
        def __init__(self) -> None:
            self.previous: torch.Tensor | None = None
            self.ratios: list[float] = []

        def reset(self) -> None:
            self.previous, self.ratios = None, []

    class Calibrate(ModelHook):
        _is_stateful = True

        def __init__(self) -> None:
            super().__init__()
            self.state_manager = StateManager(Ratios)
            self.head_input: torch.Tensor | None = None

        def new_forward(self, module, *args, **kwargs):
            # Registered on the transformer: read the first and last block through forward hooks of its own.
            return self.fn_ref.original_forward(*args, **kwargs)

        def reset_state(self, module):
            self.state_manager.reset()
            return module

        def record(self, residual: torch.Tensor) -> None:
            if self.state_manager._context is None:
                return
            state = self.state_manager.get_state()
            norm = torch.linalg.norm(residual.float(), dim=-1)
            state.ratios.append(1.0 if state.previous is None else (norm / (state.previous + 1e-8)).mean().item())
            state.previous = norm

        def ratios(self) -> list[float]:
            states = self.state_manager._state_cache
            state = states.get("cond") or next(iter(states.values()), None)
            return list(state.ratios) if state is not None else []

    return Calibrate


@dataclass
class Options:
    """What the engine options did to a model, and the step cache, switched on per render."""

    transformers: list[torch.nn.Module]
    blocks: tuple[str, ...]  # the transformer attributes holding the repeated blocks
    cache: str
    threshold: float | None
    dtype: torch.dtype
    applied: dict[str, Any] = field(default_factory=dict)
    _timestep: list[float] = field(default_factory=lambda: [1000.0])
    _enabled_for: int | None = None  # steps the cache hooks were configured for
    _mag_ratios: dict[int, list[float]] = field(default_factory=dict)

    def needs_reference(self, spec: RenderSpec) -> bool:
        """Whether this render also runs without the cache: asked (--cache-drift) or MagCache not yet calibrated."""
        if self.cache == "none":
            return False
        return spec.cache_drift or (self.cache == "mag" and spec.steps not in self._mag_ratios)

    @contextmanager
    def uncached(self, spec: RenderSpec) -> Iterator[None]:
        """The reference render: no cache; it also calibrates MagCache for this step count."""
        self._disable()
        calibrate = self.cache == "mag" and spec.steps not in self._mag_ratios
        hooks = [self._attach_calibration(t) for t in self.transformers] if calibrate else []
        try:
            yield
        finally:
            for t, (hook, handles) in zip(self.transformers, hooks, strict=False):
                if t is self.transformers[0] and spec.steps is not None:
                    self._mag_ratios[spec.steps] = hook.ratios()
                for h in handles:
                    h.remove()
                from diffusers.hooks import HookRegistry

                registry = HookRegistry.check_if_exists_or_initialize(t)
                registry.remove_hook("videogen_mag_calibration", recurse=False)
                registry.invalidate_child_registries_cache()

    @contextmanager
    def cached(self, spec: RenderSpec) -> Iterator[None]:
        """The render itself, with the step cache on (hooks set up once per step count) and its state fresh."""
        if self.cache != "none":
            assert spec.steps is not None
            if self._enabled_for != spec.steps:
                self._disable()
                for t in self.transformers:
                    t.enable_cache(self._config(spec.steps))
                self._enabled_for = spec.steps
        self._reset()
        try:
            yield
        finally:
            self._reset()

    def record(self, spec: RenderSpec, frames: torch.Tensor, reference: torch.Tensor | None) -> dict[str, Any]:
        """The run record's `engine_options` entry: what was applied, and the cache's drift when measured."""
        out: dict[str, Any] = dict(self.applied)
        if self.cache != "none":
            entry: dict[str, Any] = {"mode": self.cache, "config": self._describe(spec.steps or 0)}
            if reference is not None:
                db = psnr(frames, reference)
                entry["drift_psnr_db"] = round(db, 3) if math.isfinite(db) else None  # None: identical frames
                entry["drift_max_abs"] = round(float((frames - reference).abs().max()), 6)
            else:
                entry["drift_psnr_db"] = None
                entry["drift"] = "not measured (add --cache-drift to render once more without the cache)"
            out["cache"] = entry
        return out

    # internals

    def _config(self, steps: int) -> Any:
        from diffusers.hooks import (
            FirstBlockCacheConfig,
            MagCacheConfig,
            PyramidAttentionBroadcastConfig,
            TaylorSeerCacheConfig,
        )

        if self.cache == "fbc":
            return FirstBlockCacheConfig(threshold=self._threshold())
        if self.cache == "mag":
            return MagCacheConfig(threshold=self._threshold(), num_inference_steps=steps,
                                  mag_ratios=self._mag_ratios[steps])
        if self.cache == "taylorseer":
            # diffusers' default patterns ("^blocks.*attn", full match) miss "blocks.0.attn1": name the attention
            # modules of the repeated blocks explicitly, so the cache does something on every family.
            return TaylorSeerCacheConfig(taylor_factors_dtype=self.dtype,
                                         cache_identifiers=[attention_modules(self.blocks)])
        if self.cache == "pab":
            self._probe_timesteps()
            return PyramidAttentionBroadcastConfig(spatial_attention_block_skip_range=2,
                                                   current_timestep_callback=lambda: self._timestep[0])
        raise AssertionError(self.cache)

    def _describe(self, steps: int) -> dict[str, Any]:
        if self.cache in THRESHOLDS:
            return {"threshold": self._threshold()} | ({"calibrated_steps": steps} if self.cache == "mag" else {})
        if self.cache == "taylorseer":
            return {"cache_interval": 5, "disable_cache_before_step": 3, "max_order": 1,
                    "modules": attention_modules(self.blocks)}
        return {"spatial_attention_block_skip_range": 2, "timestep_skip_range": [100, 800]}

    def _threshold(self) -> float:
        return self.threshold if self.threshold is not None else THRESHOLDS[self.cache]

    def _disable(self) -> None:
        for t in self.transformers:
            if getattr(t, "is_cache_enabled", False):
                t.disable_cache()
        self._enabled_for = None

    def _reset(self) -> None:
        # Cache hooks keep residuals between calls: a new render must not start from the last one's.
        for t in self.transformers:
            if hasattr(t, "_reset_stateful_cache"):
                t._reset_stateful_cache()

    def _probe_timesteps(self) -> None:
        """PAB asks "which timestep is this?" through a callback; a hook on the transformer's input answers it."""
        import torch
        from diffusers.hooks import HookRegistry, ModelHook

        slot = self._timestep

        class Probe(ModelHook):
            def pre_forward(self, module, *args, **kwargs):
                t = kwargs.get("timestep")
                if isinstance(t, torch.Tensor):
                    slot[0] = float(t.flatten()[0])
                return args, kwargs

        for t in self.transformers:
            registry = HookRegistry.check_if_exists_or_initialize(t)
            if registry.get_hook("videogen_timestep") is None:
                registry.register_hook(Probe(), "videogen_timestep")

    def _attach_calibration(self, transformer: torch.nn.Module) -> tuple[Any, list[Any]]:
        from diffusers.hooks import HookRegistry

        blocks = _blocks(transformer, self.blocks)
        hook = _calibration_hook()()
        registry = HookRegistry.check_if_exists_or_initialize(transformer)
        registry.register_hook(hook, "videogen_mag_calibration")

        def head(_module, args, kwargs):
            hook.head_input = kwargs.get("hidden_states", args[0] if args else None)

        def tail(_module, _args, _kwargs, output):
            out = output[0] if isinstance(output, tuple) else output
            if hook.head_input is not None and out.shape == hook.head_input.shape:
                hook.record(out - hook.head_input)

        handles = [blocks[0].register_forward_pre_hook(head, with_kwargs=True),
                   blocks[-1].register_forward_hook(tail, with_kwargs=True)]
        return hook, handles


def _blocks(transformer: torch.nn.Module, names: tuple[str, ...]) -> torch.nn.ModuleList:
    import torch

    for name in names:
        blocks = getattr(transformer, name, None)
        if isinstance(blocks, torch.nn.ModuleList) and len(blocks):
            return blocks
    raise UserError(f"--cache mag: cannot find the repeated blocks of {type(transformer).__name__}")


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB of two frame stacks in [0, 1] (inf when identical)."""
    mse = float(((a.float() - b.float()) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)
