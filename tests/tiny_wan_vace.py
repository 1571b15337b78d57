"""Tiny random Wan VACE and Wan video-to-video models in diffusers format (saved with save_pretrained)."""

from __future__ import annotations

from pathlib import Path

import torch
from tiny import save_components, tiny_wan_components

CONTROL_GAIN = 100.0


def tiny_vace_transformer(seed: int):
    """Two transformer blocks, a VACE block on each; control channels: inactive + reactive latents + 8x8 mask."""
    from diffusers import WanVACETransformer3DModel

    torch.manual_seed(seed)
    model = WanVACETransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=16, out_channels=16,
        text_dim=32, freq_dim=256, ffn_dim=32, num_layers=2, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32, vace_layers=[0, 1], vace_in_channels=16 * 2 + 8 * 8,
    ).eval()
    # The tiny VAE's latents vary little with the picture: amplify the control embedding so that what the
    # control clip shows reaches the frames (otherwise a parity test could not see a wrong control path).
    with torch.no_grad():
        model.vace_patch_embedding.weight[:, :32].mul_(CONTROL_GAIN)  # the latents, not the mask channels
    return model


def clip_components(scheduler: str = "unipc") -> dict:
    """tests/tiny.py's Wan parts, the VAE's latents_mean set to its own latents' mean.

    The tiny VAE's latents differ between pictures by ~0.03 around a mean of ~0.04, which the real Wan
    statistics (mean ~ -0.7, std ~ 2.5) would drown: centred on their own mean, what a clip shows carries
    through the normalisation into the network.
    """
    parts = tiny_wan_components(scheduler=scheduler)
    vae = parts["vae"]
    with torch.no_grad():
        z = vae.encode(torch.zeros(1, 3, 5, 16, 16)).latent_dist.mode()
    vae.register_to_config(latents_mean=[round(float(m), 6) for m in z.mean(dim=(0, 2, 3, 4))])
    return parts


def save_tiny_wan_vace(folder: Path, experts: int = 1, scheduler: str = "unipc") -> Path:
    """Wan 2.1 VACE (one transformer) or Wan 2.2 VACE (two experts split at boundary_ratio 0.875)."""
    from diffusers import WanVACEPipeline

    parts = clip_components(scheduler)
    parts["transformer"] = tiny_vace_transformer(1)
    if experts == 2:
        parts["transformer_2"] = tiny_vace_transformer(2)
        WanVACEPipeline(**parts, boundary_ratio=0.875).save_pretrained(folder, safe_serialization=True)
    else:
        WanVACEPipeline(**parts).save_pretrained(folder, safe_serialization=True)
    return folder


def save_tiny_wan_v2v(folder: Path, scheduler: str = "unipc", pipeline: str = "WanVideoToVideoPipeline") -> Path:
    """A Wan text-to-video model saved as a WanVideoToVideoPipeline (or as the WanPipeline it really is)."""
    return save_components(folder, pipeline, clip_components(scheduler),
                           **({"boundary_ratio": None, "expand_timesteps": False} if pipeline == "WanPipeline" else {}))


def write_clip(path: Path, frames, fps: int = 16) -> Path:
    """An H.264 MP4 of uint8 frames [F,H,W,3] (any even size: no resize to macro blocks), nearly lossless."""
    import imageio_ffmpeg
    import numpy as np

    f, h, w, _ = frames.shape
    writer = imageio_ffmpeg.write_frames(str(path), (w, h), fps=fps, codec="libx264", macro_block_size=1,
                                         pix_fmt_out="yuv420p", output_params=["-crf", "4"])
    writer.send(None)
    for frame in frames:
        writer.send(np.ascontiguousarray(frame))
    writer.close()
    return path


def smooth_clip(seed: int, frames: int, height: int, width: int):
    """Moving colour gradients (random clips would be noise after H.264), uint8 [F,H,W,3]."""
    import numpy as np

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    phase = rng.uniform(0, 6.28, 3)
    out = [np.stack([np.sin(6 * x + 4 * y * c + phase[c] + 0.5 * i) for c in range(3)], -1) for i in range(frames)]
    return ((np.stack(out) + 1) * 127.5).round().astype(np.uint8)


def mask_clip(frames: int, height: int, width: int):
    """White (generate) on the right half and on the middle frames, black (keep) elsewhere."""
    import numpy as np

    m = np.zeros((frames, height, width, 3), np.uint8)
    m[:, :, width // 2:] = 255
    m[1:-1] = 255
    return m


# Frames within 1/255 is the bar; they agree far closer (the same float ops), and a tolerance well under the
# change each input makes is what lets the parity tests see a wrong path through the tiny models.
TOL = 1e-4


def assert_parity(engine, spec, reference, what: str):
    """The engine's frames against `reference(resolved spec)` (diffusers' pipeline): within TOL."""
    import numpy as np

    ours = engine.render(spec).frames_float.numpy()
    ref = reference(engine.resolve(spec))
    assert ours.shape == ref.shape
    assert ref.std() > 1e-3, "constant reference frames would prove nothing"
    diff = float(np.abs(ours - ref).max())
    print(f"{what} parity {ref.shape}: max abs diff {diff:.2e}")
    assert diff <= TOL
    return ours
