"""Builders and conventions shared by training, evaluation and export of the mini model.

Conventions match diffusers' WanPipeline (text encoding, flow matching, latent layout) so that an
engine loading the exported folder through a Wan-family adapter reproduces training exactly.
"""

from __future__ import annotations

import html
import re

import numpy as np
import torch

from . import data

TEXT_LEN = 16
SPECIALS = ["<pad>", "</s>", "[UNK]"]


# ----------------------------------------------------------------------------- text
def build_tokenizer(max_len: int = TEXT_LEN, words: list[str] | None = None):
    """A word-level tokenizer over `words` (default: the first world's vocabulary), lower-cased, ending in </s>."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers
    from tokenizers.models import WordLevel
    from tokenizers.processors import TemplateProcessing
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(SPECIALS + (words or data.vocabulary()))}
    tok = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = TemplateProcessing(single="$A </s>", pair="$A $B </s>", special_tokens=[("</s>", vocab["</s>"])])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="<pad>",
        eos_token="</s>",
        model_max_length=max_len,
        padding_side="right",
    )


def build_text_encoder(vocab_size: int, d_model: int = 64):
    from transformers import UMT5Config, UMT5EncoderModel

    cfg = UMT5Config(
        vocab_size=vocab_size,
        d_model=d_model,
        d_kv=16,
        d_ff=2 * d_model,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        relative_attention_max_distance=16,
        dropout_rate=0.0,
        feed_forward_proj="gated-gelu",
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
        tie_word_embeddings=False,
    )
    return UMT5EncoderModel(cfg)


def prompt_clean(text: str) -> str:
    # same as diffusers.pipelines.wan.pipeline_wan.prompt_clean without ftfy (ASCII grammar)
    text = html.unescape(html.unescape(text))
    return re.sub(r"\s+", " ", text).strip()


def encode_prompts(tokenizer, text_encoder, prompts: list[str]) -> torch.Tensor:
    """Exactly WanPipeline._get_t5_prompt_embeds with max_sequence_length = tokenizer.model_max_length."""
    max_len = tokenizer.model_max_length
    prompts = [prompt_clean(p) for p in prompts]
    t = tokenizer(
        prompts,
        padding="max_length",
        max_length=max_len,
        truncation=True,
        add_special_tokens=True,
        return_attention_mask=True,
        return_tensors="pt",
    )
    ids, mask = t.input_ids, t.attention_mask
    seq_lens = mask.gt(0).sum(dim=1).long()
    emb = text_encoder(ids, mask).last_hidden_state
    keep = (torch.arange(max_len)[None, :] < seq_lens[:, None]).to(emb.dtype)
    return emb * keep[:, :, None]


# ----------------------------------------------------------------------------- vae
def build_vae(latent_channels: int = 4):
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(32, 64, 64),
        layers_per_block=1,
        latent_channels=latent_channels,
        norm_num_groups=16,
        sample_size=data.SIZE,
        scaling_factor=1.0,
        shift_factor=None,
        latents_mean=None,
        latents_std=None,
        force_upcast=False,
    )


def video_to_tensor(video: np.ndarray) -> torch.Tensor:
    """uint8 [N, F, H, W, 3] -> float [N*F, 3, H, W] in [-1, 1]."""
    x = torch.from_numpy(video).float().div_(127.5).sub_(1.0)
    n, f, h, w, c = x.shape
    return x.reshape(n * f, h, w, c).permute(0, 3, 1, 2).contiguous()


@torch.no_grad()
def encode_video(vae, video: np.ndarray, mean: torch.Tensor | None = None, std: torch.Tensor | None = None):
    """uint8 [N, F, H, W, 3] -> latents [N, C, F, h, w] (posterior mode, optionally normalised)."""
    n, f = video.shape[:2]
    x = video_to_tensor(video)
    z = vae.encode(x).latent_dist.mode()  # [N*F, C, h, w]
    if mean is not None:
        z = (z - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)
    c, h, w = z.shape[1:]
    return z.reshape(n, f, c, h, w).permute(0, 2, 1, 3, 4).contiguous()


@torch.no_grad()
def decode_latents(vae, z: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> np.ndarray:
    """normalised latents [N, C, F, h, w] -> uint8 [N, F, H, W, 3] (engine convention)."""
    n, c, f, h, w = z.shape
    zf = z.permute(0, 2, 1, 3, 4).reshape(n * f, c, h, w)
    zf = zf * std.view(1, -1, 1, 1) + mean.view(1, -1, 1, 1)
    x = vae.decode(zf).sample
    x = (x / 2 + 0.5).clamp(0, 1)
    x = (x * 255).round().to(torch.uint8)
    hh, ww = x.shape[-2:]
    return x.permute(0, 2, 3, 1).reshape(n, f, hh, ww, 3).numpy()


# ----------------------------------------------------------------------------- transformer
def build_transformer(latent_channels: int, text_dim: int, layers: int = 6, heads: int = 4, head_dim: int = 32,
                      ffn: int = 512, patch=(1, 2, 2)):
    from diffusers import WanTransformer3DModel

    return WanTransformer3DModel(
        patch_size=tuple(patch),
        num_attention_heads=heads,
        attention_head_dim=head_dim,
        in_channels=latent_channels,
        out_channels=latent_channels,
        text_dim=text_dim,
        freq_dim=256,
        ffn_dim=ffn,
        num_layers=layers,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        eps=1e-6,
        image_dim=None,
        added_kv_proj_dim=None,
        rope_max_seq_len=1024,
    )


def shifted_sigmas(u: torch.Tensor, shift: float) -> torch.Tensor:
    """Map u in (0, 1) to flow sigmas with the Wan/SD3 time shift."""
    return shift * u / (1 + (shift - 1) * u)


def build_scheduler(shift: float, kind: str = "unipc"):
    if kind == "unipc":
        from diffusers import UniPCMultistepScheduler

        return UniPCMultistepScheduler(
            prediction_type="flow_prediction",
            use_flow_sigmas=True,
            flow_shift=shift,
            num_train_timesteps=1000,
        )
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=shift)


@torch.no_grad()
def sample(transformer, scheduler, cond: torch.Tensor, uncond: torch.Tensor, shape, seeds: list[int],
           steps: int, guidance: float, x0: torch.Tensor | None = None, start: int = 0) -> torch.Tensor:
    """Minimal Wan-style sampling loop. cond/uncond: [B, L, D]. Returns normalised latents.

    With x0 (normalised latents) and start > 0, sampling begins at step `start` from x0 noised to that
    step's level (the img2img / SDEdit way) instead of from pure noise."""
    lat = torch.cat([torch.randn(shape, generator=torch.Generator("cpu").manual_seed(s), dtype=torch.float32)
                     for s in seeds])
    scheduler.set_timesteps(steps)
    if x0 is not None:
        sigma = scheduler.sigmas[start]
        lat = (1 - sigma) * x0 + sigma * lat
        scheduler.set_begin_index(start)
    use_cfg = guidance != 1.0
    for t in scheduler.timesteps[start:]:
        tt = t.expand(lat.shape[0]).float()
        if use_cfg:
            out = transformer(torch.cat([lat, lat]), torch.cat([tt, tt]), torch.cat([cond, uncond]),
                              return_dict=False)[0]
            c, u = out.chunk(2)
            pred = u + guidance * (c - u)
        else:
            pred = transformer(lat, tt, cond, return_dict=False)[0]
        lat = scheduler.step(pred, t, lat, return_dict=False)[0]
    return lat
