"""What every family declares (latent format, RGB factors, accepted fields) and what the base class gives every
render from it: the x0 estimate at each step, in the declared format."""

from __future__ import annotations

import pytest
import torch

from videogen.engine import Engine
from videogen.families import FAMILIES
from videogen.spec import BUILTIN_MODEL, RenderSpec


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_each_family_declares_its_latent_format(family):
    fmt = family.latent
    assert fmt.layout in ("BCFHW", "BFCHW", "tokens") and fmt.temporal >= 1 and fmt.spatial >= 8
    factors, bias = fmt.latent_rgb_factors, fmt.latent_rgb_bias
    if family.name in ("cogvideox", "ltx2"):  # no published factors for CogVideoX's VAE nor LTX-2's
        assert factors is None and bias is None and not fmt.rgb
        return
    assert factors is not None and bias is not None
    assert torch.tensor(factors).shape == (fmt.channels, 3) and len(bias) == 3


def test_step_callback_gets_the_clean_estimate(tiny_wan_euler):
    """on_step(i, total, latents, x0) at every step; with Euler the last step lands on sigma 0, where the step's
    x0 estimate (x_t - sigma * v) is the final latents themselves."""
    spec = RenderSpec(prompt="a red cat", model=str(tiny_wan_euler), frames=5, height=16, width=16, steps=3,
                      guidance=3.0, seed=4, max_sequence_length=16)
    engine = Engine.load(spec)
    seen: list[tuple[int, int, torch.Tensor, torch.Tensor]] = []
    result = engine.render(spec, on_step=lambda i, n, x, x0: seen.append((i, n, x.clone(), x0.clone())))
    assert [(i, n) for i, n, _, _ in seen] == [(0, 3), (1, 3), (2, 3)]
    fmt = engine.model.format
    for _, _, x, x0 in seen:
        assert x0.shape == x.shape == (1, fmt.channels, 2, 16 // fmt.spatial, 16 // fmt.spatial)
    assert (seen[0][3] - seen[1][3]).abs().max() > 1e-3  # the estimate moves between steps
    assert (seen[-1][3] - seen[-1][2]).abs().max() < 1e-5
    # the callback watches only: the same spec renders the same frames without it
    assert torch.equal(engine.render(spec).frames_float, result.frames_float)


def test_builtin_model_rgb_factors_preview_its_frames():
    """The built-in model's fitted factors map its final latents to colours nearer its decoded frames than a blind
    guess (the fit is linear on 4 channels: a preview, not a decode)."""
    spec = RenderSpec(prompt="a red circle moving left on a black background", model=BUILTIN_MODEL, seed=1, steps=8,
                      frames=17, height=32, width=32, guidance=2.0)
    engine = Engine.load(spec)
    estimates: list[torch.Tensor] = []
    frames = engine.render(spec, on_step=lambda _i, _n, _x, x0: estimates.append(x0)).frames_float  # [F,H,W,3]
    fmt = engine.model.format
    factors = torch.tensor(fmt.latent_rgb_factors)
    x0 = estimates[-1]
    preview = (torch.einsum("bcfhw,cr->bfhwr", x0.float(), factors) + torch.tensor(fmt.latent_rgb_bias))[0]
    preview = (preview / 2 + 0.5).clamp(0, 1)  # [F,h,w,3]
    pooled = torch.nn.functional.adaptive_avg_pool3d(frames.permute(3, 0, 1, 2), preview.shape[:3]).permute(1, 2, 3, 0)
    error = (preview - pooled).abs().mean().item()
    blind = (0.5 - pooled).abs().mean().item()  # what a preview that knows nothing (mid grey) gets
    assert error < 0.75 * blind, (error, blind)
