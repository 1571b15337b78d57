"""Wan VACE (`WanVACEPipeline`): a control clip, a mask clip and reference images steer a Wan render.

The control video is split by the mask (white = generate) into the part to keep and the part to redraw, each
VAE-encoded; the mask is folded to the latent grid (one channel per pixel of a VAE cell); reference images are
encoded as extra latent frames in front of the video, and cut off before decoding. All of that enters the
transformer's VACE blocks, whose hints are added to the main blocks, weighted by `--conditioning-scale`.
Text, the two experts of Wan 2.2, sampling and decoding are Wan's own. Without --video the control is a
blank clip with everything to generate, as in diffusers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from videogen import clips, images
from videogen.families.base import Defaults
from videogen.families.wan import Wan
from videogen.families.wan_v2v import to_video
from videogen.lazy import no_grad
from videogen.sampling import Conditioning, Plan
from videogen.spec import RenderSpec

if TYPE_CHECKING:
    import torch
else:
    from videogen.lazy import torch


class WanVACE(Wan):
    pipelines = ("WanVACEPipeline",)
    tasks = ("vace",)
    inputs = frozenset({"video", "mask", "reference_images", "conditioning_scale"})
    # WanVACEPipeline.__call__ defaults; Wan renders at 16 fps.
    defaults = Defaults(frames=81, height=480, width=832, steps=50, guidance=5.0, fps=16)

    @classmethod
    def task_of(cls, index: dict[str, Any]) -> str:
        return "vace"

    def start(self, scheduler: Any, noise: torch.Tensor, spec: RenderSpec
              ) -> tuple[torch.Tensor, torch.Tensor, int, dict[str, Any]]:
        return scheduler.timesteps, noise, 0, {}  # the clip steers every step; it is not a starting point

    def image_conditioning(self, spec: RenderSpec) -> dict[str, torch.Tensor]:
        """The control hints' input, the same with the prompt and the negative prompt."""
        layers = len(self.transformer.config.vace_layers)
        scale = 1.0 if spec.conditioning_scale is None else spec.conditioning_scale
        # [1, layers]: a batch axis, so that batched guidance concatenates it like every conditioning tensor
        return {"control": self.control(spec).to(self.dtype),
                "control_scale": torch.full((1, layers), scale, device=self.device, dtype=self.dtype)}

    def network_inputs(self, c: Conditioning) -> dict[str, Any]:
        return {**super().network_inputs(c), "control_hidden_states": c.tensors["control"],
                "control_hidden_states_scale": c.tensors["control_scale"][0]}

    def plan(self, spec: RenderSpec, cond: Conditioning, uncond: Conditioning | None) -> Plan:
        assert spec.frames
        refs = len(spec.reference_images)  # each reference image takes one latent frame in front of the video
        plan = super().plan(spec.replace(frames=spec.frames + refs * self.vae_geo.temporal), cond, uncond)
        plan.info.update(reference_images=refs,
                         conditioning_scale=1.0 if spec.conditioning_scale is None else spec.conditioning_scale)
        return plan

    def video_latents(self, latents: torch.Tensor, spec: RenderSpec) -> torch.Tensor:
        return latents[:, :, len(spec.reference_images):]  # the reference frames are no part of the video

    @no_grad
    def control(self, spec: RenderSpec) -> torch.Tensor:
        """[kept latents, redrawn latents, folded mask] per latent frame, reference frames first."""
        assert spec.frames and spec.height and spec.width
        size = (spec.frames, spec.height, spec.width)
        video = (to_video(clips.load_clip(spec, "video")) if spec.video is not None
                 else torch.zeros(1, 3, *size))
        # mask in [0, 1] computed as diffusers does (from [-1, 1]); binarised for the split, soft for the grid
        mask = (to_video(clips.load_clip(spec, "mask")).add(1).div(2).clamp(0, 1) if spec.mask is not None
                else torch.ones_like(video))
        given = torch.where(mask > 0.5, 1.0, 0.0)
        latents = torch.cat([self.encode_video(video * (1 - given)), self.encode_video(video * given)], dim=1)
        for path in spec.reference_images:  # each goes in front: the last image given ends up first
            ref = self.encode_video(self.reference(path, spec.height, spec.width)[:, :, None])
            latents = torch.cat([torch.cat([ref, torch.zeros_like(ref)], dim=1), latents], dim=2)
        return torch.cat([latents, self.fold_mask(mask, len(spec.reference_images))], dim=1)

    def fold_mask(self, mask: torch.Tensor, refs: int) -> torch.Tensor:
        """[1,3,F,H,W] -> [1, s*s, latent frames + refs, H/s, W/s]: each pixel of an s x s VAE cell a channel."""
        s, t = self.vae_geo.spatial, self.vae_geo.temporal
        m = mask[0, 0]
        f, h, w = m.shape
        m = m.view(f, h // s, s, w // s, s).permute(2, 4, 0, 1, 3).flatten(0, 1)
        m = torch.nn.functional.interpolate(m[None], size=((f + t - 1) // t, h // s, w // s), mode="nearest-exact")[0]
        m = torch.cat([m.new_zeros(m.shape[0], refs, *m.shape[2:]), m], dim=1)
        return m[None].to(self.device)

    @staticmethod
    def reference(path: str, height: int, width: int) -> torch.Tensor:
        """The image scaled to fit inside the frame, centred on white (VACE's canvas), [1,3,H,W] in [-1,1].

        As diffusers' processor: sides first cut down to multiples of 8 (Lanczos), then a bilinear resize.
        """
        from PIL import Image

        image = images.load_image(path, "--reference-image")
        w8, h8 = (max(8, v - v % 8) for v in image.size)
        if (w8, h8) != image.size:
            image = image.resize((w8, h8), resample=Image.Resampling.LANCZOS)
        x = images.to_tensor(image)
        scale = min(height / h8, width / w8)
        nh, nw = int(h8 * scale), int(w8 * scale)
        x = torch.nn.functional.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False)
        canvas = torch.ones(1, 3, height, width)
        top, left = (height - nh) // 2, (width - nw) // 2
        canvas[:, :, top:top + nh, left:left + nw] = x
        return canvas
