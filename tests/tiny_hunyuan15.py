"""A tiny random HunyuanVideo 1.5 in diffusers format (Qwen2.5-VL text + ByT5, SigLIP for i2v), built offline.

The VAE keeps the real strides (16x spatial, 4x temporal) so that the size and frame refusals are the real
ones; `target_size` 32 gives the aspect-ratio buckets 64x16 .. 32x32 .. 16x64 (height x width).
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from tiny import WORDS

from videogen.families.hunyuan15 import SYSTEM_MESSAGE

CHANNELS = 4
TARGET_SIZE = 32
# Words of the tests' prompts besides tiny.WORDS (quoted text goes to ByT5, the rest to Qwen).
EXTRA_WORDS = ["sign", "reading", "hello", "world", "open", "says"]
SPECIALS = ["<|im_start|>", "<|im_end|>", "<|endoftext|>"]
# The Qwen2 chat layout (what Qwen2.5-VL's own template writes for a system and a user message).
CHAT_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
# Words, punctuation, newlines (other spaces dropped), and the system message's runs of spaces before each digit
# as two tokens, as Qwen's tokenizer splits them: the template's system part is then the 108 tokens the pipeline
# crops.
SPLIT = r"\w+|[^\w\s]|\n| +(?= \d)| (?=\d)"


def qwen_tokenizer():
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate([*SPECIALS, "<unk>"])}
    pieces = re.findall(SPLIT, f"system\n{SYSTEM_MESSAGE}\nuser\nassistant\n \"") + [*WORDS, *EXTRA_WORDS]
    for w in pieces:
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.add_special_tokens(SPECIALS)
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(SPLIT), behavior="removed", invert=True)
    out = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<|endoftext|>", unk_token="<unk>",
                                  model_max_length=131072)
    out.chat_template = CHAT_TEMPLATE
    return out


def tiny_hunyuan15_components(task: str = "t2v", seed: int = 0, guidance: float = 6.0,
                              meanflow: bool = False) -> dict:
    from diffusers import (
        AutoencoderKLHunyuanVideo15,
        ClassifierFreeGuidance,
        FlowMatchEulerDiscreteScheduler,
        HunyuanVideo15Transformer3DModel,
    )
    from transformers import (
        ByT5Tokenizer,
        Qwen2_5_VLTextConfig,
        Qwen2_5_VLTextModel,
        T5Config,
        T5EncoderModel,
    )

    torch.manual_seed(seed)
    tokenizer = qwen_tokenizer()
    # three layers, so hidden_states[-3] is a real layer's output rather than the embeddings
    text_encoder = Qwen2_5_VLTextModel(Qwen2_5_VLTextConfig(
        vocab_size=len(tokenizer), hidden_size=16, intermediate_size=16, num_hidden_layers=3, num_attention_heads=2,
        num_key_value_heads=2, max_position_embeddings=2048, rope_theta=1000000.0, bos_token_id=None,
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"), pad_token_id=tokenizer.pad_token_id,
        rope_scaling={"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"}))
    tokenizer_2 = ByT5Tokenizer()
    text_encoder_2 = T5EncoderModel(T5Config(
        vocab_size=len(tokenizer_2), d_model=32, d_kv=8, d_ff=32, num_layers=1, num_heads=2,
        relative_attention_num_buckets=8, relative_attention_max_distance=16, dropout_rate=0.0))
    transformer = HunyuanVideo15Transformer3DModel(
        in_channels=2 * CHANNELS + 1, out_channels=CHANNELS, num_attention_heads=2, attention_head_dim=8,
        num_layers=1, num_refiner_layers=1, mlp_ratio=2.0, text_embed_dim=16, text_embed_2_dim=32,
        image_embed_dim=12, rope_axes_dim=(2, 2, 4), target_size=TARGET_SIZE, task_type=task, use_meanflow=meanflow)
    vae = AutoencoderKLHunyuanVideo15(
        in_channels=3, out_channels=3, latent_channels=CHANNELS, block_out_channels=(8, 8, 8, 8, 8),
        layers_per_block=1, spatial_compression_ratio=16, temporal_compression_ratio=4)
    parts = {"transformer": transformer.eval(), "vae": vae.eval(), "scheduler": FlowMatchEulerDiscreteScheduler(shift=5.0),
             "text_encoder": text_encoder.eval(), "tokenizer": tokenizer, "text_encoder_2": text_encoder_2.eval(),
             "tokenizer_2": tokenizer_2, "guider": ClassifierFreeGuidance(guidance_scale=guidance)}
    if task == "i2v":
        from transformers import SiglipImageProcessor, SiglipVisionConfig, SiglipVisionModel

        parts["image_encoder"] = SiglipVisionModel(SiglipVisionConfig(
            hidden_size=12, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2, image_size=16,
            patch_size=8)).eval()
        parts["feature_extractor"] = SiglipImageProcessor(size={"height": 16, "width": 16})
    return parts


def save_tiny_hunyuan15(folder: Path, task: str = "t2v", **kwargs) -> Path:
    from diffusers import HunyuanVideo15ImageToVideoPipeline, HunyuanVideo15Pipeline

    cls = HunyuanVideo15ImageToVideoPipeline if task == "i2v" else HunyuanVideo15Pipeline
    cls(**tiny_hunyuan15_components(task, **kwargs)).save_pretrained(folder, safe_serialization=True)
    return folder
