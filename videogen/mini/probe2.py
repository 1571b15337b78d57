"""How much of an object's shape a VAE candidate's latent keeps, by object size: the question that decides the second
built-in model's VAE (a decoder can only draw what the latent holds; see REPORT2.md).

    python -m videogen.mini.probe2 train --work runs/probe-c128 --latent-channels 128 --steps 1600 1000
    python -m videogen.mini.probe2 probe --work runs/probe-c128 --latent-channels 128

`train` runs the recipe's two VAE phases (train2.VAE_PHASES), shortened to the given steps, on a VAE whose latent
has the given channels; `probe` encodes fresh one-object clips with the frozen encoder and trains a small
translation-invariant classifier (two 3x3x3 convolutions, a max over the latent grid, a linear layer) to name the
object's shape from its latent, then scores it on held-out clips, by size. Chance is a third."""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
import torch

from . import train2 as T
from . import world as W
from .data import BACKGROUNDS, COLOURS, SHAPES


def one_object_clips(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """`n` clips of one moving object (sizes in turn): video [n,F,H,W,3], shape index, size word."""
    videos, shapes, sizes = [], [], []
    for i in range(n):
        size, shape = W.SIZES[i % 3], int(rng.integers(len(SHAPES)))
        colour = list(COLOURS)[rng.integers(len(COLOURS))]
        background = next(b for b in rng.permutation(list(BACKGROUNDS)) if b != colour)
        thing = W.Thing(colour, SHAPES[shape], W.DIRECTIONS[rng.integers(4)], size,
                        W.SPEEDS[rng.integers(len(W.SPEEDS))])
        videos.append(W.render(W.Scene((thing,), str(background)), W.FRAMES, rng)[0])
        shapes.append(shape)
        sizes.append(size)
    return np.stack(videos), np.array(shapes), sizes


def encode(vae, video: np.ndarray) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([vae.encode(T.to_tensor(video[i:i + 4])).latent_dist.mode() for i in range(0, len(video), 4)])


def probe(vae, n_train: int = 600, n_test: int = 300, seed: int = 7, epochs: int = 60) -> dict[str, float]:
    """Held-out shape accuracy of the classifier, per size and overall."""
    rng = np.random.default_rng(seed)
    vae.eval()
    video, y, sizes = one_object_clips(n_train + n_test, rng)
    z = encode(vae, video)
    z = (z - z.mean((0, 2, 3, 4), keepdim=True)) / z.std((0, 2, 3, 4), keepdim=True).clamp(min=1e-6)
    labels = torch.from_numpy(y)
    torch.manual_seed(seed)
    channels = z.shape[1]
    net = torch.nn.Sequential(torch.nn.Conv3d(channels, 64, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.Conv3d(64, 64, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.AdaptiveMaxPool3d(1), torch.nn.Flatten(), torch.nn.Linear(64, len(SHAPES)))
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-4)
    for _ in range(epochs):
        for idx in torch.randperm(n_train).split(32):
            loss = torch.nn.functional.cross_entropy(net(z[idx]), labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        right = (net(z[n_train:]).argmax(1) == labels[n_train:]).numpy()
    test_sizes = np.array(sizes[n_train:])
    out = {size: float(right[test_sizes == size].mean()) for size in W.SIZES}
    out["all"] = float(right.mean())
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m videogen.mini.probe2")
    ap.add_argument("stage", choices=["train", "probe"])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--latent-channels", type=int, default=T.VAE_CONFIG["latent_channels"])
    ap.add_argument("--steps", type=int, nargs=2, default=[p.steps for p in T.VAE_PHASES],
                    help="steps of the two VAE phases")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    T.VAE_CONFIG["latent_channels"] = args.latent_channels  # the recipe's functions all build from this config
    if args.stage == "train":
        for phase, steps in zip(T.VAE_PHASES, args.steps, strict=True):
            if not (args.work / f"{phase.name}.pt").exists():
                T.train_vae(args.work, dataclasses.replace(phase, steps=steps))
        return
    vae = T.new_vae()
    name = T.VAE_PHASES[-1].name if (args.work / f"{T.VAE_PHASES[-1].name}.pt").exists() else T.VAE_PHASES[0].name
    vae.load_state_dict(torch.load(args.work / f"{name}.pt", map_location="cpu"))
    t0 = time.time()
    scores = probe(vae)
    psnr = T.vae_psnr(vae)
    print(f"{args.work} ({name}, {args.latent_channels} channels): PSNR {psnr:.2f} dB; held-out shape "
          + ", ".join(f"{k} {v:.1%}" for k, v in scores.items()) + f" ({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
