"""Wan's original module names (Wan-AI repository, ComfyUI, Kijai, lightx2v, musubi) -> diffusers' names.

Pairs of dotted path pieces, matched on whole segments; read from diffusers' Wan conversion script and LoRA
converter (`scripts/convert_wan_to_diffusers.py`, `_convert_non_diffusers_wan_lora_to_diffusers`).
"""

from __future__ import annotations

BLOCK_PIECES = (  # inside blocks.N.
    ("self_attn.q", "attn1.to_q"), ("self_attn.k", "attn1.to_k"), ("self_attn.v", "attn1.to_v"),
    ("self_attn.o", "attn1.to_out.0"), ("self_attn.norm_q", "attn1.norm_q"), ("self_attn.norm_k", "attn1.norm_k"),
    ("cross_attn.q", "attn2.to_q"), ("cross_attn.k", "attn2.to_k"), ("cross_attn.v", "attn2.to_v"),
    ("cross_attn.o", "attn2.to_out.0"), ("cross_attn.norm_q", "attn2.norm_q"), ("cross_attn.norm_k", "attn2.norm_k"),
    ("cross_attn.k_img", "attn2.add_k_proj"), ("cross_attn.v_img", "attn2.add_v_proj"),
    ("cross_attn.norm_k_img", "attn2.norm_added_k"),
    ("ffn.0", "ffn.net.0.proj"), ("ffn.2", "ffn.net.2"), ("norm3", "norm2"),
)
TOP_PIECES = (
    ("text_embedding.0", "condition_embedder.text_embedder.linear_1"),
    ("text_embedding.2", "condition_embedder.text_embedder.linear_2"),
    ("time_embedding.0", "condition_embedder.time_embedder.linear_1"),
    ("time_embedding.2", "condition_embedder.time_embedder.linear_2"),
    ("time_projection.1", "condition_embedder.time_proj"),
    ("head.head", "proj_out"),
    ("img_emb.proj.0", "condition_embedder.image_embedder.norm1"),
    ("img_emb.proj.1", "condition_embedder.image_embedder.ff.net.0.proj"),
    ("img_emb.proj.3", "condition_embedder.image_embedder.ff.net.2"),
    ("img_emb.proj.4", "condition_embedder.image_embedder.norm2"),
)


def original_name(module: str) -> str | None:
    """diffusers module name -> Wan's original one, or None when the original spells it the same."""
    parts = module.split(".")
    if len(parts) > 2 and parts[0] == "blocks":
        head, rest = ".".join(parts[:2]), ".".join(parts[2:])
        for orig, ours in BLOCK_PIECES:
            if rest == ours:
                return f"{head}.{orig}"
        return None
    for orig, ours in TOP_PIECES:
        if module == ours:
            return orig
    return None
