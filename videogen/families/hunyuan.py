"""HunyuanVideo text-to-video: Llama + CLIP text, embedded (distilled) guidance, optional true CFG.

`--guidance` is the embedded guidance the model was distilled with (diffusers' `guidance_scale`, given to the
transformer as guidance x 1000; one forward per step). `--true-guidance` > 1 adds real classifier-free guidance
against the negative prompt (diffusers' `true_cfg_scale`; a second forward per step); the loop applies it like
any other family's guidance, through `Plan.guidance`.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from videogen.families.base import Defaults, Family, Geometry, read_config
from videogen.lazy import no_grad
from videogen.sampling import Conditioning, Plan, StepInfo
from videogen.spec import RenderSpec
from videogen.vae import LatentFormat, vae_geometry

if TYPE_CHECKING:
    import torch
else:
    from videogen.lazy import torch

log = logging.getLogger("videogen")

# The Llama prompt template HunyuanVideo was trained with (diffusers' DEFAULT_PROMPT_TEMPLATE). The first
# CROP_START tokens (the system part, as the Llama 3 tokenizer splits it) are encoded, then dropped.
PROMPT_TEMPLATE = (
    "<|start_header_id|>system<|end_header_id|>\n\nDescribe the video by detailing the following aspects: "
    "1. The main content and theme of the video."
    "2. The color, shape, size, texture, quantity, text, and spatial relationships of the objects."
    "3. Actions, events, behaviors temporal relationships, physical movement changes of the objects."
    "4. background environment, light, style and atmosphere."
    "5. camera angles, movements, and transitions used in the video:<|eot_id|>"
    "<|start_header_id|>user<|end_header_id|>\n\n{}<|eot_id|>"
)
CROP_START = 95
SKIP_LAYERS = 2  # the Llama state used is hidden_states[-(SKIP_LAYERS + 1)]
CLIP_TOKENS = 77
SIZE_MULTIPLE = 16  # HunyuanVideoPipeline refuses other sizes


class Hunyuan(Family):
    name = "hunyuan"
    title = "HunyuanVideo"
    pipelines = ("HunyuanVideoPipeline",)
    tasks = ("t2v",)
    # HunyuanVideoPipeline.__call__ defaults (guidance = embedded guidance); 15 fps as in diffusers' docs.
    defaults = Defaults(frames=129, height=720, width=1280, steps=50, guidance=6.0, fps=15)
    # 16 channels at 4x8 strides; only the VAE's scaling factor (0.476986), no per-channel statistics.
    latent = LatentFormat(channels=16, layout="BCFHW", temporal=4, spatial=8, stats="none", rgb=("hunyuanvideo",))
    max_text_tokens = 256  # prompt tokens after the crop (HunyuanVideoPipeline's max_sequence_length)
    accepts = frozenset({"true_guidance", "scheduler", "flow_shift"})
    schedulers = ("euler",)  # its flow-matching Euler scheduler only
    block_attributes = ("transformer_blocks", "single_transformer_blocks")
    block_count_keys = ("num_layers", "num_single_layers")
    vae_float32 = True  # like Wan's: small next to the transformer, and it decodes more cleanly
    extra_modules = ("text_encoder_2",)

    def __init__(self, path: Path, index: dict[str, Any], device: torch.device, dtype: torch.dtype):
        super().__init__(path, index, device, dtype)
        self.tokenizer_2 = self.load("tokenizer_2")
        self.text_encoder_2 = self.load("text_encoder_2", dtype)

    @classmethod
    def geometry(cls, path: Path, index: dict[str, Any]) -> Geometry:
        geo, tr = vae_geometry(read_config(path, "vae")), read_config(path, "transformer")
        multiple = math.lcm(SIZE_MULTIPLE, geo.spatial * int(tr.get("patch_size", 2)))
        return Geometry(geo.temporal * int(tr.get("patch_size_t", 1)), multiple, multiple)

    def prompt_tokens(self, text: str) -> int:
        return super().prompt_tokens(PROMPT_TEMPLATE.format(text)) - CROP_START

    @no_grad
    def embed(self, text: str, length: int) -> dict[str, torch.Tensor]:
        """Llama states (template, hidden_states[-3], system part cropped) with their mask, and CLIP's pooled."""
        tok = self.tokenizer([PROMPT_TEMPLATE.format(text)], max_length=length + CROP_START, padding="max_length",
                             truncation=True, return_attention_mask=True, return_tensors="pt")
        device = next(self.text_encoder.parameters()).device
        out = self.text_encoder(input_ids=tok.input_ids.to(device), attention_mask=tok.attention_mask.to(device),
                                output_hidden_states=True)
        states = out.hidden_states[-(SKIP_LAYERS + 1)][:, CROP_START:]
        mask = tok.attention_mask[:, CROP_START:]
        clip = self.tokenizer_2([text], padding="max_length", max_length=CLIP_TOKENS, truncation=True,
                                return_tensors="pt")
        if len(self.tokenizer_2(text).input_ids) > CLIP_TOKENS:
            log.warning("the prompt is longer than CLIP's %d tokens; CLIP reads only its start", CLIP_TOKENS)
        device_2 = next(self.text_encoder_2.parameters()).device
        pooled = self.text_encoder_2(clip.input_ids.to(device_2), output_hidden_states=False).pooler_output
        # dtype casts in the pipeline's order: to the text encoder's dtype, then the transformer's
        to = {"device": self.device, "dtype": self.dtype}
        return {"encoder_hidden_states": states.to(self.text_encoder.dtype).to(**to),
                "encoder_attention_mask": mask.to(**to), "pooled_projections": pooled.to(**to)}

    def guided(self, spec: RenderSpec) -> bool:
        if (spec.true_guidance or 1.0) <= 1.0:
            if spec.negative_prompt:
                log.warning("HunyuanVideo ignores the negative prompt unless --true-guidance is above 1")
            return False
        if not spec.negative_prompt:  # HunyuanVideoPipeline runs true CFG only against a given negative prompt
            log.warning("--true-guidance needs a negative prompt (-n) to guide against; without one it is not applied")
            return False
        return True

    def sigmas(self, spec: RenderSpec, scheduler: Any) -> Any:
        import numpy as np

        assert spec.steps  # sigmas 1 .. 1/N before the scheduler's shift, as HunyuanVideoPipeline sets them
        return np.linspace(1.0, 0.0, spec.steps + 1)[:-1]

    def plan(self, spec: RenderSpec, cond: Conditioning, uncond: Conditioning | None) -> Plan:
        scheduler = self.new_scheduler(spec)
        embedded = torch.tensor([float(spec.guidance or 0.0)], dtype=self.dtype, device=self.device) * 1000.0

        def predict(x: torch.Tensor, t: torch.Tensor, c: Conditioning, _step: StepInfo) -> torch.Tensor:
            n = x.shape[0]
            return self.transformer(hidden_states=x.to(self.dtype), timestep=t.expand(n).to(x.dtype),
                                    guidance=embedded.expand(n), return_dict=False, **c.tensors)[0]

        # Latents stay float32 until the scheduler's first step returns them in the transformer's dtype.
        true_cfg = float(spec.true_guidance or 1.0)
        latents = self.noise(self.latent_shape(spec), self.generator(spec))
        return self.make_plan(spec, scheduler, latents, predict, cond, uncond, guidance=lambda _t: true_cfg,
                              batch_cfg=spec.batch_cfg,
                              info={"embedded_guidance": float(spec.guidance or 0.0),
                                    "true_guidance": true_cfg if uncond is not None else None})
