"""Latent-to-RGB factors of the built-in model, fitted by least squares on its own VAE.

A preview maps each latent pixel to a colour with one [C,3] matrix and a bias (as ComfyUI does for the big
families). For the built-in model there is no published matrix, so it is fitted here: clips of its world are
encoded by its VAE (posterior mode, in the model's normalised latent space, where the sampler works), the
frames are averaged down to latent resolution, and RGB in [-1, 1] is regressed on the latent channels.

    python -m videogen.mini.latent_rgb [--clips 512]   # rewrites videogen/mini/latent_rgb.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
FACTORS = HERE / "latent_rgb.json"


def fit(clips: int = 512, seed: int = 0) -> dict:
    import torch
    from diffusers import AutoencoderKL

    from videogen import vae as vae_ops
    from videogen.mini import data

    vae = AutoencoderKL.from_pretrained(HERE / "model" / "vae").eval()
    geo = vae_ops.vae_geometry(dict(vae.config))
    rng = np.random.default_rng(seed)
    # every combination of the world, seen in and out of training, so no colour is left out of the fit
    batch = data.sample_batch(clips, rng, combos=data.all_combos())
    video = torch.from_numpy(batch.video).float().div(127.5).sub(1)  # [N,F,H,W,3] in [-1, 1]
    zs, rgbs = [], []
    with torch.no_grad():
        for chunk in video.split(32):
            pixels = chunk.permute(0, 4, 1, 2, 3)  # [N,3,F,H,W]
            z = vae_ops.encode(vae, pixels, geo.per_frame, mode=True)  # [N,C,F,h,w], normalised
            small = torch.nn.functional.avg_pool3d(pixels, (1, geo.spatial, geo.spatial))
            zs.append(z.permute(0, 2, 3, 4, 1).reshape(-1, z.shape[1]))
            rgbs.append(small.permute(0, 2, 3, 4, 1).reshape(-1, 3))
    z, rgb = torch.cat(zs).double(), torch.cat(rgbs).double()
    design = torch.cat([z, torch.ones(len(z), 1, dtype=z.dtype)], dim=1)
    solution = torch.linalg.lstsq(design, rgb).solution  # [C+1, 3]
    residual = (design @ solution - rgb).pow(2).mean().sqrt().item()
    return {"factors": [[round(v, 5) for v in row] for row in solution[:-1].tolist()],
            "bias": [round(v, 5) for v in solution[-1].tolist()],
            "fit": {"clips": clips, "seed": seed, "latent_pixels": len(z), "rmse_on_-1..1": round(residual, 4),
                    "method": "least squares, RGB (avg-pooled to latent size) on normalised posterior-mode latents"}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=512)
    ap.add_argument("--out", type=Path, default=FACTORS)
    args = ap.parse_args()
    result = fit(args.clips)
    rows = ",\n".join(f"  {json.dumps(r)}" for r in result["factors"])
    text = (f'{{\n "factors": [\n{rows}\n ],\n "bias": {json.dumps(result["bias"])},\n'
            f' "fit": {json.dumps(result["fit"])}\n}}\n')
    args.out.write_text(text, encoding="utf-8")
    print(json.dumps(result["fit"]))


if __name__ == "__main__":
    main()
