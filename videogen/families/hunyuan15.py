"""HunyuanVideo 1.5, text- and image-to-video: Qwen2.5-VL + ByT5 text, SigLIP image tokens, flow matching.

The transformer reads [latents, condition latents, mask] as its input channels (the condition: the first frame's
latents for image-to-video, zeros otherwise) and SigLIP tokens beside the text (zeros, which it masks out, for
text-to-video). Guidance is the pipeline's `guider` (diffusers' ClassifierFreeGuidance): its scale is --guidance,
defaulting to the folder's guider config; other guider settings are refused before loading.
"""

from __future__ import annotations

import json
import logging
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from videogen import images
from videogen.errors import UserError
from videogen.families.base import Defaults, Family, Geometry, read_config
from videogen.lazy import no_grad
from videogen.sampling import Conditioning, Plan, StepInfo
from videogen.spec import RenderSpec, where
from videogen.vae import LatentFormat, vae_geometry

if TYPE_CHECKING:
    import torch
else:
    from videogen.lazy import torch

log = logging.getLogger("videogen")

# The system message of HunyuanVideo15Pipeline's chat template (with its line-continuation spaces); the first
# CROP_START tokens of the templated prompt (the system part, as Qwen2.5-VL's tokenizer splits it) are dropped.
SYSTEM_MESSAGE = (
    "You are a helpful assistant. Describe the video by detailing the following aspects:         "
    "1. The main content and theme of the video.         "
    "2. The color, shape, size, texture, quantity, text, and spatial relationships of the objects.         "
    "3. Actions, events, behaviors temporal relationships, physical movement changes of the objects.         "
    "4. background environment, light, style and atmosphere.         "
    "5. camera angles, movements, and transitions used in the video."
)
CROP_START = 108
SKIP_LAYERS = 2  # the Qwen state used is hidden_states[-(SKIP_LAYERS + 1)]
GLYPH_TOKENS = 256  # ByT5 length: the quoted text of the prompt, as bytes
IMAGE_TOKENS = 729  # SigLIP tokens of a text-to-video render (all zero)
DEFAULT_ASPECT = (9, 16)  # height:width of an unsized text-to-video render (the pipeline's default)
QUOTED = re.compile(r"\"(.*?)\"|“(.*?)”")
# Guider settings the loop's guidance (uncond + scale * (cond - uncond), every step) expresses: their defaults.
GUIDER_DEFAULTS = {"guidance_rescale": 0.0, "use_original_formulation": False, "start": 0.0, "stop": 1.0,
                   "enabled": True}


def glyph_text(prompt: str) -> str | None:
    """What ByT5 reads: each quoted text of the prompt, once, as `Text "...". `; None when nothing is quoted."""
    found = list(dict.fromkeys(a or b for a, b in QUOTED.findall(prompt)))
    return "".join(f'Text "{t}". ' for t in found) if found else None


def buckets(target: int, step: int, max_ratio: float = 4.0) -> list[tuple[int, int]]:
    """(height, width) sizes of about target x target pixels in whole step x step blocks, tallest first, at
    most `max_ratio` between the sides: the aspect-ratio buckets HunyuanVideo 1.5 renders."""
    blocks = round((target / step) ** 2)
    out, tall, wide = [], blocks, 1
    while tall > 0:
        if max(tall, wide) / min(tall, wide) <= max_ratio:
            out.append((tall * step, wide * step))
        if (wide + 1) * tall <= blocks:
            wide += 1
        else:
            tall -= 1
    return out


def nearest_bucket(height: int, width: int, target: int, step: int) -> tuple[int, int]:
    """The bucket whose aspect ratio is nearest height:width without passing it (a landscape image never gets
    a taller bucket than itself, a portrait one never a wider one)."""
    sizes, ratio = buckets(target, step), height / width
    ratios = [round(h / w, 5) for h, w in sizes]
    fits = [i for i, r in enumerate(ratios) if (r <= ratio if ratio >= 1 else r >= ratio)]
    return sizes[min(fits, key=lambda i: abs(ratios[i] - ratio))]


def guider_config(path: Path) -> dict[str, Any]:
    f = path / "guider" / "guider_config.json"
    try:
        return json.loads(f.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: cannot read the guider config ({e})") from None


class Hunyuan15(Family):
    name = "hunyuan15"
    title = "HunyuanVideo 1.5"
    pipelines = ("HunyuanVideo15Pipeline",)
    tasks = ("t2v",)
    loras = False  # diffusers' HunyuanVideo 1.5 pipelines have no LoRA loader
    # HunyuanVideo15Pipeline.__call__ defaults; the size is the 16:9 bucket at the transformer's target_size and
    # the guidance the guider config's (both per folder, in `defaults_from`); 24 fps as in the model's examples.
    defaults = Defaults(frames=121, height=480, width=848, steps=50, guidance=6.0, fps=24)
    # 32 channels at 4x16 strides; only the VAE's scaling factor, no per-channel statistics. RGB factors: ComfyUI's.
    latent = LatentFormat(channels=32, layout="BCFHW", temporal=4, spatial=16, stats="none",
                          rgb=("hunyuanvideo15",))
    max_text_tokens = 1000  # Qwen tokens after the crop (the pipeline's tokenizer_max_length)
    # Qwen reads the system part too (cropped after it); ByT5 its fixed glyph length (as the presets' cards say)
    plan_facts = {"text_tokens": {"text_encoder": max_text_tokens + CROP_START, "text_encoder_2": GLYPH_TOKENS}}
    schedulers = ("euler",)  # its flow-matching Euler scheduler only
    takes_sigmas = True  # the pipeline takes `sigmas` too
    extra_modules = ("text_encoder_2",)
    # HunyuanVideo15ImageToVideoPipeline hands a mean-flow transformer the next timestep; the text-to-video
    # pipeline never does.
    passes_next_timestep: ClassVar[bool] = False

    def __init__(self, path: Path, index: dict[str, Any], device: torch.device, dtype: torch.dtype):
        super().__init__(path, index, device, dtype)
        self.tokenizer_2 = self.load("tokenizer_2")
        self.text_encoder_2 = self.load("text_encoder_2", dtype)

    @classmethod
    def geometry(cls, path: Path, index: dict[str, Any]) -> Geometry:
        geo, tr = vae_geometry(read_config(path, "vae")), read_config(path, "transformer")
        multiple = geo.spatial * int(tr.get("patch_size", 1))
        return Geometry(geo.temporal * int(tr.get("patch_size_t", 1)), multiple, multiple)

    @classmethod
    def defaults_from(cls, path: Path, index: dict[str, Any], spec: RenderSpec) -> dict[str, tuple[Any, str]]:
        target, step = cls.bucket_size(path)
        h, w = nearest_bucket(*DEFAULT_ASPECT, target, step)
        size = f"the model's default (the 16:9 bucket at target_size {target})"
        scale = float(guider_config(path).get("guidance_scale", 7.5))
        return {"height": (h, size), "width": (w, size), "guidance": (scale, "the model's guider config")}

    @staticmethod
    def bucket_size(path: Path) -> tuple[int, int]:
        """(target_size, bucket step): the transformer's trained size and the VAE's spatial stride."""
        return int(read_config(path, "transformer")["target_size"]), vae_geometry(read_config(path, "vae")).spatial

    @classmethod
    def check_spec(cls, path: Path, index: dict[str, Any], spec: RenderSpec) -> None:
        config = guider_config(path)
        if config.get("_class_name") != "ClassifierFreeGuidance":
            raise UserError(f"{path}: guider {config.get('_class_name')} is not supported (only ClassifierFreeGuidance)")
        for key, default in GUIDER_DEFAULTS.items():
            if config.get(key, default) != default:
                raise UserError(f"{path}: the guider config sets {key} {config[key]}; videogen applies only its "
                                "guidance_scale (--guidance)")

    # --- prompt -----------------------------------------------------------------------------------------------

    def chat(self, text: str, **kwargs: Any) -> Any:
        """The prompt in the model's chat template (an empty prompt is a space, as in the pipeline)."""
        messages = [[{"role": "system", "content": SYSTEM_MESSAGE}, {"role": "user", "content": text or " "}]]
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                                  return_dict=True, **kwargs)

    def prompt_tokens(self, text: str) -> int:
        return len(self.chat(text).input_ids[0]) - CROP_START

    @no_grad
    def embed(self, text: str, length: int) -> dict[str, torch.Tensor]:
        """Qwen states (chat template, hidden_states[-3], system part cropped) and ByT5 states of the quoted text."""
        tok = self.chat(text, padding="max_length", max_length=length + CROP_START, truncation=True,
                        return_tensors="pt")
        device = self.device_of(self.text_encoder)
        out = self.text_encoder(input_ids=tok.input_ids.to(device), attention_mask=tok.attention_mask.to(device),
                                output_hidden_states=True)
        states = out.hidden_states[-(SKIP_LAYERS + 1)][:, CROP_START:]
        mask = tok.attention_mask[:, CROP_START:]
        glyphs, glyph_mask = self.embed_glyphs(glyph_text(text))
        # the pipeline casts embeddings and masks alike to the transformer's dtype
        to = {"device": self.device, "dtype": self.dtype}
        return {"encoder_hidden_states": states.to(**to), "encoder_attention_mask": mask.to(**to),
                "encoder_hidden_states_2": glyphs.to(**to), "encoder_attention_mask_2": glyph_mask.to(**to)}

    def embed_glyphs(self, glyph: str | None) -> tuple[torch.Tensor, torch.Tensor]:
        """ByT5 states of the prompt's quoted text; zeros, all masked, when it quotes nothing."""
        width = self.text_encoder_2.config.d_model
        if glyph is None:
            return torch.zeros(1, GLYPH_TOKENS, width), torch.zeros(1, GLYPH_TOKENS, dtype=torch.int64)
        if len(self.tokenizer_2(glyph).input_ids) > GLYPH_TOKENS:
            log.warning("the prompt's quoted text is longer than ByT5's %d bytes; the rest is cut off", GLYPH_TOKENS)
        tok = self.tokenizer_2(glyph, padding="max_length", max_length=GLYPH_TOKENS, truncation=True,
                               add_special_tokens=True, return_tensors="pt")
        device = self.device_of(self.text_encoder_2)
        states = self.text_encoder_2(input_ids=tok.input_ids.to(device),
                                     attention_mask=tok.attention_mask.float().to(device))[0]
        return states, tok.attention_mask

    def guided(self, spec: RenderSpec) -> bool:
        # the guider runs the negative prompt unless its scale is 1 (math.isclose, as ClassifierFreeGuidance)
        return not math.isclose(self.scale(spec), 1.0)

    @staticmethod
    def scale(spec: RenderSpec) -> float:
        return 1.0 if spec.guidance is None else float(spec.guidance)  # 0 is a scale too (the negative alone)

    def image_conditioning(self, spec: RenderSpec) -> dict[str, torch.Tensor]:
        """Text-to-video: zero condition latents and mask, zero SigLIP tokens (the transformer masks them out)."""
        shape = self.latent_shape(spec)
        width = self.transformer.config.image_embed_dim
        return {"condition": torch.zeros(1, shape[1] + 1, *shape[2:], device=self.device),
                "image_embeds": torch.zeros(1, IMAGE_TOKENS, width, device=self.device, dtype=self.dtype)}

    # --- sampling ---------------------------------------------------------------------------------------------

    def sigmas(self, spec: RenderSpec, scheduler: Any) -> Any:
        import numpy as np

        assert spec.steps  # sigmas 1 .. 1/N before the scheduler's shift, as the pipelines set them
        return np.linspace(1.0, 0.0, spec.steps + 1)[:-1]

    def plan(self, spec: RenderSpec, cond: Conditioning, uncond: Conditioning | None) -> Plan:
        scheduler = self.new_scheduler(spec)
        timesteps = scheduler.timesteps
        mean_flow = self.passes_next_timestep and bool(self.transformer.config.use_meanflow)

        def predict(x: torch.Tensor, t: torch.Tensor, c: Conditioning, step: StepInfo) -> torch.Tensor:
            n = x.shape[0]
            tensors = dict(c.tensors)
            inputs = torch.cat([x, tensors.pop("condition").expand(n, -1, -1, -1, -1)], dim=1).to(self.dtype)
            extra = {}
            if mean_flow:  # the timestep the step goes to (0 after the last)
                following = timesteps[step.index + 1] if step.index + 1 < len(timesteps) else torch.zeros(())
                extra["timestep_r"] = following.to(self.device).expand(n).to(self.dtype)
            return self.transformer(hidden_states=inputs, timestep=t.expand(n).to(self.dtype), return_dict=False,
                                    **tensors, **extra)[0]

        latents = self.noise(self.latent_shape(spec), self.generator(spec))
        scale = self.scale(spec)
        return self.make_plan(spec, scheduler, latents, predict, cond, uncond, guidance=lambda _t: scale,
                              batch_cfg=spec.batch_cfg,
                              info={"sigmas": [round(float(v), 6) for v in scheduler.sigmas],
                                    "size_from": spec.extras.get("where", {}).get("height", "--height")})


class Hunyuan15I2V(Hunyuan15):
    """HunyuanVideo15ImageToVideoPipeline: the first frame's latents as the condition, its SigLIP tokens beside
    the text. The size is not free: it is the aspect-ratio bucket nearest the image at the transformer's
    target_size (the pipeline takes no height or width), so a --height/--width that disagrees is refused."""

    pipelines = ("HunyuanVideo15ImageToVideoPipeline",)
    tasks = ("i2v",)
    extra_modules = ("text_encoder_2", "image_encoder")
    passes_next_timestep = True

    def __init__(self, path: Path, index: dict[str, Any], device: torch.device, dtype: torch.dtype):
        super().__init__(path, index, device, dtype)
        self.feature_extractor = self.load("feature_extractor")
        self.image_encoder = self.load("image_encoder", dtype)

    @classmethod
    def image_bucket(cls, path: Path, spec: RenderSpec) -> tuple[int, int, str]:
        """(height, width, why) of the render for the spec's --image, from the configs and the image alone."""
        assert spec.image is not None
        image = images.load_image(spec.image, "--image")
        target, step = cls.bucket_size(path)
        h, w = nearest_bucket(image.height, image.width, target, step)
        return h, w, f"the {image.width}x{image.height} --image's aspect-ratio bucket at target_size {target}"

    @classmethod
    def defaults_from(cls, path: Path, index: dict[str, Any], spec: RenderSpec) -> dict[str, tuple[Any, str]]:
        out = super().defaults_from(path, index, spec)
        if spec.image is not None:  # without one, check_images refuses the render
            h, w, why = cls.image_bucket(path, spec)
            out.update(height=(h, why), width=(w, why))
        return out

    @classmethod
    def check_spec(cls, path: Path, index: dict[str, Any], spec: RenderSpec) -> None:
        super().check_spec(path, index, spec)
        h, w, why = cls.image_bucket(path, spec)
        if (spec.height, spec.width) != (h, w):
            given = where(spec, "height" if spec.height != h else "width")
            raise UserError(f"{given}: this HunyuanVideo 1.5 image-to-video model renders {w}x{h} ({why}); "
                            "leave --height and --width out")

    def image_conditioning(self, spec: RenderSpec) -> dict[str, torch.Tensor]:
        """The image resized to cover the bucket and its centre cut out, as the pipeline fits it: its latents on the
        first latent frame (mask 1 there, 0 elsewhere), and its SigLIP tokens."""
        assert spec.image and spec.width and spec.height
        image = images.cover_image(images.load_image(spec.image), spec.width, spec.height)
        first = self.encode_video(images.to_tensor(image).unsqueeze(2))  # posterior mode x scaling_factor
        shape = self.latent_shape(spec)
        condition = torch.zeros(1, shape[1] + 1, *shape[2:], device=self.device)
        condition[:, : shape[1], :1] = first
        condition[:, shape[1], 0] = 1.0
        pixels = self.feature_extractor.preprocess(images=image, do_resize=True, return_tensors="pt",
                                                   do_convert_rgb=True).pixel_values
        encoder = self.image_encoder
        tokens = encoder(pixel_values=pixels.to(self.device_of(encoder), encoder.dtype)).last_hidden_state
        return {"condition": condition, "image_embeds": tokens.to(self.device, self.dtype)}
