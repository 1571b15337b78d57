"""Train the built-in model and export it in diffusers (WanPipeline) format, stage by stage.

    python -m videogen.mini.train all --work runs/mini --out videogen/mini/model

Stages (each a subcommand; `all` runs them in order): `vae` (per-frame AutoencoderKL), `transformer` (latent pool,
then WanTransformer3DModel + tiny UMT5 text encoder by flow matching: a first phase at the sampler's noise levels,
a refine phase weighted towards low noise; exports to --out), `polish` (decoder fine-tuned on encoder outputs) and
`adapt` (decoder fine-tuned on the transformer's own samples); the two decoder stages put their decoder into --out.
Every stage is seeded, checkpoints to the work folder every few minutes and resumes from there when run again;
a stage whose result is in the work folder is skipped.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from . import data
from .export import swap_decoder
from .train_common import log
from .train_transformer import encode_pool, phases, train_transformer
from .train_vae import adapt_decoder, polish_decoder, train_vae

STAGES = ("vae", "transformer", "polish", "adapt")


def options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    a = common.add_argument
    a("--work", default="runs/mini", help="checkpoints, logs and stage results")
    a("--out", default="videogen/mini/model", help="the exported diffusers folder")
    a("--seed", type=int, default=0)
    a("--threads", type=int, default=2)
    a("--ckpt-every", type=float, default=180.0, help="seconds between checkpoints")
    a("--latent-channels", type=int, default=4)
    a("--vae-steps", type=int, default=1100)
    a("--vae-batch", type=int, default=64)
    a("--vae-lr", type=float, default=2e-3)
    a("--vae-kl", type=float, default=1e-6)
    a("--pool", type=int, default=4000)
    a("--grow-every", type=int, default=25, help="encode 32 fresh clips into the pool every N steps")
    a("--steps", type=int, default=12000)
    a("--batch", type=int, default=32)
    a("--lr", type=float, default=1e-3)
    a("--warmup", type=int, default=300)
    a("--ema", type=float, default=0.999)
    a("--layers", type=int, default=6)
    a("--heads", type=int, default=4)
    a("--head-dim", type=int, default=32)
    a("--ffn", type=int, default=384)
    a("--patch", type=int, default=1, help="spatial patch size of the transformer")
    a("--patch-t", type=int, default=data.FRAMES,
      help="temporal patch size: the default puts the whole clip into each token (tubelets)")
    a("--text-dim", type=int, default=64)
    a("--shift", type=float, default=3.0)
    a("--cfg-drop", type=float, default=0.1)
    a("--eval-every", type=int, default=1000)
    a("--export-every", type=int, default=1000)
    a("--refine-steps", type=int, default=9000,
      help="second transformer phase: continue from the first phase's weights for this many steps")
    a("--refine-lr", type=float, default=3e-4)
    a("--refine-shift", type=float, default=1.0,
      help="time shift of the noise levels drawn in the second phase (1 = no shift: more low-noise steps, "
           "where edges and corners are decided)")
    a("--stop-at", default=None, help="UTC HH:MM: stop (checkpoint + export) at this wall time")
    a("--stop-step", type=int, default=None, help="stop (checkpoint + export) at this step, keeping the lr schedule")
    a("--polish-steps", type=int, default=1500)
    a("--polish-lr", type=float, default=5e-4)
    a("--adapt-clips", type=int, default=2048)
    a("--adapt-steps", type=int, default=800)
    a("--adapt-lr", type=float, default=2e-4)
    p = argparse.ArgumentParser(prog="python -m videogen.mini.train", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="stage", required=True)
    for name in (*STAGES, "all"):
        sub.add_parser(name, parents=[common], help="every stage in order" if name == "all" else f"the {name} stage")
    return p


def frozen_vae(args, work: Path):
    vae = train_vae(args, work)
    for q in vae.parameters():
        q.requires_grad_(False)
    return vae


def run_stage(stage: str, args, work: Path) -> bool:
    """One stage; False when it stopped early (--stop-at, --stop-step) and later stages must wait."""
    (work / f"args_{stage}.json").write_text(json.dumps(vars(args), indent=1))
    if stage == "vae":
        frozen_vae(args, work)
    elif stage == "transformer":
        vae = frozen_vae(args, work)
        pool = encode_pool(args, work, vae)
        return all(train_transformer(args, work, vae, pool, phase) for phase in phases(args))
    elif stage == "polish":
        swap_decoder(args.out, polish_decoder(args, work))
        log(work, f"polish: decoder swapped into {args.out}")
    elif stage == "adapt":
        swap_decoder(args.out, adapt_decoder(args, work))
        log(work, f"adapt: decoder swapped into {args.out}")
    return True


def main(argv: list[str] | None = None) -> None:
    args = options().parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    for stage in STAGES if args.stage == "all" else (args.stage,):
        if not run_stage(stage, args, work):
            return


if __name__ == "__main__":
    main()
