"""A tiny random HunyuanVideo in diffusers format (Llama + CLIP text encoders), built offline."""

from __future__ import annotations

import re
from pathlib import Path

import torch
from tiny import WORDS

from videogen.families.hunyuan import PROMPT_TEMPLATE

# Llama 3 splits a space before a digit off as its own token; with that rule, this word-level tokenizer
# splits the template's system part into the same 95 tokens the real one does, so the crop ends where the
# prompt begins.
LLAMA_SPLIT = r"\w+|[^\w\s]| (?=\d)"
LLAMA_SPECIAL = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
                 "\n\n"]


def _word_tokenizer(words: list[str], specials: list[str], template: str, pad: str, max_length: int,
                    split: str = r"\w+|[^\w\s]"):
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate([*specials, "<unk>"])}
    for w in words:
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.add_special_tokens(specials)
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(split), behavior="removed", invert=True)
    tok.post_processor = processors.TemplateProcessing(
        single=template, special_tokens=[(s, vocab[s]) for s in specials if s in template])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=pad, unk_token="<unk>",
                                   model_max_length=max_length)


def llama_tokenizer():
    template_words = re.findall(r"\w+|[^\w\s]", PROMPT_TEMPLATE.replace("{}", ""))
    return _word_tokenizer([*template_words, " ", *WORDS], LLAMA_SPECIAL, "<|begin_of_text|> $A",
                           "<|end_of_text|>", 512, LLAMA_SPLIT)


def clip_tokenizer():
    return _word_tokenizer(list(WORDS), ["<|startoftext|>", "<|endoftext|>"], "<|startoftext|> $A <|endoftext|>",
                           "<|endoftext|>", 77)


def tiny_hunyuan_components(seed: int = 0) -> dict:
    from diffusers import (
        AutoencoderKLHunyuanVideo,
        FlowMatchEulerDiscreteScheduler,
        HunyuanVideoTransformer3DModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, LlamaConfig, LlamaModel

    tokenizer, tokenizer_2 = llama_tokenizer(), clip_tokenizer()
    torch.manual_seed(seed)
    # three layers, so hidden_states[-3] is a real layer's output rather than the embeddings
    text_encoder = LlamaModel(LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_attention_heads=4,
        num_key_value_heads=2, num_hidden_layers=3, max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=0, eos_token_id=1))
    eos = tokenizer_2.convert_tokens_to_ids("<|endoftext|>")
    text_encoder_2 = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer_2), hidden_size=8, intermediate_size=16, num_attention_heads=2,
        num_hidden_layers=2, max_position_embeddings=77, bos_token_id=0, eos_token_id=eos, pad_token_id=eos))
    transformer = HunyuanVideoTransformer3DModel(
        in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=10, num_layers=1,
        num_single_layers=1, num_refiner_layers=1, patch_size=1, patch_size_t=1, guidance_embeds=True,
        text_embed_dim=16, pooled_projection_dim=8, rope_axes_dim=(2, 4, 4))
    vae = AutoencoderKLHunyuanVideo(
        in_channels=3, out_channels=3, latent_channels=4, down_block_types=("HunyuanVideoDownBlock3D",) * 4,
        up_block_types=("HunyuanVideoUpBlock3D",) * 4, block_out_channels=(8, 8, 8, 8), layers_per_block=1,
        act_fn="silu", norm_num_groups=4, scaling_factor=0.476986, spatial_compression_ratio=8,
        temporal_compression_ratio=4, mid_block_add_attention=True)
    return {"transformer": transformer.eval(), "vae": vae.eval(), "scheduler": FlowMatchEulerDiscreteScheduler(shift=7.0),
            "text_encoder": text_encoder.eval(), "tokenizer": tokenizer, "text_encoder_2": text_encoder_2.eval(),
            "tokenizer_2": tokenizer_2}


def save_tiny_hunyuan(folder: Path) -> Path:
    from diffusers import HunyuanVideoPipeline

    HunyuanVideoPipeline(**tiny_hunyuan_components()).save_pretrained(folder, safe_serialization=True)
    return folder
