"""`videogen plan`: predicted memory per stage and per offload mode, before any weight is downloaded or loaded."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from videogen.cli import options as o
from videogen.errors import UserError

GpuMemory = Annotated[str | None, typer.Option(
    "--gpu-memory", help="Plan for a GPU with this much free memory (e.g. 24GiB, 80GB; default: this machine's "
                         "free CUDA memory, or 24GiB without a GPU).", rich_help_panel=o.E)]
SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(gib|gb|g|mib|mb|m)?\s*$", re.IGNORECASE)
UNITS = {"gib": 2**30, "g": 2**30, "gb": 10**9, "mib": 2**20, "m": 2**20, "mb": 10**6, None: 2**30}
NO_GPU_DEFAULT = 24 * 2**30


def parse_size(text: str) -> int:
    m = SIZE.match(text)
    if not m or float(m.group(1)) <= 0:
        raise UserError(f"--gpu-memory '{text}': give a size such as 24GiB, 80GB or 16 (GiB)")
    return int(float(m.group(1)) * UNITS[m.group(2).lower() if m.group(2) else None])


@o.with_render_options("model", "frames", "height", "width", "steps", "guidance", "guidance_2", "true_guidance",
                       "audio_guidance", "dtype", "offload", "vae_tiling", "batch_cfg", "quantize",
                       "max_sequence_length")
def plan_command(
    *, preset: o.PresetOpt = None, gpu_memory: GpuMemory = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
    **render: Any,
) -> None:
    """Predict the GPU and CPU memory of a render, per stage and offload mode, without weights or a GPU."""
    free, source = _free_memory(gpu_memory)  # a bad --gpu-memory is refused before any tracing
    flags = o.flag_values(**render)
    from videogen.plan.auto import mark_fits
    from videogen.plan.run import plan_for

    result = plan_for(flags, preset)
    mark_fits(result, free)
    result["settings"]["gpu_memory_gib"] = round(free / 2**30, 2)
    result["settings"]["gpu_memory_source"] = source
    if "offload" in flags:
        result["settings"]["offload"] = flags["offload"]
    sys.stdout.write(json.dumps(result, indent=2) + "\n" if as_json else table(result))


def _free_memory(flag: str | None) -> tuple[int, str]:
    if flag is not None:
        return parse_size(flag), "--gpu-memory"
    import torch

    if torch.cuda.is_available():
        free, _total = torch.cuda.mem_get_info()
        return int(free), f"free memory of {torch.cuda.get_device_name()}"
    return NO_GPU_DEFAULT, "default (no CUDA GPU here)"


def table(p: dict[str, Any]) -> str:
    s, st = p["settings"], p["stages"]
    dn = st["denoise"]
    lines = [f"{p['model']} (card {p['card']}): {s['width']}x{s['height']}, {s['frames']} frames, {s['dtype']}, "
             f"{dn['forwards_per_step']} forward(s) per step of batch {dn['guidance_batch']}"
             + (f", {dn['experts']} experts" if dn["experts"] > 1 else ""),
             "", f"{'stage':<26}{'weights GiB':>12}{'peak GiB':>10}"]
    te = st["text_encoder"]
    lines.append(f"{'text encoders':<26}{te['weights_gib']:>12.2f}{te['peak_gib']:>10.2f}")
    lines.append(f"{'denoise (one step)':<26}{dn['weights_gib']:>12.2f}{dn['peak_gib']:>10.2f}")
    dec = st["decode"]
    lines.append(f"{'VAE decode, untiled':<26}{dec['weights_gib']:>12.2f}{dec['peak_gib_untiled']:>10.2f}")
    lines.append(f"{'VAE decode, tiled':<26}{dec['weights_gib']:>12.2f}{dec['peak_gib_tiled']:>10.2f}")
    if "sound" in st:  # models that make sound: the audio VAE and the vocoder
        lines.append(f"{'sound decode':<26}{st['sound']['weights_gib']:>12.2f}{st['sound']['peak_gib']:>10.2f}")
    gpu = f"fits {s['gpu_memory_gib']:g} GiB"
    lines += ["", f"{'offload':<12}{'GPU peak GiB':>14}{'(tiled)':>10}{'CPU RAM GiB':>13}  {gpu}"]
    for mode, row in p["offload"].items():
        lines.append(f"{mode:<12}{row['gpu_peak_gib_untiled']:>14.2f}{row['gpu_peak_gib_tiled']:>10.2f}"
                     f"{row['cpu_ram_gib']:>13.2f}  {'yes' if row['fits'] else 'no'}")
    r = p["recommended"]
    lines += ["", f"recommended: --offload {r['offload']} {'--vae-tiling' if r['vae_tiling'] else '--no-vae-tiling'}"
              + ("" if r["fits"] else " (nothing fits: expect out-of-memory)"),
              f"GPU memory: {s['gpu_memory_gib']:g} GiB ({s['gpu_memory_source']}); fits = peak + 10% + 0.5 GiB",
              f"method: {p['method']['traced_blocks']}; repeated: "
              + ", ".join(f"{n} {k}={v}" for n, ks in p["method"]["repeated"].items() for k, v in ks.items()),
              f"not counted: {p['method']['excludes']}"]
    return "\n".join(lines) + "\n"


def model_card_for(model: str | None, preset_name: str | None) -> Any:
    """The card of a preset, of a Hub id a card describes, or one read from a local folder's configs."""
    from videogen.plan.cards import card_from_folder, card_names, load_card
    from videogen.spec import BUILTIN_MODEL

    if model is None or model.startswith("builtin:"):
        from videogen.loading import builtin_model_path

        model = model or BUILTIN_MODEL
        card = card_from_folder(builtin_model_path(model))
        card.name, card.repo = model.removeprefix("builtin:"), model
        return card
    if preset_name is not None and preset_name in card_names():
        card = load_card(preset_name)
        if card.repo == model:
            return card
    for name in card_names():
        card = load_card(name)
        if card.repo == model:
            return card
    path = Path(model).expanduser()
    if (path / "model_index.json").is_file():
        return card_from_folder(path)
    raise UserError(f"no model card for '{model}' and no local diffusers folder there: plan a preset "
                    f"(`videogen presets`) or give the model's folder")
