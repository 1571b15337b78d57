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
    audio: int = 0  # sound latent frames (models that make sound: LTX-2)


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


def audio_frames(audio_vae: dict[str, Any], frames: int, fps: float) -> int:
    """LTX-2's sound latent frames for `frames` video frames: its audio VAE's rate (sample rate / hop / 4, 25 a
    second) times the video's duration, rounded as LTX2Pipeline rounds it."""
    return round(frames / fps * audio_vae["sample_rate"] / audio_vae["mel_hop_length"] / AUDIO_DOWNSAMPLE)


AUDIO_DOWNSAMPLE = 4  # the LTX-2 audio VAE's time and mel compression (diffusers' LATENT_DOWNSAMPLE_FACTOR)


def _ltx2(cfg: dict[str, Any], s: Shapes, dtype: torch.dtype) -> dict[str, Any]:
    """Video and sound tokens together; the prompt comes from the connectors at the caption width (2.0, projected
    inside) or at each stream's cross-attention width (2.3)."""
    prompt = cfg.get("use_prompt_embeddings", True)
    video_dim = cfg["caption_channels"] if prompt else cfg["cross_attention_dim"]
    audio_dim = cfg["caption_channels"] if prompt else cfg["audio_cross_attention_dim"]
    mask = torch.ones(s.batch, s.tokens, dtype=torch.long)
    return dict(hidden_states=torch.randn(s.batch, s.frames * s.height * s.width, cfg["in_channels"], dtype=dtype),
                audio_hidden_states=torch.randn(s.batch, s.audio, cfg["audio_in_channels"], dtype=dtype),
                encoder_hidden_states=_text(s, video_dim, dtype), audio_encoder_hidden_states=_text(s, audio_dim, dtype),
                timestep=_t(s), sigma=_t(s), encoder_attention_mask=mask, audio_encoder_attention_mask=mask,
                num_frames=s.frames, height=s.height, width=s.width, fps=float(s.fps), audio_num_frames=s.audio,
                use_cross_timestep=True, return_dict=False)


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


def _hunyuan15(cfg: dict[str, Any], s: Shapes, dtype: torch.dtype) -> dict[str, Any]:
    """Qwen states, the ByT5 states of quoted text (GLYPH_TOKENS) and SigLIP image tokens (IMAGE_TOKENS); latents
    with the condition channels beside them (in_channels). Every mask is full: the transformer gathers the valid
    tokens first, so a full mask is the longest sequence it attends over."""
    from videogen.families.hunyuan15 import GLYPH_TOKENS, IMAGE_TOKENS

    def full(n: int) -> torch.Tensor:
        return torch.ones(s.batch, n, dtype=torch.long)

    return dict(hidden_states=_latents(s, cfg["in_channels"], dtype), timestep=_t(s),
                encoder_hidden_states=_text(s, cfg["text_embed_dim"], dtype), encoder_attention_mask=full(s.tokens),
                encoder_hidden_states_2=torch.randn(s.batch, GLYPH_TOKENS, cfg["text_embed_2_dim"], dtype=dtype),
                encoder_attention_mask_2=full(GLYPH_TOKENS),
                image_embeds=torch.randn(s.batch, IMAGE_TOKENS, cfg["image_embed_dim"], dtype=dtype), return_dict=False)


DENOISERS: dict[str, Callable[[dict[str, Any], Shapes, torch.dtype], dict[str, Any]]] = {
    "WanTransformer3DModel": _wan,
    "HunyuanVideoTransformer3DModel": _hunyuan,
    "HunyuanVideo15Transformer3DModel": _hunyuan15,
    "LTXVideoTransformer3DModel": _ltx,
    "LTX2VideoTransformer3DModel": _ltx2,
    "CogVideoXTransformer3DModel": _cogvideox,
    "MochiTransformer3DModel": _mochi,
}


def denoiser_inputs(cls: str, cfg: dict[str, Any], s: Shapes, dtype: torch.dtype) -> dict[str, Any]:
    from videogen.errors import UserError

    if cls not in DENOISERS:
        raise UserError(f"videogen plan does not know the inputs of {cls} (known: {', '.join(DENOISERS)})")
    return DENOISERS[cls](cfg, s, dtype)


# Components that turn the text encoder's output into the denoiser's prompt, run after it (LTX-2's connectors:
# every Gemma layer's states stacked), and their inputs for `tokens` text tokens.
CONDITIONERS: dict[str, Callable[[dict[str, Any], int, torch.dtype], dict[str, Any]]] = {
    "LTX2TextConnectors": lambda cfg, tokens, dtype: dict(
        text_encoder_hidden_states=torch.randn(1, tokens, cfg["caption_channels"] * cfg["text_proj_in_factor"],
                                               dtype=dtype),
        attention_mask=torch.ones(1, tokens, dtype=torch.long), padding_side="left"),
}


def sound_call(cls: str, cfg: dict[str, Any], audio: int, dtype: torch.dtype) -> Callable[[Any], Any] | None:
    """How a sound decoder runs on `audio` latent frames (the audio VAE to a mel spectrogram, the vocoder to the
    waveform), or None for a component that is not one."""
    if cls == "AutoencoderKLLTX2Audio":
        z = (1, cfg["latent_channels"], audio, cfg["mel_bins"] // AUDIO_DOWNSAMPLE)
        return lambda m: m.decode(torch.randn(*z, dtype=dtype), return_dict=False)[0]
    if cls in ("LTX2Vocoder", "LTX2VocoderWithBWE"):  # its input: the audio VAE's stereo mel, 4x the frames
        bins = cfg.get("num_mel_channels") or cfg["in_channels"] // 2
        return lambda m: m(torch.randn(1, 2, audio * AUDIO_DOWNSAMPLE, bins, dtype=dtype))
    return None


def text_inputs(tokens: int) -> dict[str, Any]:
    ids = torch.zeros(1, tokens, dtype=torch.long)
    return dict(input_ids=ids, attention_mask=torch.ones_like(ids), output_hidden_states=True)


def decode_kwargs(cls: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """Extra arguments of `vae.decode`: LTX's timestep-conditioned decoders take the decode timestep."""
    return {"temb": torch.tensor([0.05])} if cfg.get("timestep_conditioning") else {}
