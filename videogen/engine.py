"""The engine: load a model once, then render many RenderSpecs through the one sampling loop."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from videogen import loading
from videogen.errors import RenderError, UserError
from videogen.families import Family
from videogen.resolve import ModelInfo, inspect_model, lora_infos, relabel, resolve_spec, versions
from videogen.sampling import StepCallback, finite, sample
from videogen.spec import ENGINE_FIELDS, RenderSpec

log = logging.getLogger("videogen")
Progress = Callable[[str, int, int], None]  # (stage, done, total)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# ENGINE_FIELDS (declared in spec.py): fields that change how a model is loaded; renders differing there need
# another Engine. What is known before loading (ModelInfo, resolve_spec, ...) lives in videogen.resolve, without
# torch; it is re-exported here.
__all__ = ["ENGINE_FIELDS", "Engine", "ModelInfo", "RenderResult", "inspect_model", "relabel", "resolve_spec"]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device '{name}'; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"--device {name}: no CUDA GPU is available here; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(f"--device {name}: only {torch.cuda.device_count()} GPU(s) here")
    elif device.type != "cpu":
        raise UserError(f"unsupported device '{name}'; use auto, cpu, cuda or cuda:N")
    return device


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    return DTYPES[name]


def denormals_flushed() -> bool:
    """Whether this thread flushes denormal floats to zero. torch sets it but cannot say it, so a float32
    denormal is made and read back: it is zero exactly when flushing is on."""
    return float(torch.tensor([1e-39], dtype=torch.float32) * 1.0) == 0.0


@contextlib.contextmanager
def flushing_denormals() -> Iterator[None]:
    """Denormal floats flushed to zero while a model loads or renders (denormals make small models several times
    slower on CPUs), then the caller's setting back: the Python API leaves no process-wide change behind.
    Also a decorator (each call enters it afresh)."""
    before = denormals_flushed()
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(before)


@dataclass
class RenderResult:
    frames: np.ndarray  # uint8 [F,H,W,3]
    frames_float: torch.Tensor  # float32 [F,H,W,3] in [0,1], before quantisation
    spec: RenderSpec  # resolved: every default filled in
    record: dict[str, Any] = field(default_factory=dict)
    audio: tuple[torch.Tensor, int] | None = None  # waveform [channels, samples] float32 and its sample rate


class Engine:
    """A loaded model. `Engine.load(...)` once, then `render(spec)` as often as needed."""

    options: Any = None  # videogen.options.Options: the engine options applied at load (step cache, ...)
    loras: Any = None  # videogen.lora.merge.LoraState: the LoRAs merged now; each render switches to its own
    memory: Any = None  # videogen.plan.auto.Memory: the offload and tiling chosen at load, and the plans

    def __init__(self, info: ModelInfo, model: Family, key: tuple[Any, ...], load_seconds: float):
        self.info, self.model, self.key, self.load_seconds = info, model, key, load_seconds

    @classmethod
    @flushing_denormals()
    def load(cls, spec: RenderSpec, progress: Progress | None = None) -> Engine:
        start = time.perf_counter()
        info = inspect_model(spec.model, spec.revision, spec.variant)
        device = resolve_device(spec.device)
        dtype = resolve_dtype(spec.dtype, device)
        from videogen import options

        try:  # refuse impossible engine options before reading any weight, naming where they came from
            options.check(spec, device, info.family.block_count(info.source.path))
        except UserError as e:
            raise UserError(relabel(str(e), spec)) from None
        from videogen.plan import auto

        requested = spec  # renders are matched to this engine by what they ask for (--offload auto included)
        spec, memory = auto.resolve(spec, info, device, dtype)
        if progress:
            progress("load", 0, 1)
        quiet_libraries()
        try:
            model = info.family(info.source.path, info.index, device, dtype)
        except (UserError, KeyboardInterrupt):
            raise
        except Exception as e:  # a corrupt or mismatched checkpoint
            raise UserError(f"{info.source.path}: cannot load the model: {type(e).__name__}: {e}") from None
        from videogen.lora.merge import LoraState

        # LoRAs go in after the dtype cast and before fp8 storage, offload hooks and compilation, so that each of
        # those works on the merged weights (later switches write into the same tensors in place).
        loras = LoraState(model.modules(), info.source.path)
        loras.switch(lora_infos(spec, info))
        applied = options.apply(model, spec, device)
        if progress:
            progress("load", 1, 1)
        key = engine_key(requested)
        engine = cls(info, model, key, time.perf_counter() - start)
        engine.options, engine.loras, engine.memory = applied, loras, memory
        return engine

    def accepts(self, spec: RenderSpec) -> bool:
        return engine_key(spec) == self.key

    def resolve(self, spec: RenderSpec) -> RenderSpec:
        return resolve_spec(spec, self.info)

    @torch.no_grad()
    @flushing_denormals()
    def render(self, spec: RenderSpec, progress: Progress | None = None,
               on_step: StepCallback | None = None) -> RenderResult:
        """One render. `on_step(step_index, total, latents, x0)` is called after every sampler step, with the
        step's clean-video estimate x0 as model-space latents [B,C,F,h,w] (see the family's `format`)."""
        spec = self.resolve(spec)
        timings: dict[str, float] = {"load": round(self.load_seconds, 4)}
        loras = lora_infos(spec, self.info)
        if self.loras is not None and self.loras.switch(loras):  # the base weights stay loaded
            timings["lora_switch"] = round(self.loras.last_switch_seconds, 4)

        device = self.model.device
        measured: dict[str, float] | None = {} if device.type == "cuda" else None

        def stage(name: str, fn: Callable[[], Any]) -> Any:
            if measured is not None:  # each stage's own peak, weights resident on the GPU included
                torch.cuda.reset_peak_memory_stats(device)
            start = time.perf_counter()
            out = fn()
            timings[name] = round(time.perf_counter() - start, 4)
            if measured is not None:
                measured[name] = round(torch.cuda.max_memory_allocated(device) / 2**30, 4)
            return out

        if progress:
            progress("encode", 0, 1)
        cond, uncond = stage("encode", lambda: self.model.encode(spec))
        if progress:
            progress("encode", 1, 1)
        opts = self.options
        # Sampling and decoding under inference mode: no autograd bookkeeping (about 5% faster on a CPU than
        # no_grad). Prompt embeddings, which adapters cache across renders, stay ordinary tensors.
        run, decode = torch.inference_mode()(sample), torch.inference_mode()(self.model.decode)
        reference = None
        if opts is not None and opts.needs_reference(spec):  # --cache-drift, or MagCache calibration

            def uncached() -> torch.Tensor:
                with opts.uncached(spec):
                    return decode(run(self.model.plan(spec, cond, uncond)), spec).clone()

            reference = stage("uncached_reference", uncached)
        plan = self.model.plan(spec, cond, uncond)
        total = len(plan.timesteps)
        if progress:
            progress("denoise", 0, total)
        with opts.cached(spec) if opts is not None else contextlib.nullcontext():
            latents = stage("denoise", lambda: run(plan, self.step_callback(progress, on_step)))
        if not finite(latents):
            raise RenderError("the sampler produced NaN or infinite values (try --dtype float32 or bfloat16)")
        if progress:
            progress("decode", 0, 1)
        frames = stage("decode", lambda: decode(latents, spec)).clone()  # an ordinary tensor for callers
        audio = None  # (waveform [channels, samples] float32, sample rate) of models with sound
        if self.model.sound and not spec.no_audio:
            audio = stage("decode_audio", lambda: torch.inference_mode()(self.model.decode_audio)(latents, spec))
        if progress:
            progress("decode", 1, 1)
        timings["per_step"] = round(timings["denoise"] / max(total, 1), 4)
        record = self.record(spec, plan.info, timings)
        record["prompt_truncated"] = cond.info.get("prompt_truncated")
        if "negative_prompt_truncated" in cond.info:
            record["negative_prompt_truncated"] = cond.info["negative_prompt_truncated"]
        if loras:
            from videogen import lora

            record["loras"] = lora.record(loras)
        if opts is not None:
            record["engine_options"] = opts.record(spec, frames, reference)
        if self.memory is not None:
            from videogen.plan.auto import STAGES

            plan = self.memory.plan_for(spec, self.info, self.model.dtype)
            record["memory"] = self.memory.record(
                plan, None if measured is None else {STAGES.get(k, k): v for k, v in measured.items()})
        if audio is not None:
            wave, rate = audio
            audio = (wave.clone(), rate)
            record["audio"] = {"sample_rate": rate, "channels": int(wave.shape[0]),
                               "duration": round(wave.shape[1] / rate, 6)}
        return RenderResult(frames=_to_uint8(frames), frames_float=frames, spec=spec, record=record, audio=audio)

    @staticmethod
    def step_callback(progress: Progress | None, on_step: StepCallback | None) -> StepCallback | None:
        if progress is None and on_step is None:
            return None

        def each(i: int, n: int, latents: torch.Tensor, x0: torch.Tensor | None) -> None:
            if on_step is not None:
                on_step(i, n, latents, x0)
            if progress is not None:
                progress("denoise", i + 1, n)

        return each

    def chosen(self) -> dict[str, Any]:
        """The offload and tiling this engine runs with (what `--offload auto` chose), for the record's spec."""
        return {} if self.memory is None else {"offload": self.memory.offload, "vae_tiling": self.memory.vae_tiling}

    def record(self, spec: RenderSpec, plan_info: dict[str, Any], timings: dict[str, float]) -> dict[str, Any]:
        from videogen import clips

        device = self.model.device
        return {
            "prompt": spec.prompt, "negative_prompt": spec.negative_prompt, "seed": spec.seed,
            "steps": spec.steps, "guidance": spec.guidance, "frames": spec.frames, "height": spec.height,
            "width": spec.width, "fps": spec.fps,
            "model": self.info.source.record(), "family": self.info.family.name,
            "scheduler": plan_info.get("scheduler"),
            "sampling": {k: v for k, v in plan_info.items() if k != "scheduler"},
            "inputs": clips.describe(spec),
            "dtype": str(self.model.dtype).removeprefix("torch."), "device": str(device),
            "versions": versions(), "timings": timings,
            # A Hub model's commit, not the branch that named it: --from renders the same files.
            "spec": spec.replace(device=str(device), dtype=str(self.model.dtype).removeprefix("torch."),
                                 revision=self.info.source.revision or spec.revision, **self.chosen()).to_dict(),
        }


def quiet_libraries() -> None:
    """Our progress display replaces the libraries' own bars and info chatter."""
    import diffusers
    import transformers

    for lib in (diffusers, transformers):
        lib.utils.logging.disable_progress_bar()
        lib.utils.logging.set_verbosity_error()


def engine_key(spec: RenderSpec) -> tuple[Any, ...]:
    return tuple(getattr(spec, f) for f in ENGINE_FIELDS)


def _to_uint8(frames: torch.Tensor) -> np.ndarray:
    return (frames * 255).round().to(torch.uint8).numpy()


def model_path(ref: str) -> Path:
    return loading.resolve_model(ref).path
