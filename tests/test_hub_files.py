"""Which files of a real repo's listing a render reads (the rule `download`, `doctor` and the loader share).
The listings are shaped like the Hub's (sharded weights, pickles beside safetensors, variants, repo extras)."""

from __future__ import annotations

import pytest

from videogen.errors import UserError
from videogen.modelfiles import select, weights_variant

INDEX = {"_class_name": "WanPipeline", "transformer": ["diffusers", "WanTransformer3DModel"],
         "text_encoder": ["transformers", "UMT5EncoderModel"], "tokenizer": ["transformers", "T5TokenizerFast"],
         "vae": ["diffusers", "AutoencoderKLWan"], "scheduler": ["diffusers", "UniPCMultistepScheduler"],
         "transformer_2": [None, None]}
CONFIGS = ["model_index.json", "scheduler/scheduler_config.json", "text_encoder/config.json",
           "tokenizer/special_tokens_map.json", "tokenizer/spiece.model", "tokenizer/tokenizer.json",
           "tokenizer/tokenizer_config.json", "transformer/config.json", "vae/config.json"]
SHARDED = ["transformer/diffusion_pytorch_model.safetensors.index.json",
           *[f"transformer/diffusion_pytorch_model-{i:05d}-of-00003.safetensors" for i in (1, 2, 3)],
           "text_encoder/model.safetensors.index.json",
           *[f"text_encoder/model-{i:05d}-of-00002.safetensors" for i in (1, 2)],
           "vae/diffusion_pytorch_model.safetensors"]
FP16 = ["transformer/diffusion_pytorch_model.safetensors.index.fp16.json",
        *[f"transformer/diffusion_pytorch_model-{i:05d}-of-00002.fp16.safetensors" for i in (1, 2)],
        "vae/diffusion_pytorch_model.fp16.safetensors"]
EXTRAS = ["README.md", ".gitattributes", "assets/logo.png", "examples/i2v_input.JPG", "wan2.1_t2v_1.3B.safetensors",
          "transformer_2/config.json", "transformer_2/diffusion_pytorch_model.safetensors",
          "text_encoder/pytorch_model.bin", "vae/diffusion_pytorch_model.bin", "google/umt5-xxl/spiece.model"]


def test_plain_weights_configs_and_tokenizer_only():
    sel = select(CONFIGS + SHARDED + FP16 + EXTRAS, INDEX)
    assert sorted(sel.files) == sorted(CONFIGS + SHARDED)
    assert set(sel.variants.values()) == {None} and not sel.notes


def test_the_models_own_render_defaults_come_along():
    from videogen.settings import MODEL_DEFAULTS

    assert MODEL_DEFAULTS in select(CONFIGS + SHARDED + [MODEL_DEFAULTS], INDEX).files


def test_a_variant_where_there_is_one_and_the_plain_weights_elsewhere():
    sel = select(CONFIGS + SHARDED + FP16 + EXTRAS, INDEX, "fp16")
    assert sorted(sel.files) == sorted(CONFIGS + FP16 + [f for f in SHARDED if f.startswith("text_encoder/")])
    assert sel.variants == {"transformer": "fp16", "vae": "fp16", "text_encoder": None, "tokenizer": None,
                            "scheduler": None}


def test_only_a_variant_is_used_with_a_note():
    only = CONFIGS + FP16 + [f for f in SHARDED if f.startswith("text_encoder/")]
    sel = select(only, INDEX)
    assert sel.variants["transformer"] == "fp16" and len(sel.notes) == 2
    with pytest.raises(UserError, match="no component has bf16 weights"):
        select(only, INDEX, "bf16")


def test_two_variants_and_no_plain_weights_must_be_chosen():
    files = CONFIGS + ["vae/diffusion_pytorch_model.fp16.safetensors", "vae/diffusion_pytorch_model.bf16.safetensors"]
    with pytest.raises(UserError, match="component 'vae' has weights in variants bf16, fp16 only"):
        select(files, INDEX)
    assert select(files, INDEX, "bf16").variants["vae"] == "bf16"


@pytest.mark.parametrize("name, expected", [
    ("diffusion_pytorch_model.safetensors", (True, None)),
    ("model.fp16.safetensors", (True, "fp16")),
    ("diffusion_pytorch_model.fp16-00001-of-00002.safetensors", (True, "fp16")),
    ("model-00001-of-00002.bf16.safetensors", (True, "bf16")),
    ("model.safetensors.index.json", (True, None)),
    ("diffusion_pytorch_model.safetensors.index.fp16.json", (True, "fp16")),
    ("config.json", (False, None)),
    ("pytorch_model.bin", (False, None)),
])
def test_weights_variant_names(name, expected):
    assert weights_variant(name) == expected
