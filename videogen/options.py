"""Engine options (offload, VAE tiling, compile, attention backend, step cache, fp8 weights).

Each option is applied to the loaded modules with diffusers' own hooks and model methods, never as a branch in
the sampling loop. Everything that can be refused is checked before any module is touched, so a bad combination
fails in one line instead of half-configuring a model.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from videogen.errors import UserError
from videogen.families.base import Family
from videogen.spec import RenderSpec

log = logging.getLogger("videogen")

# Backends of diffusers' attention dispatcher that run on a CPU; every other one needs CUDA (or an NPU/XLA).
CPU_ATTENTION = {"native", "_native_math", "flex"}
ATTENTION_ALIASES = {"sdpa": "native", "math": "_native_math"}
# torch.compile backend; a test swaps in "eager" (graph capture without code generation) to stay fast.
COMPILE_BACKEND = "inductor"
# Caches whose one knob is a threshold; the others take their diffusers defaults.
THRESHOLDS = {"fbc": 0.05, "mag": 0.06}
# TaylorSeer predicts the outputs of these modules (the attention layers of every repeated block).
TAYLOR_MODULES = r"(blocks|transformer_blocks|single_transformer_blocks|temporal_transformer_blocks)\.\d+\.attn\d*"
# Modules that are moved by the offload hooks, in the order a render uses them.
OFFLOAD_ORDER = ("text_encoder", "image_encoder", "transformer", "transformer_2", "vae")


def attention_backends() -> list[str]:
    from diffusers.models.attention_dispatch import AttentionBackendName

    return [b.value for b in AttentionBackendName]


def check(spec: RenderSpec, device: torch.device) -> None:
    """Refuse what this machine or this combination cannot do: one line each, before any weight moves."""
    if spec.offload != "none" and device.type != "cuda":
        where = "this machine has no CUDA GPU" if not torch.cuda.is_available() else "add --device cuda"
        raise UserError(f"--offload {spec.offload} moves weights between the CPU and a CUDA GPU; {where} "
                        "(use --offload none)")
    if spec.cache_threshold is not None and spec.cache not in THRESHOLDS:
        raise UserError(f"--cache-threshold applies to --cache {' and '.join(THRESHOLDS)}, not --cache {spec.cache}")
    if spec.cache_drift and spec.cache == "none":
        raise UserError("--cache-drift measures a step cache against the uncached render: add --cache")
    if spec.attention is not None:
        attention_backend(spec.attention, device)


def attention_backend(name: str, device: torch.device) -> str:
    """The diffusers backend for `--attention NAME`, or a one-line refusal (unknown, not installed, needs CUDA)."""
    from diffusers.models.attention_dispatch import (
        AttentionBackendName,
        _check_attention_backend_requirements,
    )

    backend = ATTENTION_ALIASES.get(name.lower(), name.lower())
    known = attention_backends()
    if backend not in known:
        public = sorted(ATTENTION_ALIASES) + [b for b in known if not b.startswith("_")]
        raise UserError(f"unknown --attention '{name}'; choose one of {', '.join(public)}")
    try:
        _check_attention_backend_requirements(AttentionBackendName(backend))
    except (RuntimeError, ImportError) as e:
        raise UserError(f"--attention {name} is not installed here: {str(e).strip().splitlines()[0]}") from None
    if device.type == "cpu" and backend not in CPU_ATTENTION:
        raise UserError(f"--attention {name} needs a CUDA GPU; on the CPU use --attention sdpa")
    return backend


def apply(model: Family, spec: RenderSpec, device: torch.device) -> Options:
    """Configure a freshly loaded model for `spec`'s engine options; returns what renders need from them."""
    check(spec, device)
    modules = model.modules()
    applied: dict[str, Any] = {}
    if spec.quantize == "fp8":
        quantize_fp8(modules, model.dtype)
        applied["quantize"] = "fp8 (e4m3) weight storage, layerwise upcast to " + str(model.dtype).removeprefix("torch.")
    if spec.offload == "none":
        for module in modules.values():
            module.to(device)
    else:
        applied["offload"] = offload(modules, spec.offload, device)
    if spec.vae_tiling and "vae" in modules:
        vae = modules["vae"]
        if not hasattr(vae, "enable_tiling"):
            raise UserError(f"--vae-tiling: this model's VAE ({type(vae).__name__}) cannot decode in tiles")
        vae.enable_tiling()
        applied["vae_tiling"] = True
    if spec.attention is not None:
        applied["attention"] = set_attention(modules, attention_backend(spec.attention, device))
    if spec.compile:
        applied["compile"] = compile_blocks(modules)
    return Options(transformers=[m for k, m in modules.items() if k.startswith("transformer")],
                   cache=spec.cache, threshold=spec.cache_threshold, dtype=model.dtype, applied=applied)


# --- placement -----------------------------------------------------------------------------------------------


def _move(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, tuple | list):
        return type(value)(_move(v, device) for v in value)
    if isinstance(value, dict):
        return {k: _move(v, device) for k, v in value.items()}
    return value


def _hook_classes() -> tuple[type, type]:
    from diffusers.hooks import ModelHook

    class InputsTo(ModelHook):
        """Moves a module's tensor inputs to where it computes (callers may hand them over from the CPU)."""

        def __init__(self, device: torch.device):
            super().__init__()
            self.device = device

        def pre_forward(self, module, *args, **kwargs):
            return _move(args, self.device), _move(kwargs, self.device)

    class OneAtATime(ModelHook):
        """Model offload: before a module computes, every other module of the group goes back to the CPU."""

        def __init__(self, group: list[torch.nn.Module], device: torch.device, home: torch.device):
            super().__init__()
            self.group, self.device, self.home = group, device, home

        def pre_forward(self, module, *args, **kwargs):
            for other in self.group:
                if other is not module and _device_of(other) != self.home:
                    other.to(self.home)
            if _device_of(module) != self.device:
                module.to(self.device)
            return _move(args, self.device), _move(kwargs, self.device)

    return InputsTo, OneAtATime


def _onload_first(method: Any, hook: Any, module: torch.nn.Module) -> Any:
    def call(*args: Any, **kwargs: Any) -> Any:
        args, kwargs = hook.pre_forward(module, *args, **kwargs)
        return method(*args, **kwargs)

    return call


def _device_of(module: torch.nn.Module) -> torch.device:
    p = next(module.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def offload(modules: dict[str, torch.nn.Module], mode: str, device: torch.device,
            home: torch.device = torch.device("cpu")) -> str:
    """Keep weights on `home` (the CPU) and bring them to `device` only when needed, with diffusers hooks.

    model: one whole module at a time (like `enable_model_cpu_offload`, without accelerate).
    sequential: leaf-level group offloading (one layer's weights at a time, as `enable_sequential_cpu_offload`).
    group: block-level group offloading of the transformer, one block per group, prefetched on a CUDA stream so the
    next block's copy overlaps this block's compute; leaf level for the other modules.
    """
    from diffusers.hooks import HookRegistry, apply_group_offloading

    InputsTo, OneAtATime = _hook_classes()
    ordered = [modules[k] for k in OFFLOAD_ORDER if k in modules] + [m for k, m in modules.items()
                                                                    if k not in OFFLOAD_ORDER]
    if mode == "model":
        for module in ordered:
            module.to(home)
            hook = OneAtATime(ordered, device, home)
            HookRegistry.check_if_exists_or_initialize(module).register_hook(hook, "videogen_model_offload")
            for entry in ("encode", "decode"):  # a VAE is used through these, not through forward
                if callable(getattr(module, entry, None)):
                    setattr(module, entry, _onload_first(getattr(module, entry), hook, module))
        return "model: one module on the GPU at a time"
    stream = device.type == "cuda"
    for name, module in modules.items():
        module.to(home)
        block = mode == "group" and name.startswith("transformer")
        # CUDA-stream prefetching for the transformer's blocks only: a VAE's tiled decode calls its layers in
        # another order than its first call, which breaks the recorded prefetch order (diffusers warns of it).
        apply_group_offloading(module, onload_device=device, offload_device=home,
                               offload_type="block_level" if block else "leaf_level",
                               num_blocks_per_group=1 if block else None, use_stream=stream and block,
                               record_stream=stream and block, non_blocking=stream)
        # Callers build inputs where they like (the CPU); the hooks only move weights.
        HookRegistry.check_if_exists_or_initialize(module).register_hook(InputsTo(device), "videogen_inputs")
    return f"{mode}: " + ("transformer blocks one at a time, prefetched on a CUDA stream" if mode == "group"
                          else "one layer at a time")


# --- the other load-time options ---------------------------------------------------------------------------------


def quantize_fp8(modules: dict[str, torch.nn.Module], compute: torch.dtype) -> None:
    """Store transformer weights in float8 e4m3 and upcast each layer just for its forward (diffusers'
    layerwise casting); norms, embeddings and patchify layers stay in the compute dtype."""
    for name, module in modules.items():
        if name.startswith("transformer"):
            module.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=compute)


def set_attention(modules: dict[str, torch.nn.Module], backend: str) -> str:
    from diffusers.models.attention_dispatch import _AttentionBackendRegistry

    # set_attention_backend also makes the backend the process-wide default; keep that default as it was, so
    # another engine in the same process is not changed behind its back (each processor keeps its own setting).
    before = _AttentionBackendRegistry._active_backend
    try:
        for name, module in modules.items():
            if hasattr(module, "set_attention_backend") and name.startswith("transformer"):
                module.set_attention_backend(backend)
    finally:
        _AttentionBackendRegistry._active_backend = before
    return backend


def compile_blocks(modules: dict[str, torch.nn.Module]) -> str:
    """torch.compile each repeated transformer block (regional compilation: one compile serves every block)."""
    done = []
    for name, module in modules.items():
        if name.startswith("transformer"):
            if not getattr(module, "_repeated_blocks", None):
                raise UserError(f"--compile: {type(module).__name__} does not declare its repeated blocks")
            module.compile_repeated_blocks(backend=COMPILE_BACKEND, fullgraph=False)
            done.append(name)
    return f"{COMPILE_BACKEND}: repeated blocks of {', '.join(done)}"


# --- step caches -----------------------------------------------------------------------------------------------


def _calibration_hook() -> type:
    """MagCache's calibration (mean ratio of the blocks' residual norms between consecutive steps), per context.

    diffusers' own calibration mode prints its ratios on stdout and forgets them; this keeps them.
    """
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
            return TaylorSeerCacheConfig(taylor_factors_dtype=self.dtype, cache_identifiers=[TAYLOR_MODULES])
        if self.cache == "pab":
            self._probe_timesteps()
            return PyramidAttentionBroadcastConfig(spatial_attention_block_skip_range=2,
                                                   current_timestep_callback=lambda: self._timestep[0])
        raise AssertionError(self.cache)

    def _describe(self, steps: int) -> dict[str, Any]:
        if self.cache in THRESHOLDS:
            return {"threshold": self._threshold()} | ({"calibrated_steps": steps} if self.cache == "mag" else {})
        if self.cache == "taylorseer":
            return {"cache_interval": 5, "disable_cache_before_step": 3, "max_order": 1, "modules": TAYLOR_MODULES}
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

        blocks = _blocks(transformer)
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


def _blocks(transformer: torch.nn.Module) -> torch.nn.ModuleList:
    for name in ("blocks", "transformer_blocks", "layers"):
        blocks = getattr(transformer, name, None)
        if isinstance(blocks, torch.nn.ModuleList) and len(blocks):
            return blocks
    raise UserError(f"--cache mag: cannot find the repeated blocks of {type(transformer).__name__}")


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB of two frame stacks in [0, 1] (inf when identical)."""
    mse = float(((a.float() - b.float()) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)
