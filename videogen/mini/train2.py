"""Training of the second-generation built-in model (an LTX-Video folder: a causal video VAE compressing 16x in
space and 4x in time, a small LTX transformer, a small T5 encoder). Stages, each resumable from its checkpoint in
the work folder (run the same command again after a stop):

    python -m videogen.mini.train2 vae --work runs/mini2          (its phases one after the other)
    python -m videogen.mini.train2 transformer --work runs/mini2   (and at the same time, on another core:)
    python -m videogen.mini.train2 decoder --work runs/mini2
    python -m videogen.mini.train2 export --work runs/mini2 --out videogen/mini/model2
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import world as W
from .data import BACKGROUNDS
from .train_common import Checkpoint, atomic_save, cosine_lr, log

VAE_CONFIG: dict[str, Any] = dict(
    block_out_channels=(24, 48, 96, 96), decoder_block_out_channels=(32, 64, 96, 128),
    layers_per_block=(0, 1, 1, 1, 1), decoder_layers_per_block=(1, 1, 1, 1, 1), latent_channels=64,
    spatio_temporal_scaling=(True, True, False, False), decoder_spatio_temporal_scaling=(True, True, False, False),
    decoder_inject_noise=(False,) * 5, upsample_residual=(False,) * 4, upsample_factor=(1,) * 4,
    timestep_conditioning=False, patch_size=4, patch_size_t=1, encoder_causal=True, decoder_causal=False,
)


@dataclass(frozen=True)
class VaePhase:
    """One phase of the VAE stage: its steps, peak learning rate and loss weights, and the weights it starts from."""

    name: str  # also the file of its weights in the work folder: <name>.pt
    steps: int
    lr: float
    fg_weight: float  # extra weight of the pixels on and around the objects
    colour_weight: float  # weight of the error of each object zone's mean colour, frame by frame
    start: str | None  # the phase whose weights it continues (None: a new VAE)
    seed: int  # of its clips
    zone: int = 2  # pixels around the objects weighted as the objects (wider: fewer halos around them)
    encoder: bool = True  # False: only the decoder learns; the encoder, and so the latents, stay as `start` left them


# The first phase learns the background, where the objects are and how they move, but paints every object as the
# same grey blob: objects are a few percent of the pixels. The second weighs them 21x and adds their mean colour.
VAE_PHASES = (VaePhase("vae_base", 1600, 1e-4, 3.0, 0.0, None, seed=0),
              VaePhase("vae", 4000, 1e-4, 20.0, 1.0, "vae_base", seed=1))
# Once the latents are fixed the transformer learns them while the decoder goes on sharpening what it paints from
# them: the stages `transformer` and `decoder` can run at the same time, one core each.
DECODER_PHASE = VaePhase("vae_decoder", 8000, 5e-5, 20.0, 1.0, "vae", seed=2, zone=6, encoder=False)
TEXT_LEN = 24  # tokens; the model's default max_sequence_length (T5 runs on the padded prompt, as in LTXPipeline)
TEXT_CONFIG: dict[str, Any] = dict(d_model=96, d_kv=24, d_ff=192, num_layers=3, num_heads=4,
                                   relative_attention_num_buckets=8, relative_attention_max_distance=24)
# Patch 1: LTXPipeline sizes its latents by the transformer's in_channels and packs them by its patch size, so a
# patch above 1 (2x2 cells a token, a third of the step's cost) is not a folder diffusers can run.
TRANSFORMER_CONFIG: dict[str, Any] = dict(in_channels=64, out_channels=64, patch_size=1, patch_size_t=1,
                                          num_attention_heads=4, attention_head_dim=32, cross_attention_dim=128,
                                          num_layers=8, caption_channels=96)
LENGTHS = {17: 0.2, 25: 0.2, 33: 0.4, 41: 0.2}  # clip frames in training, and how often
SHIFT = 3.0  # the sampler's flow shift
POOL = 1200  # pre-encoded clips, renewed while training
BATCH = 24
LR = 1e-3
TRANSFORMER_STEPS = 6000
CPU = torch.device("cpu")
I2V_SHARE = 0.25  # items trained as image-to-video: the first latent frame clean, timestep 0 there


def to_tensor(video: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 [N, F, H, W, 3] -> float [N, 3, F, H, W] in [-1, 1], on `device`."""
    return torch.from_numpy(video).to(device).permute(0, 4, 1, 2, 3).float().div(127.5).sub(1.0)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 4, 1).cpu().numpy()


def clips(n: int, frames: int, rng: np.random.Generator, triples: list[W.Triple]) -> tuple[np.ndarray, list[W.Scene]]:
    scenes = [W.random_scene(rng, triples) for _ in range(n)]
    return np.stack([W.render(s, frames, rng)[0] for s in scenes]), scenes


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-10)))


def new_vae():
    from diffusers import AutoencoderKLLTXVideo

    vae = AutoencoderKLLTXVideo(**VAE_CONFIG)
    with torch.no_grad():
        # The encoder's last channel is the posterior's log-variance for every latent channel. Start it near
        # -12 (std 0.0025): a sample is then its mean, from training on, as it is when LTXImageToVideoPipeline
        # samples the latent of a first frame; the reconstruction loss keeps it low.
        vae.encoder.conv_out.conv.weight[-1].mul_(0.01)
        vae.encoder.conv_out.conv.bias[-1].fill_(-12.0)
    return vae


def vae_psnr(vae, n: int = 8, frames: int = W.FRAMES, seed: int = 999) -> float:
    video, _ = clips(n, frames, np.random.default_rng(seed), W.all_triples())
    device = next(vae.parameters()).device
    vae.eval()
    with torch.no_grad():
        x = to_tensor(video, device)
        out = np.concatenate([to_uint8(vae.decode(vae.encode(x[i:i + 1]).latent_dist.mode()).sample) for i in range(n)])
    vae.train()
    return psnr(out, video)


def object_zone(video: np.ndarray, scenes: list[W.Scene], grow: int = 2,
                device: torch.device | str = "cpu") -> torch.Tensor:
    """[N,1,F,H,W] 1 on and within `grow` pixels of the objects: a few percent of the pixels, which a plain
    reconstruction loss lets the VAE give up for a perfect background."""
    bg = np.array([BACKGROUNDS[s.background] for s in scenes], np.uint8)[:, None, None, None, :]
    zone = torch.from_numpy((video != bg).any(-1)).to(device).float()[:, None]
    return torch.nn.functional.max_pool3d(zone, (1, 2 * grow + 1, 2 * grow + 1), 1, (0, grow, grow))


def object_zone_loss(rec: torch.Tensor, x: torch.Tensor, zone: torch.Tensor, phase: VaePhase) -> torch.Tensor:
    """MSE + L1 with the object zone weighted up, plus the error of the zone's mean colour in each frame."""
    err = rec - x
    weight = 1 + phase.fg_weight * zone
    loss = ((err.pow(2) + 0.5 * err.abs()) * weight).sum() / (weight.sum() * 3)
    if phase.colour_weight:
        mean_err = (err * zone).sum((3, 4)) / zone.sum((3, 4)).clamp(min=1)
        loss = loss + phase.colour_weight * mean_err.pow(2).mean()
    return loss


def vae_oracle(vae, n: int = 12, seed: int = 5) -> dict[str, float]:
    """The oracle's score of the VAE's reconstructions of fresh 33-frame clips: the ceiling of the whole model."""
    from . import oracle2

    rng, right, device = np.random.default_rng(seed), {}, next(vae.parameters()).device
    vae.eval()
    for _ in range(n):
        video, scenes = clips(1, W.FRAMES, rng, W.all_triples())
        with torch.no_grad():
            rec = to_uint8(vae.decode(vae.encode(to_tensor(video, device)).latent_dist.mode()).sample)
        for k, v in oracle2.score(scenes[0], oracle2.read(rec[0])).items():
            right.setdefault(k, []).append(v)
    vae.train()
    return {k: float(np.mean(v)) for k, v in right.items()}


def train_vae(work: Path, phase: VaePhase, device: torch.device = CPU) -> None:
    """Fresh clips of 9 or 17 frames; a small KL keeps the latents near a unit Gaussian."""
    torch.manual_seed(0)
    rng = np.random.default_rng(phase.seed)
    vae = new_vae()
    if phase.start is not None:
        vae.load_state_dict(torch.load(work / f"{phase.start}.pt", map_location="cpu"))
    vae.to(device)
    params = list(vae.parameters())
    if not phase.encoder:
        vae.encoder.requires_grad_(False)
        params = [q for q in params if q.requires_grad]
    opt = torch.optim.AdamW(params, lr=phase.lr, betas=(0.9, 0.99), weight_decay=0.0)
    ck = Checkpoint(work / f"{phase.name}_ckpt.pt", {"vae": vae}, opt, {"rng": rng}, 300)
    step = 0
    if (state := ck.resume()) is not None:
        step = state[0]
        log(work, f"{phase.name}: resumed at step {step}")
    train, _ = W.split_triples()
    warmup = 200 if phase.start is None else 50
    t0, seen = time.time(), []
    while step < phase.steps:
        lr = cosine_lr(opt, phase.lr, step, phase.steps) * min(1.0, (step + 1) / warmup)
        for g in opt.param_groups:
            g["lr"] = lr
        n, frames = (4, 9) if step % 2 == 0 else (2, 17)
        video, scenes = clips(n, frames, rng, train)
        x = to_tensor(video, device)
        with torch.set_grad_enabled(phase.encoder):
            post = vae.encode(x).latent_dist
        rec = vae.decode(post.sample()).sample
        loss = object_zone_loss(rec, x, object_zone(video, scenes, phase.zone, device), phase)
        if phase.encoder:
            loss = loss + 1e-5 * 0.5 * (post.mean.pow(2) + post.var - 1 - post.logvar).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        seen.append(loss.item())
        if step % 50 == 0:
            log(work, f"{phase.name} {step}/{phase.steps} loss {np.mean(seen):.4f} lr {lr:.2e} "
                      f"{(time.time() - t0) / len(seen):.2f}s/step")
            seen, t0 = [], time.time()
        if step % 200 == 0 or step == phase.steps:
            read = " ".join(f"{k} {v:.2f}" for k, v in vae_oracle(vae).items())
            log(work, f"{phase.name} {step}: PSNR {vae_psnr(vae):.2f} dB; oracle on reconstructions: {read}")
        if ck.due() or step == phase.steps:
            ck.save(step)
    atomic_save({k: v.cpu() for k, v in vae.state_dict().items()}, work / f"{phase.name}.pt")
    log(work, f"{phase.name}: done")


def build_tokenizer():
    from .modeling import build_tokenizer as word_level

    return word_level(TEXT_LEN, W.vocabulary())


def new_text_encoder(vocab_size: int):
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(T5Config(vocab_size=vocab_size, dropout_rate=0.0, feed_forward_proj="gated-gelu",
                                   pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
                                   tie_word_embeddings=False, **TEXT_CONFIG))


def new_transformer():
    from diffusers import LTXVideoTransformer3DModel

    return LTXVideoTransformer3DModel(**TRANSFORMER_CONFIG)


def encode_text(tokenizer, text_encoder, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """T5 states of the padded prompts and their mask, exactly as LTXPipeline computes them."""
    t = tokenizer(prompts, padding="max_length", max_length=TEXT_LEN, truncation=True, add_special_tokens=True,
                  return_tensors="pt")
    device = next(text_encoder.parameters()).device
    return text_encoder(t.input_ids.to(device))[0], t.attention_mask.bool().to(device)


class Pool:
    """Normalised latents of training clips, per clip length, each with its caption; renewed a few at a time."""

    def __init__(self, vae, rng: np.random.Generator, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.vae, self.rng, self.mean, self.std = vae, rng, mean, std
        self.train, _ = W.split_triples()
        self.latents: dict[int, list[torch.Tensor]] = {f: [] for f in LENGTHS}
        self.captions: dict[int, list[str]] = {f: [] for f in LENGTHS}

    @torch.no_grad()
    def encode(self, frames: int, n: int) -> tuple[torch.Tensor, list[str]]:
        video, scenes = clips(n, frames, self.rng, self.train)
        z = self.vae.encode(to_tensor(video, self.mean.device)).latent_dist.sample()
        return (z - self.mean) / self.std, [s.caption() for s in scenes]

    def fill(self, size: int, work: Path) -> None:
        for f, share in LENGTHS.items():
            want = int(size * share)
            while len(self.latents[f]) < want:
                z, caps = self.encode(f, 8)
                self.latents[f].extend(z.unbind(0))
                self.captions[f].extend(caps)
            log(work, f"pool: {len(self.latents[f])} clips of {f} frames")

    def renew(self, n: int) -> None:
        f = self.length()
        z, caps = self.encode(f, n)
        for zi, ci in zip(z.unbind(0), caps, strict=True):
            i = int(self.rng.integers(len(self.latents[f])))
            self.latents[f][i], self.captions[f][i] = zi, ci

    def length(self) -> int:
        return int(self.rng.choice(list(LENGTHS), p=list(LENGTHS.values())))

    def batch(self, n: int) -> tuple[torch.Tensor, list[str], int]:
        f = self.length()
        idx = self.rng.integers(0, len(self.latents[f]), n)
        return torch.stack([self.latents[f][i] for i in idx]), [self.captions[f][i] for i in idx], f


def latent_stats(vae, rng: np.random.Generator, n: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    train, device = W.split_triples()[0], next(vae.parameters()).device
    with torch.no_grad():
        z = torch.cat([vae.encode(to_tensor(clips(4, 33, rng, train)[0], device)).latent_dist.sample()
                       for _ in range(n // 4)]).cpu()
    return z.mean((0, 2, 3, 4)).view(1, -1, 1, 1, 1), z.std((0, 2, 3, 4)).view(1, -1, 1, 1, 1)


def rope_scale(vae, fps: int = W.FPS) -> tuple[float, float, float]:
    """The transformer's position scale as LTXPipeline (and so the engine) computes it at render time: a model
    trained with other positions renders without its objects."""
    return (vae.temporal_compression_ratio / fps, vae.spatial_compression_ratio, vae.spatial_compression_ratio)


def flow_loss(transformer, x0: torch.Tensor, states: torch.Tensor, mask: torch.Tensor, rng: np.random.Generator,
              scale: tuple[float, float, float]) -> torch.Tensor:
    """Flow matching on packed latents: x_t = (1-s) x0 + s e, target e - x0; some items image-to-video."""
    from videogen.families.ltx import pack as pack_tokens

    b, c, f, h, w = x0.shape
    p, pt = transformer.config.patch_size, transformer.config.patch_size_t
    u = torch.from_numpy(rng.normal(size=b)).float().sigmoid().to(x0.device)
    shifted = SHIFT * u / (1 + (SHIFT - 1) * u)
    sigma = torch.where(torch.from_numpy(rng.random(b) < 0.5).to(x0.device), shifted, u)  # half with the shift
    noise = torch.randn_like(x0)
    first = torch.zeros(b, 1, f, 1, 1, device=x0.device)
    first[torch.from_numpy(rng.random(b) < I2V_SHARE).to(x0.device), :, 0] = 1.0
    s = sigma.view(b, 1, 1, 1, 1) * (1 - first)  # the image's latent frame stays clean
    xt = (1 - s) * x0 + s * noise
    pack = lambda x: pack_tokens(x, p, pt)  # noqa: E731 - [B,C,F,H,W] -> [B, tokens, C*pt*p*p], as rendered
    keep = pack(1 - first.expand(b, 1, f, h, w))[..., :1]  # per token: 0 on the image's latent frame
    timestep = 1000 * sigma.view(b, 1) * keep.squeeze(-1)
    out = transformer(hidden_states=pack(xt), encoder_hidden_states=states, timestep=timestep,
                      encoder_attention_mask=mask, num_frames=f // pt, height=h // p, width=w // p,
                      rope_interpolation_scale=scale, return_dict=False)[0]
    err = (out - pack(noise - x0)).pow(2) * keep
    return err.sum() / (keep.sum() * out.shape[-1])


def moved(ema: dict[str, dict[str, torch.Tensor]], device: torch.device) -> dict[str, dict[str, torch.Tensor]]:
    return {part: {k: v.to(device) for k, v in weights.items()} for part, weights in ema.items()}


def train_transformer(work: Path, steps: int, pool_size: int = POOL, device: torch.device = CPU,
                      threads_later: int | None = None) -> None:
    """Flow matching with a jointly trained text encoder, 10% captions dropped, EMA weights kept."""
    from diffusers import AutoencoderKLLTXVideo  # noqa: F401  (the VAE class, for the state dict)

    torch.manual_seed(1)
    rng = np.random.default_rng(1)
    vae = new_vae().eval()
    vae.load_state_dict(torch.load(work / "vae.pt", map_location="cpu"))
    vae.to(device)
    tokenizer = build_tokenizer()
    te, tr = new_text_encoder(len(tokenizer)).to(device), new_transformer().to(device)
    ema = {"te": {k: v.clone() for k, v in te.state_dict().items()},
           "tr": {k: v.clone() for k, v in tr.state_dict().items()}}
    params = list(te.parameters()) + list(tr.parameters())
    opt = torch.optim.AdamW(params, lr=LR, weight_decay=0.01)
    stats = work / "latent_stats.pt"
    if not stats.exists():
        atomic_save(latent_stats(vae, np.random.default_rng(7)), stats)
    mean, std = (t.to(device) for t in torch.load(stats, map_location="cpu"))
    ck = Checkpoint(work / "transformer_ckpt.pt", {"te": te, "tr": tr}, opt, {"rng": rng}, 300)
    step, spent = 0, 0.0
    if (state := ck.resume()) is not None:
        step, extra = state
        ema = moved(extra["ema"], device)
        spent = extra["spent"]
        log(work, f"transformer: resumed at step {step} ({spent / 60:.0f} min spent)")
    pool = Pool(vae, np.random.default_rng(100 + step), mean, std)
    pool.fill(pool_size, work)
    t0, losses = time.time(), []
    while step < steps:
        lr = LR * min(1.0, (step + 1) / 300) * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * step / steps)))
        for g in opt.param_groups:
            g["lr"] = lr
        x0, caps, _ = pool.batch(BATCH)
        caps = ["" if rng.random() < 0.1 else c for c in caps]
        states, mask = encode_text(tokenizer, te, caps)
        loss = flow_loss(tr, x0, states, mask, rng, rope_scale(vae))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        with torch.no_grad():
            for key, module in (("te", te), ("tr", tr)):
                for k, v in module.state_dict().items():
                    ema[key][k].lerp_(v, 1 - 0.999) if v.is_floating_point() else ema[key][k].copy_(v)
        step += 1
        losses.append(loss.item())
        if step % 25 == 0:
            pool.renew(8)
        if step % 100 == 0:
            now = time.time()
            spent += now - t0
            log(work, f"transformer {step} loss {np.mean(losses):.4f} lr {lr:.2e} {(now - t0) / 100:.2f}s/step "
                      f"step {step}/{steps}, {spent / 60:.1f} min")
            t0, losses = now, []
            decoder_done = (work / f"{DECODER_PHASE.name}.pt").exists()
            if threads_later and torch.get_num_threads() != threads_later and decoder_done:
                torch.set_num_threads(threads_later)  # its core is free
                log(work, f"transformer: {threads_later} threads from step {step} on")
            if ck.due():
                ck.save(step, {"ema": ema, "spent": spent})
    ck.save(step, {"ema": ema, "spent": spent})
    atomic_save({"ema": moved(ema, CPU), "step": step}, work / "transformer.pt")
    log(work, f"transformer: done at step {step}")


DEFAULTS = {"frames": W.FRAMES, "height": W.SIZE, "width": W.SIZE, "fps": W.FPS, "steps": 16, "guidance": 3.0,
            "batch_cfg": True, "max_sequence_length": TEXT_LEN}


def trained_parts(work: Path, partial: bool) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(the decoder stage's VAE, the transformer stage's EMA weights); with `partial`, from the stages' last
    checkpoints where a stage is still running (a look at a model in training)."""
    decoder, transformer = work / f"{DECODER_PHASE.name}.pt", work / "transformer.pt"
    if not partial or decoder.exists():
        vae = torch.load(decoder, map_location="cpu")
    else:
        ck = work / f"{DECODER_PHASE.name}_ckpt.pt"
        vae = (torch.load(ck, weights_only=False, map_location="cpu")["vae"] if ck.exists()
               else torch.load(work / "vae.pt", map_location="cpu"))
    if not partial or transformer.exists():
        return vae, torch.load(transformer, map_location="cpu")["ema"]
    state = torch.load(work / "transformer_ckpt.pt", weights_only=False, map_location="cpu")
    log(work, f"export: the transformer's EMA at step {state['step']} (training goes on)")
    return vae, state["extra"]["ema"]


def export(work: Path, out: Path, weights_dtype: torch.dtype = torch.float16, partial: bool = False) -> None:
    """The trained parts as a diffusers LTXPipeline folder (safetensors; stored in `weights_dtype`)."""
    import shutil

    from diffusers import FlowMatchEulerDiscreteScheduler, LTXPipeline

    vae = new_vae().eval()
    decoder, ema = trained_parts(work, partial)
    encoder = torch.load(work / "vae.pt", map_location="cpu")
    # the encoder the transformer's latents came from; the decoder the last stage sharpened on them
    vae.load_state_dict({k: encoder[k] if k.startswith("encoder.") else v for k, v in decoder.items()})
    mean, std = torch.load(work / "latent_stats.pt", map_location="cpu")
    vae.latents_mean.copy_(mean.flatten())
    vae.latents_std.copy_(std.flatten())
    tokenizer = build_tokenizer()
    te, tr = new_text_encoder(len(tokenizer)).eval(), new_transformer().eval()
    te.load_state_dict(ema["te"])
    tr.load_state_dict(ema["tr"])
    scheduler = FlowMatchEulerDiscreteScheduler(shift=SHIFT, use_dynamic_shifting=False)
    pipe = LTXPipeline(scheduler=scheduler, vae=vae.to(weights_dtype), text_encoder=te.to(weights_dtype),
                       tokenizer=tokenizer, transformer=tr.to(weights_dtype))
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    pipe.save_pretrained(tmp, safe_serialization=True)
    index = json.loads((tmp / "model_index.json").read_text())
    # transformers 5 names the fast tokenizer "TokenizersBackend"; PreTrainedTokenizerFast loads in 4 and 5
    index["tokenizer"] = ["transformers", "PreTrainedTokenizerFast"]
    (tmp / "model_index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    config = tmp / "tokenizer" / "tokenizer_config.json"
    config.write_text(json.dumps(json.loads(config.read_text()) | {"tokenizer_class": "PreTrainedTokenizerFast"},
                                 indent=2) + "\n")
    (tmp / "videogen_defaults.json").write_text(json.dumps(DEFAULTS) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    log(work, f"export: {out}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m videogen.mini.train2")
    ap.add_argument("stage", choices=["vae", "transformer", "decoder", "export", "all"])
    ap.add_argument("--work", type=Path, default=Path("runs/mini2"))
    ap.add_argument("--out", type=Path, default=Path("videogen/mini/model2"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--threads-later", type=int, default=None,
                    help="transformer: threads once the decoder stage beside it is done")
    ap.add_argument("--device", type=torch.device, default=CPU,
                    help="where the stages train: cpu (the recipe) or cuda (a GPU, where one is lent)")
    ap.add_argument("--steps", type=int, default=TRANSFORMER_STEPS, help="transformer training steps")
    ap.add_argument("--pool", type=int, default=POOL, help="pre-encoded training clips")
    ap.add_argument("--partial", action="store_true",
                    help="export: take the stages still running from their last checkpoints")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    (args.work / "args.json").write_text(json.dumps({k: str(v) for k, v in vars(args).items()}))
    if args.stage in ("vae", "all"):
        for phase in VAE_PHASES:
            if not (args.work / f"{phase.name}.pt").exists():
                train_vae(args.work, phase, args.device)
    if args.stage in ("transformer", "all") and not (args.work / "transformer.pt").exists():
        train_transformer(args.work, args.steps, args.pool, args.device, args.threads_later)
    if args.stage in ("decoder", "all") and not (args.work / f"{DECODER_PHASE.name}.pt").exists():
        train_vae(args.work, DECODER_PHASE, args.device)
    if args.stage in ("export", "all"):
        export(args.work, args.out, partial=args.partial)


if __name__ == "__main__":
    main()
