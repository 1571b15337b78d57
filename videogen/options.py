"""Engine options (offload, VAE tiling, compile, attention backend, step cache, quantisation).

They are applied to the loaded modules, never as branches in the sampling loop.
"""

from __future__ import annotations

import torch

from videogen.errors import UserError
from videogen.families.base import Family
from videogen.spec import RenderSpec


def apply(model: Family, spec: RenderSpec, device: torch.device) -> None:
    unsupported = [f"--{name.replace('_', '-')} {value}" for name, value, off in (
        ("offload", spec.offload, "none"), ("cache", spec.cache, "none"), ("quantize", spec.quantize, "none"),
        ("attention", spec.attention, None), ("compile", spec.compile, False), ("vae_tiling", spec.vae_tiling, False),
    ) if value != off]
    if unsupported:
        raise UserError(f"not available yet in this build: {', '.join(unsupported)}")
    for module in model.modules().values():
        module.to(device)
