"""The cost of switching LoRAs between batch items against a full reload of the model, on a CPU.

A batch whose items use different LoRAs keeps one engine: `Engine.render` restores the weights the previous LoRA
touched (read back from the model's safetensors file) and merges the next one in place. The alternative is a new
`Engine.load` per item. Models: a random Wan transformer of medium size (always) and the built-in model. LoRAs:
random, rank 16, on every linear layer of every block (as the lightx2v distillation LoRAs are).

    python bench/lora.py [--repeats 3] [--threads 2] [--out BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

# As the CLI does: spinning OpenMP threads make small CPU ops many times slower on a shared machine.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


def medium_wan(folder: Path) -> Path:
    """A random Wan large enough to time (12 blocks of width 512: ~50 M transformer parameters)."""
    from diffusers import WanPipeline, WanTransformer3DModel
    from tiny import tiny_wan_components

    parts = tiny_wan_components(scheduler="euler")
    parts["transformer"] = WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=8, attention_head_dim=64, in_channels=16, out_channels=16,
        text_dim=32, freq_dim=256, ffn_dim=2048, num_layers=12, cross_attn_norm=True,
        qk_norm="rms_norm_across_heads", rope_max_seq_len=32).eval()
    WanPipeline(**parts).save_pretrained(folder, safe_serialization=True)
    return folder


def median(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(name: str, model: Path, work: Path, repeats: int) -> dict[str, object]:
    from tiny_lora import random_lora, write_comfy

    from videogen.engine import Engine, inspect_model
    from videogen.lora import resolve
    from videogen.spec import RenderSpec

    a = write_comfy(random_lora(model, seed=1, rank=16, scale=0.02), work / f"{name}-a.safetensors")
    b = write_comfy(random_lora(model, seed=2, rank=16, scale=0.02), work / f"{name}-b.safetensors")
    spec = RenderSpec(prompt="a red circle", model=str(model), frames=5, height=16, width=16, steps=1, seed=0,
                      loras=(str(a),))
    info = inspect_model(str(model))
    components = [c for c in ("transformer", "transformer_2") if (model / c).is_dir()]
    infos = {str(p): resolve((str(p),), info.source.path, components, info.family, "") for p in (a, b)}
    engine = Engine.load(spec)
    state = engine.loras
    modules = infos[str(a)][0].modules
    flip = iter(range(10**6))

    def switch() -> None:
        state.switch(infos[str(b) if next(flip) % 2 == 0 else str(a)])

    switch_s = median(switch, repeats)
    reload_s = median(lambda: Engine.load(spec), repeats)
    params = sum(p.numel() for p in engine.model.transformer.parameters())
    return {"model": name, "transformer_params_m": round(params / 1e6, 1), "lora_modules": modules,
            "switch_s": round(switch_s, 4), "reload_s": round(reload_s, 4), "ratio": round(reload_s / switch_s, 1)}


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="append the table to this Markdown file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from videogen.engine import quiet_libraries
    from videogen.loading import builtin_model_path

    quiet_libraries()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        rows.append(measure("random Wan 12x512", medium_wan(work / "medium"), work, args.repeats))
        if (builtin_model_path() / "model_index.json").is_file():
            rows.append(measure("built-in mini", builtin_model_path(), work, args.repeats))
    lines = [f"## LoRA switch vs full reload ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {args.threads} thread(s), "
             f"median of {args.repeats})", "",
             "| model | transformer params (M) | LoRA modules | switch (s) | full reload (s) | reload / switch |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['transformer_params_m']} | {r['lora_modules']} | {r['switch_s']} | "
                     f"{r['reload_s']} | {r['ratio']}x |")
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    if args.out is not None:
        with args.out.open("a", encoding="utf-8") as f:
            f.write("\n" + text)


if __name__ == "__main__":
    main()
