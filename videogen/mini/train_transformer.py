"""The transformer stages of the built-in model: latents of real clips encoded once (a pool that grows as it
trains), then flow-matching phases of the WanTransformer3DModel and its tiny UMT5 text encoder, with EMA."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import data
from . import modeling as M
from .train_common import Checkpoint, atomic_save, cosine_lr, log


def encode_pool(args, work: Path, vae) -> dict:
    """Posterior modes of `args.pool` training clips and their per-channel mean/std (latents.pt)."""
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
    mean, std = flat.mean(1), flat.std(1)
    pool = {"latents": lat, "captions": caps, "mean": mean, "std": std}
    atomic_save(pool, path)
    log(work, f"encoded {len(caps)} clips in {time.time() - t0:.0f}s; latents_mean {mean.tolist()} std {std.tolist()}")
    return pool


@dataclass(frozen=True)
class Phase:
    """One transformer training phase: its checkpoint file, length, peak lr, the time shift of the noise
    levels it trains on, and the checkpoint whose weights (not optimizer or schedule) it starts from."""

    ckpt: str
    steps: int
    lr: float
    train_shift: float
    init: str | None


def phases(args) -> list[Phase]:
    main = Phase("tr_ckpt.pt", args.steps, args.lr, args.shift, init=None)
    refine = Phase("refine_ckpt.pt", args.refine_steps, args.refine_lr, args.refine_shift, init="tr_ckpt.pt")
    return [main, refine] if args.refine_steps else [main]


def stop_time(stop_at: str | None) -> float | None:
    """The wall time of a UTC HH:MM (possibly after midnight) as a timestamp."""
    if not stop_at:
        return None
    hh, mm = map(int, stop_at.split(":"))
    now = time.gmtime()
    minutes = ((hh * 60 + mm) - (now.tm_hour * 60 + now.tm_min)) % (24 * 60)
    return time.time() + minutes * 60 - now.tm_sec


def train_transformer(args, work: Path, vae, pool: dict, phase: Phase) -> bool:
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
    ema_params = list(ema_tr.parameters()) + list(ema_te.parameters())
    for q in ema_params:
        q.requires_grad_(False)
    rng, grow_rng = np.random.default_rng(args.seed + 4), np.random.default_rng(args.seed + 5)
    modules = {"tr": tr, "te": te, "ema_tr": ema_tr, "ema_te": ema_te}
    ck = Checkpoint(work / phase.ckpt, modules, opt, {"rng": rng, "grow_rng": grow_rng}, args.ckpt_every)
    step, extra = 0, {"train_s": 0.0, "extra_lat": [], "extra_caps": []}
    if (state := ck.resume()) is not None:
        step, extra = state
        log(work, f"transformer ({phase.ckpt}): resumed at step {step}")
    elif phase.init:
        s = torch.load(work / phase.init, weights_only=False)
        for key, module in modules.items():
            module.load_state_dict(s[key])
        grow_rng.bit_generator.state = s["grow_rng"]
        extra = {**s["extra"], "train_s": 0.0}
        rng.bit_generator.state = np.random.default_rng(args.seed + 8).bit_generator.state
        log(work, f"transformer ({phase.ckpt}): starting from {phase.init} (step {s['step']})")
    log(work, f"transformer params {sum(q.numel() for q in tr.parameters()) / 1e6:.2f}M, "
              f"text encoder {sum(q.numel() for q in te.parameters()) / 1e6:.3f}M")

    train_combos = data.split_combos()[0]
    lat_all = torch.cat([pool["latents"]] + extra["extra_lat"])
    caps_all = pool["captions"] + extra["extra_caps"]
    mean, std = pool["mean"], pool["std"]
    stop_ts = stop_time(args.stop_at)
    tr.train()
    te.train()
    losses: list[float] = []
    t_seg = time.time()
    while step < phase.steps:
        if args.grow_every and step % args.grow_every == 0:
            b = data.sample_batch(32, grow_rng, train_combos)
            new = M.encode_video(vae, b.video).half()
            extra["extra_lat"].append(new)
            extra["extra_caps"] += b.captions
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
        pred = tr(xt, s * 1000.0, M.encode_prompts(tok, te, caps), return_dict=False)[0]
        loss = (pred - (noise - x0)).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        decay = min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            torch._foreach_lerp_(ema_params, params, 1 - decay)
        losses.append(loss.item())
        if step % 100 == 0:
            now = time.time()
            extra["train_s"] += now - t_seg
            t_seg = now
            log(work, f"{phase.ckpt} step {step} loss {np.mean(losses):.4f} lr {lr:.2e} train_s {extra['train_s']:.0f}")
            losses = []
        finished = step == phase.steps
        timed_out = (stop_ts is not None and time.time() > stop_ts) or step == args.stop_step
        if ck.due() or finished or timed_out:
            ck.save(step, extra)
        if step % args.export_every == 0 or finished or timed_out:
            export(args.out, tok, ema_te, ema_tr, vae, mean, std, args.shift)
            log(work, f"exported EMA weights at step {step} to {args.out}")
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
    log(work, f"transformer ({phase.ckpt}) done at step {step}, train time {extra['train_s']:.0f}s")
    return True
