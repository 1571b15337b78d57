"""LTX-Video's original module names (Lightricks' checkpoint, ComfyUI `diffusion_model.*` LoRAs) -> diffusers'.

Read from diffusers' `scripts/convert_ltx_to_diffusers.py`: the blocks keep their names; only the patch
projection, the timestep embedding and the attention norms are renamed. (diffusers' own LTX converter only strips
the `diffusion_model.` prefix, so it loads LoRAs on the blocks alone.)
"""

from __future__ import annotations

RENAMED = (("proj_in", "patchify_proj"), ("time_embed", "adaln_single"))  # (diffusers, original) first segment
NORMS = (("norm_q", "q_norm"), ("norm_k", "k_norm"))  # (diffusers, original) last segment


def original_name(module: str) -> str | None:
    """diffusers module name -> LTX-Video's original one, or None when the original spells it the same."""
    parts = module.split(".")
    for ours, orig in RENAMED:
        if parts[0] == ours:
            return ".".join([orig, *parts[1:]])
    for ours, orig in NORMS:
        if parts[-1] == ours:
            return ".".join([*parts[:-1], orig])
    return None
