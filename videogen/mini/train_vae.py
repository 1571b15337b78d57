"""The VAE stages of the built-in model: the VAE itself, then two decoder-only fine-tunings (polish on encoder
outputs, adapt on the transformer's own samples). The encoder and latent statistics never change after the first."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from . import data
from . import modeling as M
from .train_common import Checkpoint, atomic_save, cosine_lr, log


def psnr_uint8(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-10)))


def frame_batch(n: int, rng: np.random.Generator, combos: list[data.Combo]) -> torch.Tensor:
    """One random frame from each of n fresh clips: float [n, 3, H, W] in [-1, 1]."""
    b = data.sample_batch(n, rng, combos)
    fi = rng.integers(0, data.FRAMES, n)
    return M.video_to_tensor(b.video[np.arange(n), fi][:, None])


def vae_eval(vae, n_clips: int = 64, seed: int = 999) -> float:
    rng = np.random.default_rng(seed)
    b = data.sample_batch(n_clips, rng, data.all_combos())
    vae.eval()
    with torch.no_grad():
        x = M.video_to_tensor(b.video)
        rec = []
        for i in range(0, x.shape[0], 256):
            z = vae.encode(x[i : i + 256]).latent_dist.mode()
            rec.append(vae.decode(z).sample)
        rec = torch.cat(rec)
        rec = ((rec / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    vae.train()
    return psnr_uint8(rec.reshape(b.video.shape), b.video)


def decoder_only(vae) -> list[torch.nn.Parameter]:
    """Freeze the VAE but its decoder side (post_quant_conv + decoder), put only the decoder in training mode
    (no dropout or batch statistics here; eval keeps the encoder deterministic) and return that side's
    parameters."""
    params = list(vae.post_quant_conv.parameters()) + list(vae.decoder.parameters())
    for q in vae.parameters():
        q.requires_grad_(False)
    for q in params:
        q.requires_grad_(True)
    vae.eval()
    vae.decoder.train()
    return params


def reconstruction_loss(err: torch.Tensor) -> torch.Tensor:
    return err.pow(2).mean() + 0.5 * err.abs().mean()


def fit(work: Path, name: str, vae, params: list[torch.nn.Parameter], lr: float, steps: int,
        rng: np.random.Generator, loss_fn: Callable[[], torch.Tensor], ckpt_every: float,
        eval_every: int = 500) -> float:
    """Run (or resume from `<name>_ckpt.pt`) `steps` AdamW steps of `loss_fn` on `params`; the fresh-clip PSNR."""
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    ck = Checkpoint(work / f"{name}_ckpt.pt", {"vae": vae}, opt, {"rng": rng}, ckpt_every)
    step = 0
    if (state := ck.resume()) is not None:
        step = state[0]
        log(work, f"{name}: resumed at step {step}")
    t0 = time.time()
    while step < steps:
        current = cosine_lr(opt, lr, step, steps)
        loss = loss_fn()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        if step % 100 == 0:
            log(work, f"{name} step {step} loss {loss.item():.5f} lr {current:.2e} ({time.time() - t0:.0f}s)")
        if eval_every and step % eval_every == 0:
            log(work, f"{name} step {step} PSNR {vae_eval(vae):.2f} dB")
        if ck.due() or step == steps:
            ck.save(step)
    psnr = vae_eval(vae, n_clips=128, seed=12345)
    log(work, f"{name} done: {step} steps, fresh-clip PSNR {psnr:.2f} dB")
    return psnr


def train_vae(args, work: Path):
    """The per-frame VAE; writes vae_final.pt (and returns the VAE, loaded from there when it exists)."""
    final = work / "vae_final.pt"
    vae = M.build_vae(args.latent_channels)
    if final.exists():
        vae.load_state_dict(torch.load(final)["vae"])
        return vae.eval()
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed + 1)
    train_combos = data.split_combos()[0]
    vae.train()

    def loss() -> torch.Tensor:
        x = frame_batch(args.vae_batch, rng, train_combos)
        post = vae.encode(x).latent_dist
        return reconstruction_loss(vae.decode(post.sample()).sample - x) + args.vae_kl * post.kl().mean()

    psnr = fit(work, "vae", vae, list(vae.parameters()), args.vae_lr, args.vae_steps, rng, loss, args.ckpt_every)
    atomic_save({"vae": vae.state_dict(), "psnr": psnr}, final)
    return vae.eval()


def polish_decoder(args, work: Path) -> Path:
    """Fine-tune only the decoder on posterior modes of the frozen encoder; writes vae_polished.pt."""
    out = work / "vae_polished.pt"
    if out.exists():
        return out
    vae = M.build_vae(args.latent_channels)
    vae.load_state_dict(torch.load(work / "vae_final.pt")["vae"])
    params = decoder_only(vae)
    torch.manual_seed(args.seed + 6)
    rng = np.random.default_rng(args.seed + 7)
    train_combos = data.split_combos()[0]

    def loss() -> torch.Tensor:
        x = frame_batch(args.vae_batch, rng, train_combos)
        with torch.no_grad():
            z = vae.encode(x).latent_dist.mode()
        return reconstruction_loss(vae.decode(z).sample - x)

    psnr = fit(work, "polish", vae, params, args.polish_lr, args.polish_steps, rng, loss, args.ckpt_every)
    atomic_save({"vae": vae.state_dict(), "psnr": psnr}, out)
    return out


def adapt_pairs(args, work: Path, model, rng: np.random.Generator) -> dict:
    """Real training clips noised to a low level (steps 10-14 of 16) and finished by the exported transformer
    with the default guidance (img2img): latents that keep the clip's content but carry the sampler's errors."""
    from .evaluate import DEFAULTS_PATH

    path = work / "adapt_pairs.pt"
    if path.exists():
        return torch.load(path, weights_only=False)
    tok, te, tr, vae, sched, mean, std = model
    defaults = json.loads(DEFAULTS_PATH.read_text())
    steps, guidance = defaults["steps"], defaults["guidance"]
    train_combos = data.split_combos()[0]
    t0 = time.time()
    videos, lats = [], []
    for i in range(0, args.adapt_clips, 64):
        b = data.sample_batch(64, rng, train_combos)
        x0 = M.encode_video(vae, b.video, mean, std)
        cond = M.encode_prompts(tok, te, b.captions)
        uncond = M.encode_prompts(tok, te, [""] * len(b.captions))
        seeds = list(range(args.seed * 100_000 + i, args.seed * 100_000 + i + 64))
        start = int(rng.integers(steps * 5 // 8, steps * 7 // 8 + 1))
        lats.append(M.sample(tr, sched, cond, uncond, (1, *x0.shape[1:]), seeds, steps, guidance, x0, start))
        videos.append(b.video)
    pairs = {"video": np.concatenate(videos), "latents": torch.cat(lats)}
    atomic_save(pairs, path)
    log(work, f"adapt: {args.adapt_clips} img2img pairs in {time.time() - t0:.0f}s")
    return pairs


def adapt_decoder(args, work: Path) -> Path:
    """Fine-tune the decoder of the exported model (--out) to draw the real clip from its img2img latents, half of
    each batch staying clean encoder output so reconstruction holds; writes vae_adapted.pt."""
    from .export import load

    out = work / "vae_adapted.pt"
    if out.exists():
        return out
    model = load(args.out)
    vae, mean, std = model[3], model[5], model[6]
    rng = np.random.default_rng(args.seed + 9)
    pairs = adapt_pairs(args, work, model, rng)
    n, c, f, h, w = pairs["latents"].shape
    z_gen = pairs["latents"].transpose(1, 2).reshape(n * f, c, h, w) * std.view(1, -1, 1, 1) + mean.view(1, -1, 1, 1)
    x_real = M.video_to_tensor(pairs["video"])
    params = decoder_only(vae)
    torch.manual_seed(args.seed + 10)
    train_combos = data.split_combos()[0]
    half = args.vae_batch // 2

    def loss() -> torch.Tensor:
        idx = torch.from_numpy(rng.integers(0, n * f, half))
        x = frame_batch(half, rng, train_combos)
        with torch.no_grad():
            z = torch.cat([z_gen[idx], vae.encode(x).latent_dist.mode()])
        return reconstruction_loss(vae.decode(z).sample - torch.cat([x_real[idx], x]))

    psnr = fit(work, "adapt", vae, params, args.adapt_lr, args.adapt_steps, rng, loss, args.ckpt_every, eval_every=0)
    atomic_save({"vae": vae.state_dict(), "psnr": psnr}, out)
    return out
