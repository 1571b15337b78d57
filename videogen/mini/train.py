"""Train the miniature text-to-video model and export it in diffusers (WanPipeline) format.

    python -m videogen.mini.train --work runs/mini --out videogen/mini/model

Stages: VAE (per-frame AutoencoderKL) -> latent statistics + pre-encoded latents -> transformer
(WanTransformer3DModel + tiny UMT5 text encoder, flow matching; a first phase at the sampler's noise
levels, then a refine phase weighted towards low noise).  Seeded; checkpoints to the work folder every
few minutes and resumes from there when restarted with the same command.  Two decoder-only stages follow
(`--polish-decoder`, then `--adapt-decoder`); `make mini-model` runs them all.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import data
from . import modeling as M


def log(work: Path, msg: str) -> None:
    line = f"[{time.strftime('%H:%M:%S')}] {msg}"
    print(line, flush=True)
    with open(work / "log.txt", "a") as f:
        f.write(line + "\n")


def atomic_save(obj, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def psnr_uint8(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-10)))


# ----------------------------------------------------------------------------- VAE
def cosine_lr(opt, base: float, step: int, total: int, floor: float = 0.05) -> float:
    """Set (and return) a cosine learning rate from `base` down to `floor * base` over `total` steps."""
    lr = base * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * step / total)))
    for g in opt.param_groups:
        g["lr"] = lr
    return lr


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


def train_vae(args, work: Path):
    final = work / "vae_final.pt"
    vae = M.build_vae(args.latent_channels)
    if final.exists():
        vae.load_state_dict(torch.load(final)["vae"])
        return vae.eval()
    torch.manual_seed(args.seed)
    opt = torch.optim.AdamW(vae.parameters(), lr=args.vae_lr, weight_decay=0.0)
    step = 0
    ck = work / "vae_ckpt.pt"
    rng = np.random.default_rng(args.seed + 1)
    if ck.exists():
        s = torch.load(ck, weights_only=False)
        vae.load_state_dict(s["vae"])
        opt.load_state_dict(s["opt"])
        step = s["step"]
        rng.bit_generator.state = s["rng"]
        torch.set_rng_state(s["torch_rng"])
        log(work, f"vae: resumed at step {step}")
    train_combos = data.split_combos()[0]
    last_ck = time.time()
    t0 = time.time()
    vae.train()
    while step < args.vae_steps:
        lr = cosine_lr(opt, args.vae_lr, step, args.vae_steps)
        x = frame_batch(args.vae_batch, rng, train_combos)
        post = vae.encode(x).latent_dist
        rec = vae.decode(post.sample()).sample
        err = rec - x
        loss = err.pow(2).mean() + 0.5 * err.abs().mean() + args.vae_kl * post.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        step += 1
        if step % 100 == 0:
            log(work, f"vae step {step} loss {loss.item():.5f} lr {lr:.2e} ({time.time() - t0:.0f}s)")
        if step % 500 == 0 or step == args.vae_steps:
            log(work, f"vae step {step} PSNR {vae_eval(vae):.2f} dB")
        if time.time() - last_ck > args.ckpt_every or step == args.vae_steps:
            atomic_save({"vae": vae.state_dict(), "opt": opt.state_dict(), "step": step,
                         "rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state()}, ck)
            last_ck = time.time()
    psnr = vae_eval(vae, n_clips=128, seed=12345)
    log(work, f"vae done: {step} steps, fresh-clip PSNR {psnr:.2f} dB")
    atomic_save({"vae": vae.state_dict(), "psnr": psnr}, final)
    return vae.eval()


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


def polish_decoder(args, work: Path):
    """Fine-tune only the VAE decoder (post_quant_conv + decoder) on posterior modes of the frozen encoder.

    The latent space (encoder, quant_conv, latent statistics) is unchanged, so this can run after or
    alongside transformer training.  Writes vae_polished.pt; `export.swap_decoder` puts its decoder into an
    exported folder.
    """
    out = work / "vae_polished.pt"
    if out.exists():
        return
    vae = M.build_vae(args.latent_channels)
    vae.load_state_dict(torch.load(work / "vae_final.pt")["vae"])
    params = decoder_only(vae)
    torch.manual_seed(args.seed + 6)
    opt = torch.optim.AdamW(params, lr=args.polish_lr, weight_decay=0.0)
    rng = np.random.default_rng(args.seed + 7)
    step = 0
    ck = work / "polish_ckpt.pt"
    if ck.exists():
        s = torch.load(ck, weights_only=False)
        vae.load_state_dict(s["vae"])
        opt.load_state_dict(s["opt"])
        step = s["step"]
        rng.bit_generator.state = s["rng"]
        log(work, f"polish: resumed at step {step}")
    train_combos = data.split_combos()[0]
    last_ck = time.time()
    t0 = time.time()
    while step < args.polish_steps:
        lr = cosine_lr(opt, args.polish_lr, step, args.polish_steps)
        x = frame_batch(args.vae_batch, rng, train_combos)
        with torch.no_grad():
            z = vae.encode(x).latent_dist.mode()
        err = vae.decode(z).sample - x
        loss = err.pow(2).mean() + 0.5 * err.abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        if step % 100 == 0:
            log(work, f"polish step {step} loss {loss.item():.5f} lr {lr:.2e} ({time.time() - t0:.0f}s)")
        if step % 500 == 0:
            log(work, f"polish step {step} PSNR {vae_eval(vae):.2f} dB")
        if time.time() - last_ck > args.ckpt_every or step == args.polish_steps:
            atomic_save({"vae": vae.state_dict(), "opt": opt.state_dict(), "step": step,
                         "rng": rng.bit_generator.state}, ck)
            last_ck = time.time()
    psnr = vae_eval(vae, n_clips=128, seed=12345)
    log(work, f"polish done: {step} steps, fresh-clip PSNR {psnr:.2f} dB")
    atomic_save({"vae": vae.state_dict(), "psnr": psnr}, out)


def adapt_decoder(args, work: Path) -> None:
    """Fine-tune the VAE decoder of the exported model on the transformer's own samples.

    A small transformer's samples are close to real latents but slightly off (blotchy insides, soft
    corners), and a decoder trained only on encoder outputs draws that as it is.  Here real training clips
    are noised to a low level (steps 10-14 of 16) and finished by the exported transformer with the default
    guidance (img2img); the result keeps the clip's content but carries the sampler's errors, and the decoder
    learns to draw the real clip from it.  Half of each batch stays clean encoder output, so reconstruction
    holds.  The encoder and latent statistics are unchanged.  Writes vae_adapted.pt for `export.swap_decoder`.
    """
    from .evaluate import DEFAULTS_PATH
    from .export import load

    out = work / "vae_adapted.pt"
    if out.exists():
        return
    tok, te, tr, vae, sched, mean, std = load(args.out)
    defaults = json.loads(DEFAULTS_PATH.read_text())
    steps, guidance = defaults["steps"], defaults["guidance"]
    pairs = work / "adapt_pairs.pt"
    rng = np.random.default_rng(args.seed + 9)
    train_combos = data.split_combos()[0]
    if pairs.exists():
        p = torch.load(pairs, weights_only=False)
    else:
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
        p = {"video": np.concatenate(videos), "latents": torch.cat(lats)}
        atomic_save(p, pairs)
        log(work, f"adapt: {args.adapt_clips} img2img pairs in {time.time() - t0:.0f}s")
    n, c, f, h, w = p["latents"].shape
    z_gen = p["latents"].transpose(1, 2).reshape(n * f, c, h, w) * std.view(1, -1, 1, 1) + mean.view(1, -1, 1, 1)
    x_real = M.video_to_tensor(p["video"])
    params = decoder_only(vae)
    torch.manual_seed(args.seed + 10)
    opt = torch.optim.AdamW(params, lr=args.adapt_lr, weight_decay=0.0)
    t0 = time.time()
    half = args.vae_batch // 2
    for step in range(args.adapt_steps):
        cosine_lr(opt, args.adapt_lr, step, args.adapt_steps)
        idx = torch.from_numpy(rng.integers(0, n * f, half))
        x = frame_batch(half, rng, train_combos)
        with torch.no_grad():
            z = torch.cat([z_gen[idx], vae.encode(x).latent_dist.mode()])
        err = vae.decode(z).sample - torch.cat([x_real[idx], x])
        loss = err.pow(2).mean() + 0.5 * err.abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if (step + 1) % 100 == 0:
            log(work, f"adapt step {step + 1} loss {loss.item():.5f} ({time.time() - t0:.0f}s)")
    psnr = vae_eval(vae, n_clips=128, seed=12345)
    log(work, f"adapt done: {args.adapt_steps} steps, fresh-clip PSNR {psnr:.2f} dB")
    atomic_save({"vae": vae.state_dict(), "psnr": psnr}, out)


# ----------------------------------------------------------------------------- latents
def encode_pool(args, work: Path, vae):
    path = work / "latents.pt"
    if path.exists():
        return torch.load(path, weights_only=False)
    rng = np.random.default_rng(args.seed + 2)
    train_combos = data.split_combos()[0]
    t0 = time.time()
    lats, caps = [], []
    for i in range(0, args.pool, 64):
        b = data.sample_batch(min(64, args.pool - i), rng, train_combos)
        lats.append(M.encode_video(vae, b.video).half())
        caps += b.captions
    lat = torch.cat(lats)  # [N, C, F, h, w] raw posterior modes
    flat = lat.float().transpose(0, 1).reshape(lat.shape[1], -1)
    mean = flat.mean(1)
    std = flat.std(1)
    pool = {"latents": lat, "captions": caps, "mean": mean, "std": std}
    atomic_save(pool, path)
    log(work, f"encoded {len(caps)} clips in {time.time() - t0:.0f}s; latents_mean {mean.tolist()} std {std.tolist()}")
    return pool


# ----------------------------------------------------------------------------- transformer
def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--work", default="runs/mini")
    p.add_argument("--out", default="videogen/mini/model")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--ckpt-every", type=float, default=180.0)
    p.add_argument("--latent-channels", type=int, default=4)
    p.add_argument("--vae-steps", type=int, default=1100)
    p.add_argument("--vae-batch", type=int, default=64)
    p.add_argument("--vae-lr", type=float, default=2e-3)
    p.add_argument("--vae-kl", type=float, default=1e-6)
    p.add_argument("--pool", type=int, default=4000)
    p.add_argument("--grow-every", type=int, default=25, help="encode 32 fresh clips into the pool every N steps")
    p.add_argument("--steps", type=int, default=12000)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=300)
    p.add_argument("--ema", type=float, default=0.999)
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--head-dim", type=int, default=32)
    p.add_argument("--ffn", type=int, default=384)
    p.add_argument("--patch", type=int, default=1, help="spatial patch size of the transformer")
    p.add_argument("--patch-t", type=int, default=data.FRAMES,
                   help="temporal patch size: the default puts the whole clip into each token (tubelets)")
    p.add_argument("--text-dim", type=int, default=64)
    p.add_argument("--shift", type=float, default=3.0)
    p.add_argument("--cfg-drop", type=float, default=0.1)
    p.add_argument("--eval-every", type=int, default=1000)
    p.add_argument("--export-every", type=int, default=1000)
    p.add_argument("--refine-steps", type=int, default=9000,
                   help="second transformer phase: continue from the first phase's weights for this many steps")
    p.add_argument("--refine-lr", type=float, default=3e-4)
    p.add_argument("--refine-shift", type=float, default=1.0,
                   help="time shift of the noise levels drawn in the second phase (1 = no shift: more low-noise "
                        "steps, where edges and corners are decided)")
    p.add_argument("--stop-at", default=None, help="UTC HH:MM: stop (checkpoint + export) at this wall time")
    p.add_argument("--stop-step", type=int, default=None,
                   help="stop (checkpoint + export) at this step, keeping the lr schedule of --steps")
    p.add_argument("--vae-only", action="store_true")
    p.add_argument("--polish-decoder", action="store_true", help="only run the decoder fine-tuning stage")
    p.add_argument("--polish-steps", type=int, default=1500)
    p.add_argument("--polish-lr", type=float, default=5e-4)
    p.add_argument("--adapt-decoder", action="store_true",
                   help="only fine-tune the decoder of the model in --out on the transformer's samples")
    p.add_argument("--adapt-clips", type=int, default=2048)
    p.add_argument("--adapt-steps", type=int, default=800)
    p.add_argument("--adapt-lr", type=float, default=2e-4)
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if args.polish_decoder:
        (work / "args_polish.json").write_text(json.dumps(vars(args), indent=1))
        polish_decoder(args, work)
        return
    if args.adapt_decoder:
        (work / "args_adapt.json").write_text(json.dumps(vars(args), indent=1))
        adapt_decoder(args, work)
        return
    (work / "args.json").write_text(json.dumps(vars(args), indent=1))

    vae = train_vae(args, work)
    for q in vae.parameters():
        q.requires_grad_(False)
    if args.vae_only:
        return
    pool = encode_pool(args, work, vae)
    main_phase = Phase("tr_ckpt.pt", args.steps, args.lr, args.shift, init=None)
    if not train_transformer(args, work, vae, pool, main_phase):
        return
    if args.refine_steps:
        refine = Phase("refine_ckpt.pt", args.refine_steps, args.refine_lr, args.refine_shift, init="tr_ckpt.pt")
        train_transformer(args, work, vae, pool, refine)


@dataclass(frozen=True)
class Phase:
    """One transformer training phase: its checkpoint file, length, peak lr, the time shift of the noise
    levels it trains on, and the checkpoint whose weights (not optimizer or schedule) it starts from."""

    ckpt: str
    steps: int
    lr: float
    train_shift: float
    init: str | None


def train_transformer(args, work: Path, vae, pool, phase: Phase) -> bool:
    """Run (or resume) one phase; True when it ran to its last step."""
    from .evaluate import quick_eval
    from .export import export

    torch.manual_seed(args.seed + 3)
    tok = M.build_tokenizer()
    te = M.build_text_encoder(len(tok), args.text_dim)
    tr = M.build_transformer(args.latent_channels, args.text_dim, layers=args.layers, heads=args.heads,
                             head_dim=args.head_dim, ffn=args.ffn, patch=(args.patch_t, args.patch, args.patch))
    params = list(tr.parameters()) + list(te.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01, betas=(0.9, 0.99))
    ema_tr, ema_te = copy.deepcopy(tr).eval(), copy.deepcopy(te).eval()
    for q in list(ema_tr.parameters()) + list(ema_te.parameters()):
        q.requires_grad_(False)
    step = 0
    rng = np.random.default_rng(args.seed + 4)
    ck = work / phase.ckpt
    train_s = 0.0
    grow_rng = np.random.default_rng(args.seed + 5)
    extra_lat, extra_caps = [], []
    train_combos = data.split_combos()[0]
    if ck.exists():
        s = torch.load(ck, weights_only=False)
        tr.load_state_dict(s["tr"])
        te.load_state_dict(s["te"])
        ema_tr.load_state_dict(s["ema_tr"])
        ema_te.load_state_dict(s["ema_te"])
        opt.load_state_dict(s["opt"])
        step = s["step"]
        rng.bit_generator.state = s["rng"]
        torch.set_rng_state(s["torch_rng"])
        train_s = s.get("train_s", 0.0)
        grow_rng.bit_generator.state = s["grow_rng"]
        extra_lat, extra_caps = s["extra_lat"], s["extra_caps"]
        log(work, f"transformer ({phase.ckpt}): resumed at step {step}")
    elif phase.init:
        s = torch.load(work / phase.init, weights_only=False)
        for module, key in ((tr, "tr"), (te, "te"), (ema_tr, "ema_tr"), (ema_te, "ema_te")):
            module.load_state_dict(s[key])
        grow_rng.bit_generator.state = s["grow_rng"]
        extra_lat, extra_caps = s["extra_lat"], s["extra_caps"]
        rng = np.random.default_rng(args.seed + 8)
        log(work, f"transformer ({phase.ckpt}): starting from {phase.init} (step {s['step']})")
    n_tr = sum(q.numel() for q in tr.parameters())
    n_te = sum(q.numel() for q in te.parameters())
    log(work, f"transformer params {n_tr / 1e6:.2f}M, text encoder {n_te / 1e6:.3f}M")

    lat_all = torch.cat([pool["latents"]] + extra_lat)
    caps_all = pool["captions"] + extra_caps
    mean, std = pool["mean"], pool["std"]
    ema_params = list(ema_tr.parameters()) + list(ema_te.parameters())
    live_params = list(tr.parameters()) + list(te.parameters())

    def save():
        atomic_save({"tr": tr.state_dict(), "te": te.state_dict(), "ema_tr": ema_tr.state_dict(),
                     "ema_te": ema_te.state_dict(), "opt": opt.state_dict(), "step": step,
                     "rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(), "train_s": train_s,
                     "grow_rng": grow_rng.bit_generator.state, "extra_lat": extra_lat, "extra_caps": extra_caps}, ck)

    def do_export():
        export(args.out, tok, ema_te, ema_tr, vae, mean, std, args.shift)
        log(work, f"exported EMA weights at step {step} to {args.out}")

    stop_ts = None
    if args.stop_at:
        hh, mm = map(int, args.stop_at.split(":"))
        now = time.gmtime()
        minutes = ((hh * 60 + mm) - (now.tm_hour * 60 + now.tm_min)) % (24 * 60)  # may be after midnight
        stop_ts = time.time() + minutes * 60 - now.tm_sec
    last_ck = time.time()
    tr.train()
    te.train()
    losses = []
    t_seg = time.time()
    while step < phase.steps:
        if args.grow_every and step % args.grow_every == 0:
            b = data.sample_batch(32, grow_rng, train_combos)
            new = M.encode_video(vae, b.video).half()
            extra_lat.append(new)
            extra_caps += b.captions
            lat_all = torch.cat([lat_all, new])
            caps_all = caps_all + b.captions
        lr = cosine_lr(opt, phase.lr * min(1.0, (step + 1) / args.warmup), step, phase.steps, floor=0.1)
        idx = rng.integers(0, lat_all.shape[0], args.batch)
        x0 = (lat_all[idx].float() - mean.view(1, -1, 1, 1, 1)) / std.view(1, -1, 1, 1, 1)
        caps = [caps_all[i] if rng.random() >= args.cfg_drop else "" for i in idx]
        # logit-normal u, then a time shift (the first phase uses the inference scheduler's)
        u = torch.sigmoid(torch.from_numpy(rng.standard_normal(args.batch)).float())
        s = M.shifted_sigmas(u, phase.train_shift)
        noise = torch.from_numpy(rng.standard_normal(x0.shape).astype(np.float32))
        sb = s.view(-1, 1, 1, 1, 1)
        xt = (1 - sb) * x0 + sb * noise
        emb = M.encode_prompts(tok, te, caps)
        pred = tr(xt, s * 1000.0, emb, return_dict=False)[0]
        loss = (pred - (noise - x0)).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        d = min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            torch._foreach_lerp_(ema_params, live_params, 1 - d)
        losses.append(loss.item())
        if step % 100 == 0:
            now = time.time()
            train_s += now - t_seg
            t_seg = now
            log(work, f"{phase.ckpt} step {step} loss {np.mean(losses):.4f} lr {lr:.2e} train_s {train_s:.0f}")
            losses = []
        finished = step == phase.steps
        timed_out = (stop_ts is not None and time.time() > stop_ts) or step == args.stop_step
        if time.time() - last_ck > args.ckpt_every or finished or timed_out:
            save()
            last_ck = time.time()
        if step % args.export_every == 0 or finished or timed_out:
            do_export()
        if step % args.eval_every == 0 or finished or timed_out:
            t1 = time.time()
            try:
                res = quick_eval(tok, ema_te, ema_tr, vae, mean, std, args.shift, n=48)
            except Exception as e:  # never let a broken eval kill a long run
                res = f"eval failed: {e!r}"
            log(work, f"eval step {step}: {res} ({time.time() - t1:.0f}s)")
            t_seg += time.time() - t1
        if timed_out:
            log(work, "stop-at time reached")
            return False
    log(work, f"transformer ({phase.ckpt}) done at step {step}, train time {train_s:.0f}s")
    return True


if __name__ == "__main__":
    main()
