"""Engine options (offload, VAE tiling, compile, attention backend, fp8 weights; the step cache is step_cache.py).

Each option is applied to the loaded modules with diffusers' own hooks and model methods, never as a branch in
the sampling loop. Everything that can be refused is checked before any module is touched, so a bad combination
fails in one line instead of half-configuring a model.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from videogen import step_cache
from videogen.errors import UserError
from videogen.spec import RenderSpec
from videogen.step_cache import Options, psnr

if TYPE_CHECKING:
    from videogen.families.base import Family

__all__ = ["Options", "apply", "check", "psnr"]

log = logging.getLogger("videogen")

# Backends of diffusers' attention dispatcher that run on a CPU; every other one needs CUDA (or an NPU/XLA).
CPU_ATTENTION = {"native", "_native_math", "flex"}
ATTENTION_ALIASES = {"sdpa": "native", "math": "_native_math"}
# torch.compile backend; a test swaps in "eager" (graph capture without code generation) to stay fast.
COMPILE_BACKEND = "inductor"
# Modules that are moved by the offload hooks, in the order a render uses them.
OFFLOAD_ORDER = ("text_encoder", "image_encoder", "transformer", "transformer_2", "vae")


def attention_backends() -> list[str]:
    from diffusers.models.attention_dispatch import AttentionBackendName

    return [b.value for b in AttentionBackendName]


@dataclass(frozen=True)
class Option:
    """One engine option: the spec fields it reads, a check before loading, and `apply` to the loaded modules,
    which returns what the run record says of it (an empty dict when the option is off)."""

    fields: tuple[str, ...]
    check: Callable[[RenderSpec, torch.device], None]
    apply: Callable[[Family, dict[str, torch.nn.Module], RenderSpec, torch.device], dict[str, Any]]


def _check_offload(spec: RenderSpec, device: torch.device) -> None:
    if spec.offload not in ("none", "auto") and device.type != "cuda":
        where = "this machine has no CUDA GPU" if not torch.cuda.is_available() else "add --device cuda"
        raise UserError(f"--offload {spec.offload} moves weights between the CPU and a CUDA GPU; {where} "
                        "(use --offload none)")


def _apply_quantize(model: Family, modules: dict[str, torch.nn.Module], spec: RenderSpec,
                    _device: torch.device) -> dict[str, Any]:
    if spec.quantize != "fp8":
        return {}
    quantize_fp8(modules, model.dtype)
    return {"quantize": "fp8 (e4m3) weight storage, layerwise upcast to " + str(model.dtype).removeprefix("torch.")}


def _apply_placement(_model: Family, modules: dict[str, torch.nn.Module], spec: RenderSpec,
                     device: torch.device) -> dict[str, Any]:
    if spec.offload != "none":
        return {"offload": offload(modules, spec.offload, device)}
    for module in modules.values():
        module.to(device)
    return {}


def _apply_tiling(_model: Family, modules: dict[str, torch.nn.Module], spec: RenderSpec,
                  _device: torch.device) -> dict[str, Any]:
    if not spec.vae_tiling or "vae" not in modules:
        return {}
    vae = modules["vae"]
    if not hasattr(vae, "enable_tiling"):
        raise UserError(f"--vae-tiling: this model's VAE ({type(vae).__name__}) cannot decode in tiles")
    vae.enable_tiling()
    return {"vae_tiling": True}


def _check_attention(spec: RenderSpec, device: torch.device) -> None:
    if spec.attention is not None:
        attention_backend(spec.attention, device)


def _apply_attention(_model: Family, modules: dict[str, torch.nn.Module], spec: RenderSpec,
                     device: torch.device) -> dict[str, Any]:
    if spec.attention is None:
        return {}
    return {"attention": set_attention(modules, attention_backend(spec.attention, device))}


def _apply_compile(_model: Family, modules: dict[str, torch.nn.Module], spec: RenderSpec,
                   _device: torch.device) -> dict[str, Any]:
    return {"compile": compile_blocks(modules)} if spec.compile else {}


def _nothing(*_args: Any) -> dict[str, Any]:
    return {}


# In the order they are applied: weights are cast before they move, hooks set after the move.
OPTIONS: tuple[Option, ...] = (
    Option(("quantize",), _nothing, _apply_quantize),
    Option(("offload", "device"), _check_offload, _apply_placement),
    Option(("vae_tiling",), _nothing, _apply_tiling),
    Option(("attention",), _check_attention, _apply_attention),
    Option(("compile",), _nothing, _apply_compile),
)


def check(spec: RenderSpec, device: torch.device, blocks: int | None = None) -> None:
    """Refuse what this machine or this combination cannot do: one line each, before any weight moves.

    `blocks`: how many repeated blocks the model's transformer has (from its config), for the step caches."""
    for option in OPTIONS:
        option.check(spec, device)
    step_cache.check(spec, blocks)


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
    """Configure a freshly loaded model for `spec`'s engine options; returns the step cache, which renders switch
    on and off, with what every option recorded."""
    check(spec, device)
    modules = model.modules()
    applied: dict[str, Any] = {}
    for option in OPTIONS:
        applied.update(option.apply(model, modules, spec, device))
    return Options(transformers=[m for k, m in modules.items() if k.startswith("transformer")],
                   blocks=model.block_attributes, cache=spec.cache, threshold=spec.cache_threshold,
                   dtype=model.dtype, applied=applied)


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


