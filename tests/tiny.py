"""Tiny random models in diffusers format, built from small configs and saved with save_pretrained."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

WORDS = ["a", "an", "the", "red", "green", "blue", "cat", "dog", "runs", "on", "beach", "moving", "left", "right", "up", "down", "circle", "square", "black", "white", "gray", "background", "video", "of", "in", "sky"]


def word_tokenizer(max_length: int = 16):
    """A word-level tokenizer built with `tokenizers`, with T5's post-processing (appends </s>)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    for w in WORDS:
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                                   model_max_length=max_length)


def tiny_umt5(vocab_size: int, d_model: int = 32):
    from transformers import UMT5Config, UMT5EncoderModel

    cfg = UMT5Config(vocab_size=vocab_size, d_model=d_model, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                     relative_attention_num_buckets=8, relative_attention_max_distance=16, dropout_rate=0.0)
    return UMT5EncoderModel(cfg).eval()


def tiny_wan_components(scheduler: str = "unipc", seed: int = 0, vae: str = "wan",
                        patch: tuple[int, int, int] = (1, 2, 2)) -> dict:
    from diffusers import (
        AutoencoderKL,
        AutoencoderKLWan,
        FlowMatchEulerDiscreteScheduler,
        UniPCMultistepScheduler,
        WanTransformer3DModel,
    )

    torch.manual_seed(seed)
    tokenizer = word_tokenizer()
    text_encoder = tiny_umt5(len(tokenizer))
    if vae == "wan":
        autoencoder = AutoencoderKLWan(base_dim=8, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                                       temperal_downsample=[False, True, True])
        channels = 16
    else:  # an image VAE applied per frame, like the built-in model's
        autoencoder = AutoencoderKL(block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
                                    up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4,
                                    norm_num_groups=4, layers_per_block=1,
                                    latents_mean=[0.1, -0.2, 0.0, 0.3], latents_std=[1.5, 0.7, 1.0, 2.0])
        channels = 4
    transformer = WanTransformer3DModel(
        patch_size=patch, num_attention_heads=2, attention_head_dim=12, in_channels=channels,
        out_channels=channels, text_dim=32, freq_dim=256, ffn_dim=32, num_layers=2, cross_attn_norm=True,
        qk_norm="rms_norm_across_heads", rope_max_seq_len=32,
    )
    if scheduler == "unipc":
        sched = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0)
    else:
        sched = FlowMatchEulerDiscreteScheduler(shift=7.0)
    return {"transformer": transformer.eval(), "vae": autoencoder.eval(), "scheduler": sched,
            "text_encoder": text_encoder, "tokenizer": tokenizer}


def save_components(folder: Path, pipeline: str, parts: dict, **config) -> Path:
    """Write a diffusers model folder by hand (for component mixes a pipeline's constructor refuses)."""
    import json

    folder.mkdir(parents=True, exist_ok=True)
    index = {"_class_name": pipeline, "_diffusers_version": "0.42.1", **config}
    for name, part in parts.items():
        part.save_pretrained(folder / name)
        library = "transformers" if type(part).__module__.startswith("transformers") else "diffusers"
        index[name] = [library, type(part).__name__]
    (folder / "model_index.json").write_text(json.dumps(index, indent=2))
    return folder


def save_tiny_wan(folder: Path, **kwargs) -> Path:
    from diffusers import WanPipeline

    parts = tiny_wan_components(**kwargs)
    if kwargs.get("vae", "wan") != "wan":
        return save_components(folder, "WanPipeline", parts, boundary_ratio=None, expand_timesteps=False)
    WanPipeline(**parts).save_pretrained(folder, safe_serialization=True)
    return folder


def without_weights(folder: Path, into: Path, **transformer_config) -> Path:
    """A copy of a model folder whose weight files are whole but hold none of the model's tensors (and its
    transformer config changed as given): every file check passes, loading fails, so whatever a render of it
    refuses was refused before loading."""
    import json
    import shutil

    import torch
    from safetensors.torch import save_file

    shutil.copytree(folder, into)
    for weights in into.rglob("*.safetensors"):
        save_file({"not_a_weight_of_this_model": torch.zeros(1)}, weights)
    if transformer_config:
        cfg = into / "transformer" / "config.json"
        cfg.write_text(json.dumps({**json.loads(cfg.read_text()), **transformer_config}))
    return into


_LOADS: dict[tuple[str, tuple[str, ...]], Any] = {}  # (folder, geometry) -> the run without the refused flags


def assert_refused_before_loading(folder: Path, tmp_path: Path, geometry: list[str], flags: list[str],
                                  expected: str) -> None:
    """`videogen generate` on a weightless copy of `folder` with `flags` exits 2 with `expected` on stderr and
    writes nothing; without `flags` the same command gets as far as loading (and fails there)."""
    from cli_helpers import run_cli, run_here

    bare = without_weights(folder, tmp_path / "bare-model")
    out = tmp_path / "x.mp4"
    args = ["generate", "a red cat runs on the beach", "-m", str(bare), *geometry, "-q", "-o", str(out)]
    refused = run_cli(*args, *flags)
    assert refused.code == 2, refused.err
    assert expected in refused.err and "Traceback" not in refused.err, refused.err
    assert not out.exists()
    key = (str(folder), tuple(geometry))
    if key not in _LOADS:  # the control, once per folder and in this process (torch is already imported here)
        _LOADS[key] = run_here(*args)
    loads = _LOADS[key]
    assert loads.code == 2 and "its weight files lack" in loads.err and expected not in loads.err, loads.err
