"""What a model family adapter is: facts declared as data, and the shared half of every render.

A family declares its latent format, the optional spec fields it takes, its geometry and defaults. The base
class owns what is the same everywhere: loading the usual components, refusing fields before loading, the
scheduler and its sigmas, seeded noise, the negative-prompt cache, the prompt's token limit, the x0 estimate,
de-normalisation and decoding. An adapter writes only `embed` (its text encoder), `plan` (its network call)
and its real oddities.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from videogen import vae as vae_ops
from videogen.errors import UserError
from videogen.jsonfile import read_object
from videogen.lazy import no_grad
from videogen.loading import components, load_component
from videogen.sampling import X0, Conditioning, Plan, Predict
from videogen.spec import RenderSpec
from videogen.vae import LatentFormat

if TYPE_CHECKING:
    import torch
else:
    from videogen.lazy import torch

log = logging.getLogger("videogen")

# Spec fields only some families take, and what each one is for (the refusal names it).
OPTIONAL_FIELDS: dict[str, str] = {
    "guidance_2": "is for two-expert models (Wan 2.2 A14B)",
    "true_guidance": "is for guidance-distilled models (HunyuanVideo), whose --guidance is embedded",
    "dynamic_guidance": "is CogVideoX's cosine guidance ramp",
    "scheduler": "chooses a flow-matching sampler",
    "flow_shift": "shifts a flow-matching schedule",
    "audio_guidance": "guides a sound track (LTX-2)",
    "stg": "is LTX-2's spatio-temporal guidance",
    "stg_blocks": "are the blocks of LTX-2's spatio-temporal guidance",
    "modality_guidance": "is LTX-2's audio-video modality guidance",
    "guidance_rescale": "is LTX-2's guidance rescale",
    "no_audio": "is for models that make sound (LTX-2)",
    "image_crf": "re-compresses the image of LTX-2's image-to-video",
}


@dataclass(frozen=True)
class Geometry:
    """Which frame counts and sizes a model takes.

    frames = temporal*k + 1, the latent frame count k + 1 a multiple of `latent_frames` (a transformer
    whose patches span several latent frames), sizes multiples of `multiple_h` / `multiple_w`.
    """

    temporal: int
    multiple_h: int
    multiple_w: int
    latent_frames: int = 1

    def problems(self, frames: int, height: int, width: int) -> list[str]:
        out = []
        t, p = self.temporal, self.latent_frames
        if p > 1:
            valid = [t * (p * m - 1) + 1 for m in range(1, (frames - 1) // (t * p) + 3)]
            if frames not in valid:
                near = [v for v in valid if v < frames][-1:] + [v for v in valid if v > frames][:1]
                out.append(f"--frames {frames}: this model takes {valid[0]}, {valid[1]}, ... frames "
                           f"(latent frames a multiple of {p}): use {' or '.join(map(str, near))}")
        elif t > 1 and (frames - 1) % t:
            lo = (frames - 1) // t * t + 1
            out.append(f"--frames {frames} is not {t}k+1: use {lo if lo > 1 else lo + t} or {lo + t}"
                       if lo > 1 else f"--frames {frames} is not {t}k+1: use {lo + t}")
        for flag, value, m in (("--height", height, self.multiple_h), ("--width", width, self.multiple_w)):
            if value % m:
                lo = value // m * m
                out.append(f"{flag} {value} is not a multiple of {m}: use {lo} or {lo + m}" if lo
                           else f"{flag} {value} is not a multiple of {m}: use {m}")
        return out


@dataclass(frozen=True)
class Defaults:
    """A family's defaults: those of its diffusers pipeline's `__call__`, plus the documented fps."""

    frames: int
    height: int
    width: int
    steps: int
    guidance: float
    fps: int
    negative_prompt: str = ""


def read_config(path: Path, component: str) -> dict[str, Any]:
    f = path / component / "config.json"
    if not f.is_file():
        f = path / component / "scheduler_config.json"
    return read_object(f, f"the {component} config")


class Family(ABC):
    """One model family: class attributes declare its facts; `embed` and `plan` are its own code."""

    name: ClassVar[str]
    title: ClassVar[str]  # how people write the family's name, for messages
    pipelines: ClassVar[tuple[str, ...]]  # diffusers pipeline classes this adapter drives
    tasks: ClassVar[tuple[str, ...]]  # "t2v", "i2v", "flf2v"
    defaults: ClassVar[Defaults]
    latent: ClassVar[LatentFormat]  # nominal format; `latent_format` fills in one folder's channels and strides
    max_text_tokens: ClassVar[int]  # the text encoder's length in the family's pipeline
    # Which of OPTIONAL_FIELDS this family takes; `refusals` words a refusal where the generic one says too little.
    accepts: ClassVar[frozenset[str]] = frozenset({"scheduler", "flow_shift"})
    refusals: ClassVar[dict[str, str]] = {}
    schedulers: ClassVar[tuple[str, ...] | None] = None  # flow samplers it takes by name (None: all)
    min_steps: ClassVar[int] = 1
    # The transformer's attributes holding its repeated blocks (step caches use them), and the config keys
    # counting them (so that what needs several blocks is refused before loading).
    block_attributes: ClassVar[tuple[str, ...]] = ("transformer_blocks",)
    block_count_keys: ClassVar[tuple[str, ...]] = ("num_layers",)
    vae_float32: ClassVar[bool] = False  # decode in float32 whatever the model's dtype
    # The torch modules a family loads itself (in its __init__, as attributes of these names) besides the base
    # class's text_encoder, transformer and vae: offload, compile and dtype reach them through `modules`.
    extra_modules: ClassVar[tuple[str, ...]] = ()
    # Families whose plan hands `spec.sigmas` (an exact schedule) to the scheduler (`new_scheduler` does).
    takes_sigmas: ClassVar[bool] = False
    # Input spec fields of videogen/clips.py this family takes (video, mask, reference_images, strength, ...),
    # and those it cannot render without; any other one set is refused before loading.
    inputs: ClassVar[frozenset[str]] = frozenset()
    required_inputs: ClassVar[frozenset[str]] = frozenset()
    sound: ClassVar[bool] = False  # whether its models make a sound track (`decode_audio`)
    # Whether its diffusers pipelines load LoRAs (a LoraLoaderMixin): a LoRA's key formats, the modules it may touch
    # and the reference for parity come from that loader, so a family without one takes no LoRA. Declared, so that
    # a refusal costs no import of diffusers' pipelines; tests/test_lora_families.py holds it to diffusers.
    loras: ClassVar[bool] = True
    # What `videogen plan` needs to know of this family that the configs do not say (a card's "guidance": how the
    # negative prompt runs), merged into the card it reads from a local folder.
    plan_facts: ClassVar[dict[str, Any]] = {}

    def __init__(self, path: Path, index: dict[str, Any], device: torch.device, dtype: torch.dtype):
        self.path, self.index, self.device, self.dtype = path, index, device, dtype
        self.components = components(index)
        self.tokenizer = self.load("tokenizer")
        self.text_encoder = self.load("text_encoder", dtype)
        self.transformer = self.load("transformer", dtype)
        self.vae = self.load("vae", torch.float32 if self.vae_float32 else dtype)
        self.scheduler = self.load("scheduler")
        self.vae_geo = vae_ops.vae_geometry(dict(self.vae.config))
        self.format = self.latent_format(path, index)
        self._negative: dict[tuple[str, int], dict[str, torch.Tensor]] = {}

    def load(self, name: str, dtype: torch.dtype | None = None) -> Any:
        """One component of the model folder, with its library's loader; torch modules come in eval mode."""
        part = load_component(self.path, name, *self.components[name], dtype=dtype)
        return part.eval() if isinstance(part, torch.nn.Module) else part

    def modules(self) -> dict[str, torch.nn.Module]:
        """The loaded torch modules by component name (for offload, compile, dtype)."""
        mods = {"text_encoder": self.text_encoder, "transformer": self.transformer, "vae": self.vae}
        for name in self.extra_modules:
            if getattr(self, name, None) is not None:
                mods[name] = getattr(self, name)
        return mods

    # --- what is known before loading -----------------------------------------------------------------------

    @staticmethod
    def latent_channels(transformer_config: dict[str, Any]) -> int:
        return int(transformer_config.get("out_channels") or transformer_config["in_channels"])

    @classmethod
    def latent_format(cls, path: Path, index: dict[str, Any]) -> LatentFormat:
        """The declared format with this folder's channels and strides, from its configs alone."""
        return cls.latent.with_model(cls.latent_channels(read_config(path, "transformer")),
                                     vae_ops.vae_geometry(read_config(path, "vae")))

    @classmethod
    def block_count(cls, path: Path) -> int:
        config = read_config(path, "transformer")
        return sum(int(config.get(k) or 0) for k in cls.block_count_keys)

    @classmethod
    @abstractmethod
    def geometry(cls, path: Path, index: dict[str, Any]) -> Geometry:
        """Frame and size multiples, read from the configs alone (no weights loaded)."""

    @classmethod
    def task_of(cls, index: dict[str, Any]) -> str:
        return cls.tasks[0]

    @classmethod
    def defaults_for(cls, index: dict[str, Any]) -> Defaults:
        """The defaults of this model (a family whose models differ, e.g. in fps, overrides this)."""
        return cls.defaults

    @classmethod
    def defaults_from(cls, path: Path, index: dict[str, Any], spec: RenderSpec) -> dict[str, tuple[Any, str]]:
        """Field -> (default, where it comes from) that this folder's configs or the spec's inputs decide (a
        size from the input image, a guidance scale from a config); they override `defaults_for`."""
        return {}

    @classmethod
    def accepts_for(cls, index: dict[str, Any]) -> frozenset[str]:
        """The optional fields this model takes (a family whose models differ overrides this)."""
        return cls.accepts

    @classmethod
    def check_fields(cls, index: dict[str, Any], spec: RenderSpec) -> None:
        """Refuse every set field this model does not take, naming the family (`resolve_spec` rewrites a flag
        the user did not type as where the value came from: preset key, batch line, default)."""
        takes = cls.accepts_for(index)
        for name, purpose in OPTIONAL_FIELDS.items():
            value = getattr(spec, name)
            if value is None or value is False or name in takes:
                continue
            flag = "--" + name.replace("_", "-")
            raise UserError(cls.refusals.get(name) or f"{flag} {purpose}; this {cls.name} model does not take it")
        if spec.scheduler is not None and cls.schedulers is not None and spec.scheduler not in cls.schedulers:
            names = " or ".join(f"--scheduler {s}" for s in cls.schedulers)
            raise UserError(f"{cls.title} samples with its own scheduler only ({names}), not --scheduler "
                            f"{spec.scheduler}")
        if spec.steps is not None and spec.steps < cls.min_steps:
            raise UserError(f"{cls.title} needs --steps {cls.min_steps} or more")

    @classmethod
    def check_spec(cls, path: Path, index: dict[str, Any], spec: RenderSpec) -> None:
        """Refuse, before any weight is read, what this model cannot do (told from its configs alone)."""
        return None  # most models take whatever their geometry and fields allow

    # --- prompt -----------------------------------------------------------------------------------------------

    @abstractmethod
    def embed(self, text: str, length: int) -> dict[str, torch.Tensor]:
        """The text encoder's tensors for one prompt, padded or cut to `length` tokens."""

    def tokens(self, text: str, length: int, **kwargs: Any) -> Any:
        """`text` padded or cut to `length` tokens, with special tokens, as the pipelines tokenize a prompt."""
        return self.tokenizer([text], padding="max_length", max_length=length, truncation=True,
                              add_special_tokens=True, return_tensors="pt", **kwargs)

    @staticmethod
    def device_of(module: torch.nn.Module) -> torch.device:
        """Where a module computes (offload hooks may keep it elsewhere between calls)."""
        return next(module.parameters()).device

    def text_length(self, spec: RenderSpec) -> int:
        return spec.max_sequence_length or self.max_text_tokens

    def prompt_tokens(self, text: str) -> int:
        """How many tokens the text encoder would read from `text` without a limit."""
        return len(self.tokenizer(text, add_special_tokens=True).input_ids)

    def guided(self, spec: RenderSpec) -> bool:
        """Whether this render runs the negative prompt (classifier-free guidance above 1)."""
        return (spec.guidance or 1.0) > 1.0

    def image_conditioning(self, spec: RenderSpec) -> dict[str, torch.Tensor]:
        """Image tensors that go with both the prompt and the negative prompt (image-to-video)."""
        return {}

    def check_prompt(self, text: str, length: int, what: str) -> dict[str, Any]:
        """Warn about words the vocabulary lacks and about tokens past the encoder's limit; what to record."""
        from videogen.text import warn_unknown

        warn_unknown(self.tokenizer, [text])
        n = self.prompt_tokens(text)
        if n <= length:
            return {}
        log.warning("the %s has %d tokens; this model's text encoder reads %d, the last %d are cut off",
                    what.replace("_", " "), n, length, n - length)
        return {f"{what}_truncated": {"tokens": n, "kept": length}}

    def encode(self, spec: RenderSpec) -> tuple[Conditioning, Conditioning | None]:
        """Prompt (and image) conditioning; the second is None when guidance is off."""
        length = self.text_length(spec)
        info = self.check_prompt(spec.prompt, length, "prompt")
        image = self.image_conditioning(spec)  # the same image tensors go with the prompt and the negative
        cond = Conditioning("cond", {**self.embed(spec.prompt, length), **image}, info)
        if not self.guided(spec):
            return cond, None
        key = (spec.negative_prompt or "", length)
        if key not in self._negative:  # the same negative prompt across a batch is encoded once
            info.update(self.check_prompt(key[0], length, "negative_prompt") if key[0] else {})
            self._negative = {key: self.embed(key[0], length)}
        return cond, Conditioning("uncond", {**self._negative[key], **image})

    # --- sampling ---------------------------------------------------------------------------------------------

    def sigmas(self, spec: RenderSpec, scheduler: Any) -> Any:
        """The family's sigma schedule for `spec.steps`, or None for the scheduler's own spacing."""
        return None

    def new_scheduler(self, spec: RenderSpec, **extra: Any) -> Any:
        """A fresh scheduler (schedulers keep per-run state) with this render's timesteps set."""
        import inspect

        from videogen.schedulers import make_scheduler, set_timesteps

        assert spec.steps
        scheduler = make_scheduler(self.scheduler, spec.scheduler, spec.flow_shift)
        if spec.sigmas is not None:  # the user's exact schedule (only where `takes_sigmas`)
            set_timesteps(scheduler, spec.steps, spec.sigmas, self.device)
            return scheduler
        sigmas = self.sigmas(spec, scheduler)
        accepts = inspect.signature(scheduler.set_timesteps).parameters
        if sigmas is not None and "sigmas" in accepts:
            scheduler.set_timesteps(sigmas=sigmas, device=self.device,
                                    **{k: v for k, v in extra.items() if k in accepts})
        else:
            scheduler.set_timesteps(spec.steps, device=self.device)
        return scheduler

    def latent_shape(self, spec: RenderSpec) -> tuple[int, ...]:
        """The initial latents' shape in the declared layout (packed layouts: before packing)."""
        assert spec.frames and spec.height and spec.width
        f = self.format
        grid = ((spec.frames - 1) // f.temporal + 1, spec.height // f.spatial, spec.width // f.spatial)
        if f.layout == "BFCHW":
            return (1, grid[0], f.channels, *grid[1:])
        return (1, f.channels, *grid)

    def noise(self, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
        """Seeded float32 noise drawn on the CPU, then moved: the same video on every device."""
        return torch.randn(shape, generator=generator, dtype=torch.float32).to(self.device)

    @staticmethod
    def generator(spec: RenderSpec) -> torch.Generator:
        """Seed N: one CPU generator per render, drawn from in the order the family's pipeline draws."""
        assert spec.seed is not None
        return torch.Generator("cpu").manual_seed(spec.seed)

    def flow_x0(self, scheduler: Any) -> X0:
        """x0 = x_t - sigma * v for flow matching (x_t + (1 - sigma) * v where the schedule runs the other way)."""
        sigmas = scheduler.sigmas
        clean = 1.0 if scheduler.config.get("invert_sigmas") else 0.0

        def x0(out: torch.Tensor, _t: torch.Tensor, x: torch.Tensor, i: int) -> torch.Tensor:
            return x.float() + (clean - float(sigmas[i])) * out.float()

        return x0

    def make_plan(self, spec: RenderSpec, scheduler: Any, latents: torch.Tensor, predict: Predict,
                  cond: Conditioning, uncond: Conditioning | None, *,
                  network: Callable[[torch.Tensor], Any] | None = None,
                  guidance: Callable[[torch.Tensor], float] | None = None,
                  timesteps: torch.Tensor | None = None, **kwargs: Any) -> Plan:
        """A Plan with the shared parts filled in: constant guidance, one network, flow x0, the scheduler's record."""
        from videogen.schedulers import describe

        scale = float(spec.guidance or 1.0)
        info = {"scheduler": describe(scheduler), **kwargs.pop("info", {})}
        if "x0" not in kwargs:
            kwargs["x0"] = self.flow_x0(scheduler)
        timesteps = scheduler.timesteps if timesteps is None else timesteps  # a tail of them: video-to-video
        return Plan(latents=latents, scheduler=scheduler, timesteps=timesteps, predict=predict,
                    network=network or (lambda _t: self.transformer), cond=cond, uncond=uncond,
                    guidance=guidance or (lambda _t: scale),
                    to_video=lambda x: self.video_latents(x, spec), info=info, **kwargs)

    @abstractmethod
    def plan(self, spec: RenderSpec, cond: Conditioning, uncond: Conditioning | None) -> Plan:
        """Scheduler, timesteps, seeded initial latents and the network wrapped as `predict`."""

    # --- decoding ---------------------------------------------------------------------------------------------

    def video_latents(self, latents: torch.Tensor, spec: RenderSpec) -> torch.Tensor:
        """The loop's latents as model-space [B,C,F,h,w] (packed layouts override this)."""
        return latents.permute(0, 2, 1, 3, 4) if self.format.layout == "BFCHW" else latents

    def vae_decode(self, z: torch.Tensor, spec: RenderSpec) -> torch.Tensor:
        """VAE latents [B,C,F,h,w] -> video [B,3,F,H,W] in [-1, 1]."""
        return vae_ops.decode(self.vae, z, self.vae_geo.per_frame)

    @no_grad
    def decode(self, latents: torch.Tensor, spec: RenderSpec) -> torch.Tensor:
        """Final latents -> frames [F,H,W,3] float32 in [0,1] on the CPU."""
        return self.decode_video(self.video_latents(latents, spec), spec)

    @no_grad
    def decode_video(self, z: torch.Tensor, spec: RenderSpec) -> torch.Tensor:
        """Model-space latents [B,C,F,h,w] -> frames [F,H,W,3] float32 in [0,1] on the CPU."""
        # de-normalised in the wider of the two dtypes, as the pipelines do, then decoded in the VAE's
        z = self.format.denormalize(self.vae, z.to(torch.promote_types(z.dtype, self.vae.dtype)))
        return vae_ops.to_frames(self.vae_decode(z, spec))[0]

    def decode_audio(self, latents: Any, spec: RenderSpec) -> tuple[torch.Tensor, int] | None:
        """Final latents -> (waveform [channels, samples] float32 on the CPU, sample rate); None when silent."""
        return None

    @no_grad
    def encode_video(self, video: torch.Tensor) -> torch.Tensor:
        """Pixels [B,3,F,H,W] in [-1,1] -> normalised latents (posterior mode, no random draw), float32."""
        z = vae_ops.encode(self.vae, video.to(self.vae.device), self.vae_geo.per_frame, mode=True)
        return self.format.normalize(self.vae, z).to(self.device, torch.float32)
