"""HunyuanVideo's original module names (Tencent's checkpoint and LoRA scripts, ComfyUI, musubi) -> diffusers'.

Read from diffusers' `_convert_hunyuan_video_lora_to_diffusers` and `scripts/convert_hunyuan_video_to_diffusers.py`.
The original fuses some projections into one linear layer: `img_attn_qkv` (q, k, v), `txt_attn_qkv` (the text
stream's q, k, v) and the single blocks' `linear1` (q, k, v and the MLP's input); their LoRAs share the down
matrix, and the up matrix's rows split in that order (diffusers' converter assumes 3072 rows each, the full model's
width; here the sizes come from the model's own weights).
"""

from __future__ import annotations

import re

DOUBLE_PIECES = (  # double_blocks.N. <-> transformer_blocks.N.
    ("img_attn_proj", "attn.to_out.0"), ("txt_attn_proj", "attn.to_add_out"),
    ("img_mod.linear", "norm1.linear"), ("txt_mod.linear", "norm1_context.linear"),
    ("img_mlp.fc1", "ff.net.0.proj"), ("img_mlp.fc2", "ff.net.2"),
    ("txt_mlp.fc1", "ff_context.net.0.proj"), ("txt_mlp.fc2", "ff_context.net.2"),
    ("img_attn_q_norm", "attn.norm_q"), ("img_attn_k_norm", "attn.norm_k"),
    ("txt_attn_q_norm", "attn.norm_added_q"), ("txt_attn_k_norm", "attn.norm_added_k"),
)
SINGLE_PIECES = (  # single_blocks.N. <-> single_transformer_blocks.N.
    ("linear2", "proj_out"), ("modulation.linear", "norm.linear"), ("q_norm", "attn.norm_q"),
    ("k_norm", "attn.norm_k"),
)
TOP_PIECES = (
    ("img_in.proj", "x_embedder.proj"),
    ("time_in.mlp.0", "time_text_embed.timestep_embedder.linear_1"),
    ("time_in.mlp.2", "time_text_embed.timestep_embedder.linear_2"),
    ("guidance_in.mlp.0", "time_text_embed.guidance_embedder.linear_1"),
    ("guidance_in.mlp.2", "time_text_embed.guidance_embedder.linear_2"),
    ("vector_in.in_layer", "time_text_embed.text_embedder.linear_1"),
    ("vector_in.out_layer", "time_text_embed.text_embedder.linear_2"),
    ("final_layer.linear", "proj_out"),
)
FUSED = {  # (original block prefix, piece) -> diffusers pieces, in the order of the fused rows
    ("double_blocks", "img_attn_qkv"): ("attn.to_q", "attn.to_k", "attn.to_v"),
    ("double_blocks", "txt_attn_qkv"): ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"),
    ("single_blocks", "linear1"): ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp"),
}
BLOCKS = {"transformer_blocks": ("double_blocks", DOUBLE_PIECES),
          "single_transformer_blocks": ("single_blocks", SINGLE_PIECES)}


def original_name(module: str) -> str | None:
    """diffusers module name -> HunyuanVideo's original one (None for one without its own original name)."""
    parts = module.split(".")
    if len(parts) > 2 and parts[0] in BLOCKS:
        orig, pieces = BLOCKS[parts[0]]
        rest = ".".join(parts[2:])
        for o, ours in pieces:
            if rest == ours:
                return f"{orig}.{parts[1]}.{o}"
        return None
    for orig, ours in TOP_PIECES:
        if module == ours:
            return orig
    return None


def fused_modules(modules: set[str]) -> dict[str, tuple[str, ...]]:
    """Original fused layer -> the diffusers modules its rows split into, for the blocks this model has."""
    out: dict[str, tuple[str, ...]] = {}
    for m in modules:
        match = re.fullmatch(r"(transformer_blocks|single_transformer_blocks)\.(\d+)\.attn\.to_q", m)
        if match is None:
            continue
        ours, n = match.groups()
        orig = BLOCKS[ours][0]
        for (block, piece), targets in FUSED.items():
            names = tuple(f"{ours}.{n}.{t}" for t in targets)
            if block == orig and all(t in modules for t in names):
                out[f"{orig}.{n}.{piece}"] = names
    return out
