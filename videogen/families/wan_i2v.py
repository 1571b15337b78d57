"""Wan image-to-video (`WanImageToVideoPipeline`): Wan 2.1 I2V and FLF2V, Wan 2.2 I2V A14B.

The first frame (and for first-last-frame, the last) is VAE-encoded inside an otherwise black video and handed
to the transformer as extra input channels, with a 4-channel mask saying which frames are given. Wan 2.1 also
adds CLIP image features to the cross-attention. Text, experts, sampling and decoding are Wan's own.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from videogen import images
from videogen.errors import UserError
from videogen.families.base import Defaults, read_config
from videogen.families.wan import Wan
from videogen.lazy import no_grad
from videogen.spec import RenderSpec

if TYPE_CHECKING:
    import torch
else:
    from videogen.lazy import torch


class WanI2V(Wan):
    pipelines = ("WanImageToVideoPipeline",)
    tasks = ("i2v", "flf2v")
    inputs = frozenset()
    # WanImageToVideoPipeline.__call__ defaults; Wan renders at 16 fps.
    defaults = Defaults(frames=81, height=480, width=832, steps=50, guidance=5.0, fps=16)
    extra_modules = ("transformer_2", "image_encoder")

    def __init__(self, path: Path, index: dict[str, Any], device: torch.device, dtype: torch.dtype):
        super().__init__(path, index, device, dtype)
        comps = self.components
        self.image_encoder: torch.nn.Module | None = None
        self.image_processor: Any = None
        # Only Wan 2.1's transformers read CLIP features (`image_dim`); Wan 2.2 ships no image encoder.
        if self.transformer.config.image_dim is not None:
            if "image_encoder" not in comps or "image_processor" not in comps:
                raise UserError(f"{path}: the transformer takes CLIP image features but the model has no "
                                "image_encoder/image_processor")
            self.image_processor = self.load("image_processor")
            # float32 as in diffusers' own examples: it runs once per render, and its features steer every step.
            self.image_encoder = self.load("image_encoder", torch.float32)

    @classmethod
    def task_of(cls, index: dict[str, Any]) -> str:
        return "i2v"  # first-last-frame is told from the transformer's config, in check_spec

    @classmethod
    def check_spec(cls, path: Path, index: dict[str, Any], spec: RenderSpec) -> None:
        """Wan 2.1 FLF2V's image embedder wants two images and I2V's one; Wan 2.2 I2V takes either."""
        super().check_spec(path, index, spec)
        if spec.last_image is not None and (spec.frames or 2) < 2:
            raise UserError("--last-image needs more than one frame (--frames 5 or more)")
        transformer = read_config(path, "transformer")
        if index.get("expand_timesteps") or transformer.get("image_dim") is None:
            return
        flf2v = transformer.get("pos_embed_seq_len") is not None
        if flf2v and spec.last_image is None:
            raise UserError("this Wan model is first-last-frame: give the last frame with --last-image")
        if not flf2v and spec.last_image is not None:
            raise UserError("this Wan 2.1 image-to-video model takes no --last-image "
                            "(use a first-last-frame model such as wan2.1-flf2v-14b-720p)")

    def image_conditioning(self, spec: RenderSpec) -> dict[str, torch.Tensor]:
        if self.expand_timesteps:  # a TI2V checkpoint saved as an I2V pipeline: Wan's clean-first-frame path
            return super().image_conditioning(spec)
        assert spec.image and spec.width and spec.height and spec.frames
        shots = [images.load_fitted(spec.image, spec.width, spec.height, "--image")]
        if spec.last_image is not None:
            shots.append(images.load_fitted(spec.last_image, spec.width, spec.height, "--last-image"))
        out = {"condition": self.condition(shots, spec.frames)}
        if self.image_encoder is not None:
            out["encoder_hidden_states_image"] = self.clip_features(shots)
        return out

    @no_grad
    def clip_features(self, shots: list[Any]) -> torch.Tensor:
        """CLIP vision states of the next-to-last layer, after the processor's resize, crop and normalise."""
        assert self.image_processor is not None and self.image_encoder is not None
        pixels = self.image_processor(images=shots, return_tensors="pt").pixel_values
        pixels = pixels.to(next(self.image_encoder.parameters()).device)
        states = self.image_encoder(pixel_values=pixels, output_hidden_states=True).hidden_states[-2]
        return states.to(self.device, self.dtype)

    def condition(self, shots: list[Any], frames: int) -> torch.Tensor:
        """[mask (temporal stride channels), latents of the given frames among black ones], per latent frame."""
        first = images.to_tensor(shots[0]).unsqueeze(2)
        last = images.to_tensor(shots[1]).unsqueeze(2) if len(shots) > 1 else None
        gap = frames - 1 - (last is not None)
        parts = [first, first.new_zeros(1, 3, gap, *first.shape[3:])] + ([last] if last is not None else [])
        latents = self.encode_video(torch.cat(parts, dim=2))
        h, w = latents.shape[3:]
        given = torch.zeros(1, 1, frames, h, w)
        given[:, :, 0] = 1
        if last is not None:
            given[:, :, -1] = 1
        # The VAE packs the first frame alone into latent frame 0: repeat it so every latent frame covers
        # `temporal` pixel frames, then fold those into channels.
        t = self.vae_geo.temporal
        given = torch.cat([given[:, :, :1].repeat_interleave(t, dim=2), given[:, :, 1:]], dim=2)
        mask = given.view(1, -1, t, h, w).transpose(1, 2).to(latents.device)
        return torch.cat([mask, latents], dim=1)
