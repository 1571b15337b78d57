"""The inputs of one call of each component, as fake tensors of the render's shapes.

Which arguments a denoiser takes is a fact of its diffusers class, so it is a table keyed by class name (the
same arguments videogen's family adapters pass); shapes come from the render settings and the card.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class Shapes:
    batch: int  # the guidance batch of one forward (2 with --batch-cfg and guidance on, else 1)
    channels: int  # latent channels
    frames: int  # latent frames
    height: int  # latent height
    width: int  # latent width
    tokens: int  # text tokens given to the denoiser
    fps: int = 16


def _latents(s: Shapes, channels: int, dtype: torch.dtype) -> torch.Tensor:
    return torch.randn(s.batch, channels, s.frames, s.height, s.width, dtype=dtype)


def _text(s: Shapes, dim: int, dtype: torch.dtype) -> torch.Tensor:
    return torch.randn(s.batch, s.tokens, dim, dtype=dtype)


def _t(s: Shapes) -> torch.Tensor:
    return torch.full((s.batch,), 999.0)


def _wan(cfg: dict[str, Any], s: Shapes, dtype: torch.dtype) -> dict[str, Any]:
    kw: dict[str, Any] = dict(hidden_states=_latents(s, cfg["in_channels"], dtype), timestep=_t(s),
                              encoder_hidden_states=_text(s, cfg["text_dim"], dtype), return_dict=False)
    if cfg.get("image_dim"):  # CLIP image tokens: 257, twice that for first-last-frame models
        n = cfg.get("pos_embed_seq_len") or 257
        kw["encoder_hidden_states_image"] = torch.randn(s.batch, n, cfg["image_dim"], dtype=dtype)
    return kw


def _hunyuan(cfg: dict[str, Any], s: Shapes, dtype: torch.dtype) -> dict[str, Any]:
    kw: dict[str, Any] = dict(hidden_states=_latents(s, cfg["in_channels"], dtype), timestep=_t(s),
                              encoder_hidden_states=_text(s, cfg["text_embed_dim"], dtype),
                              encoder_attention_mask=torch.ones(s.batch, s.tokens, dtype=torch.bool),
                              pooled_projections=torch.randn(s.batch, cfg["pooled_projection_dim"], dtype=dtype),
                              return_dict=False)
    if cfg.get("guidance_embeds", True):
        kw["guidance"] = torch.full((s.batch,), 6000.0)
    return kw


def _ltx(cfg: dict[str, Any], s: Shapes, dtype: torch.dtype) -> dict[str, Any]:
    n = s.frames * s.height * s.width
    return dict(hidden_states=torch.randn(s.batch, n, cfg["in_channels"], dtype=dtype),
                encoder_hidden_states=_text(s, cfg["caption_channels"], dtype), timestep=_t(s),
                encoder_attention_mask=torch.ones(s.batch, s.tokens, dtype=torch.long),
                num_frames=s.frames, height=s.height, width=s.width,
                rope_interpolation_scale=(8 / s.fps, 32, 32), return_dict=False)


def _cogvideox(cfg: dict[str, Any], s: Shapes, dtype: torch.dtype) -> dict[str, Any]:
    # Rotary tables are built by the pipeline and passed in; they are small next to the activations, so the
    # trace leaves them out (image_rotary_emb=None).
    x = torch.randn(s.batch, s.frames, cfg["in_channels"], s.height, s.width, dtype=dtype)
    kw: dict[str, Any] = dict(hidden_states=x, encoder_hidden_states=_text(s, cfg.get("text_embed_dim", 4096), dtype),
                              timestep=_t(s), return_dict=False)
    if cfg.get("ofs_embed_dim"):
        kw["ofs"] = torch.full((s.batch,), 2.0)
    return kw


def _mochi(cfg: dict[str, Any], s: Shapes, dtype: torch.dtype) -> dict[str, Any]:
    return dict(hidden_states=_latents(s, cfg["in_channels"], dtype),
                encoder_hidden_states=_text(s, cfg.get("text_embed_dim", 4096), dtype), timestep=_t(s),
                encoder_attention_mask=torch.ones(s.batch, s.tokens, dtype=torch.bool), return_dict=False)


DENOISERS: dict[str, Callable[[dict[str, Any], Shapes, torch.dtype], dict[str, Any]]] = {
    "WanTransformer3DModel": _wan,
    "HunyuanVideoTransformer3DModel": _hunyuan,
    "LTXVideoTransformer3DModel": _ltx,
    "CogVideoXTransformer3DModel": _cogvideox,
    "MochiTransformer3DModel": _mochi,
}


def denoiser_inputs(cls: str, cfg: dict[str, Any], s: Shapes, dtype: torch.dtype) -> dict[str, Any]:
    from videogen.errors import UserError

    if cls not in DENOISERS:
        raise UserError(f"videogen plan does not know the inputs of {cls} (known: {', '.join(DENOISERS)})")
    return DENOISERS[cls](cfg, s, dtype)


def text_inputs(tokens: int) -> dict[str, Any]:
    ids = torch.zeros(1, tokens, dtype=torch.long)
    return dict(input_ids=ids, attention_mask=torch.ones_like(ids), output_hidden_states=True)


def decode_kwargs(cls: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """Extra arguments of `vae.decode`: LTX's timestep-conditioned decoders take the decode timestep."""
    return {"temb": torch.tensor([0.05])} if cfg.get("timestep_conditioning") else {}
