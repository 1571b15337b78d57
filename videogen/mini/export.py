"""Export the mini model as a diffusers WanPipeline folder and load it back."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import torch

from . import DEFAULTS_PATH
from . import modeling as M

MODEL_DIR = Path(__file__).parent / "model"


def export(out, tokenizer, text_encoder, transformer, vae, mean, std, shift: float) -> None:
    from diffusers import WanPipeline

    out = Path(out)
    vae = copy.deepcopy(vae).eval()
    vae.register_to_config(
        latents_mean=[float(v) for v in mean],
        latents_std=[float(v) for v in std],
        scaling_factor=1.0,
        shift_factor=None,
        # informational, read by WanPipeline.__init__ (per-frame 2D VAE: no temporal compression)
        scale_factor_temporal=1,
        scale_factor_spatial=2 ** (len(vae.config.block_out_channels) - 1),
    )
    pipe = WanPipeline(
        tokenizer=tokenizer,
        text_encoder=copy.deepcopy(text_encoder).eval(),
        vae=vae,
        transformer=copy.deepcopy(transformer).eval(),
        scheduler=M.build_scheduler(shift),
    )
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    pipe.save_pretrained(tmp, safe_serialization=True)
    idx = json.loads((tmp / "model_index.json").read_text())
    assert idx["_class_name"] == "WanPipeline", idx
    assert idx["vae"] == ["diffusers", "AutoencoderKL"], idx
    assert idx["transformer"] == ["diffusers", "WanTransformer3DModel"], idx
    assert idx["text_encoder"] == ["transformers", "UMT5EncoderModel"], idx
    # transformers 5 records the fast tokenizer as "TokenizersBackend"; the portable name (v4 and v5) is
    # PreTrainedTokenizerFast
    idx["tokenizer"] = ["transformers", "PreTrainedTokenizerFast"]
    (tmp / "model_index.json").write_text(json.dumps(idx, indent=2, sort_keys=True) + "\n")
    tc = tmp / "tokenizer" / "tokenizer_config.json"
    tcfg = json.loads(tc.read_text())
    tcfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    tc.write_text(json.dumps(tcfg, indent=2) + "\n")
    defaults = out / DEFAULTS_PATH.name  # the model's render defaults are kept across re-exports
    if defaults.is_file():
        shutil.copy2(defaults, tmp / defaults.name)
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)


def load(path=MODEL_DIR):
    """Load the components of an exported folder (without going through WanPipeline)."""
    from diffusers import AutoencoderKL, UniPCMultistepScheduler, WanTransformer3DModel
    from transformers import PreTrainedTokenizerFast, UMT5EncoderModel

    path = Path(path)
    tok = PreTrainedTokenizerFast.from_pretrained(path / "tokenizer")
    te = UMT5EncoderModel.from_pretrained(path / "text_encoder").eval()
    tr = WanTransformer3DModel.from_pretrained(path / "transformer").eval()
    vae = AutoencoderKL.from_pretrained(path / "vae").eval()
    sched = UniPCMultistepScheduler.from_pretrained(path / "scheduler")
    mean = torch.tensor(vae.config.latents_mean, dtype=torch.float32)
    std = torch.tensor(vae.config.latents_std, dtype=torch.float32)
    return tok, te, tr, vae, sched, mean, std


def swap_decoder(model_dir, polished_ckpt) -> None:
    """Replace the VAE decoder of an exported folder with a polished one (encoder and stats unchanged)."""
    from diffusers import AutoencoderKL

    model_dir = Path(model_dir)
    vae = AutoencoderKL.from_pretrained(model_dir / "vae")
    state = torch.load(polished_ckpt)["vae"]
    new = {k: v for k, v in state.items() if k.startswith(("decoder.", "post_quant_conv."))}
    old = vae.state_dict()
    for k, v in old.items():
        if not k.startswith(("decoder.", "post_quant_conv.")):
            assert torch.equal(v, state[k]), f"encoder weight {k} differs"
    vae.load_state_dict({**old, **new})
    cfg = json.loads((model_dir / "vae" / "config.json").read_text())
    tmp = model_dir / "vae.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    vae.save_pretrained(tmp, safe_serialization=True)
    # keep the config exactly as exported (save_pretrained drops the informational keys)
    (tmp / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    shutil.rmtree(model_dir / "vae")
    tmp.rename(model_dir / "vae")
