"""GPU benchmark: Wan 2.1 1.3B at full size (random weights), videogen against diffusers' WanPipeline.

832x480, 81 frames, bf16. Seconds per denoising step for both (same weights, same settings, alternating),
achieved TFLOP/s against this card's measured bf16 matmul peak, peak GPU memory for each offload mode, VAE
decode with and without tiling, and speed and drift of --compile and of each step cache. Results are written
after every section to OUT/gpu-bench.json and OUT/gpu-bench.md, so a run cut short still reports what it did.

The device machine has no diffusers: carry it as wheels (one call, about 8 minutes of device time):

    bash bench/gpu_wheels.sh        # here, once: diffusers and its missing needs into .whl/ (git-ignored)
    # on the device (run tool, carry [".whl"], timeout 600):
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 && python3 bench/gpu.py --out $OUT
    # back here: append the table to BENCHMARKS.md
    python bench/gpu.py --append <files_at>/gpu-bench.md

`--small` runs every section on a small model on the CPU (a dry run of this script, not a benchmark).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

WAN_1_3B = dict(patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=128, in_channels=16,
                out_channels=16, text_dim=4096, freq_dim=256, ffn_dim=8960, num_layers=30, cross_attn_norm=True,
                qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024)
SMALL = dict(WAN_1_3B, num_attention_heads=2, attention_head_dim=32, ffn_dim=128, num_layers=2, text_dim=64)
PROMPT = "a red cat runs on the beach"


def transformer_flops(cfg: dict[str, Any], frames: int, height: int, width: int, text_len: int) -> float:
    """Multiply-adds x2 of one Wan transformer forward (matmuls and attention; norms and embeddings ignored)."""
    p = cfg["patch_size"]
    tokens = ((frames - 1) // 4 + 1) // p[0] * (height // 8 // p[1]) * (width // 8 // p[2])
    d, f = cfg["num_attention_heads"] * cfg["attention_head_dim"], cfg["ffn_dim"]
    per_block = (2 * tokens * 4 * d * d  # self-attention q, k, v, o
                 + 4 * tokens * tokens * d  # q k^T and attention x v
                 + 2 * tokens * 2 * d * d + 2 * text_len * 2 * d * d  # cross-attention q, o; k, v of the text
                 + 4 * tokens * text_len * d  # cross-attention scores and values
                 + 2 * tokens * 2 * d * f)  # feed-forward
    return cfg["num_layers"] * per_block


class Bench:
    def __init__(self, args: argparse.Namespace):
        import torch

        self.args, self.torch = args, torch
        self.cuda = not args.small
        self.device = "cuda" if self.cuda else "cpu"
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.results: dict[str, Any] = {}
        self.frames, self.height, self.width = (81, 480, 832) if self.cuda else (9, 32, 32)
        self.cfg = WAN_1_3B if self.cuda else SMALL
        self.dtype = "bfloat16" if self.cuda else "float32"

    # helpers

    def sync(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize()

    def reset_peak(self) -> None:
        gc.collect()
        if self.cuda:
            self.torch.cuda.empty_cache()
            self.torch.cuda.reset_peak_memory_stats()

    def peak_gib(self) -> float | None:
        return self.torch.cuda.max_memory_allocated() / 2**30 if self.cuda else None

    def save(self) -> None:
        (self.out / "gpu-bench.json").write_text(json.dumps(self.results, indent=2, default=str))
        (self.out / "gpu-bench.md").write_text(markdown(self.results))

    def section(self, name: str, fn: Callable[[], Any]) -> None:
        if self.args.only and name not in self.args.only:
            return
        start = time.perf_counter()
        print(f"gpu-bench: {name} ...", flush=True)
        try:
            self.results[name] = fn()
        except Exception as e:  # one broken section must not lose the others
            traceback.print_exc()
            self.results[name] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
        self.results.setdefault("_seconds", {})[name] = round(time.perf_counter() - start, 1)
        print(f"gpu-bench: {name} done in {time.perf_counter() - start:.0f} s: {self.results[name]}", flush=True)
        self.save()

    def spec(self, **kw: Any) -> Any:
        from videogen.spec import RenderSpec

        base = dict(prompt=PROMPT, model=str(self.model), negative_prompt="", frames=self.frames,
                    height=self.height, width=self.width, steps=4, guidance=5.0, seed=1, device=self.device,
                    dtype=self.dtype, max_sequence_length=512)
        return RenderSpec(**(base | kw))

    # sections

    def machine(self) -> dict[str, Any]:
        import diffusers

        torch = self.torch
        info = {"torch": torch.__version__, "diffusers": diffusers.__version__, "device": self.device}
        if self.cuda:
            p = torch.cuda.get_device_properties(0)
            info |= {"gpu": p.name, "memory_gib": round(p.total_memory / 2**30, 1), "sms": p.multi_processor_count}
        return info

    def matmul_peak(self) -> dict[str, Any]:
        torch = self.torch
        n = 8192 if self.cuda else 512
        a = torch.randn(n, n, device=self.device, dtype=torch.bfloat16)
        b = torch.randn(n, n, device=self.device, dtype=torch.bfloat16)
        for _ in range(3):
            a @ b
        self.sync()
        reps = 20 if self.cuda else 3
        start = time.perf_counter()
        for _ in range(reps):
            a @ b
        self.sync()
        took = (time.perf_counter() - start) / reps
        return {"n": n, "tflops": 2 * n**3 / took / 1e12}

    def build(self) -> dict[str, Any]:
        """A random Wan 2.1 1.3B in diffusers format (small random UMT5 with the real 4096-wide output)."""
        torch = self.torch
        from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanPipeline, WanTransformer3DModel
        from tiny import word_tokenizer
        from transformers import UMT5Config, UMT5EncoderModel

        folder = Path(self.args.work) / ("wan-1.3b-random" if self.cuda else "wan-small-random")
        self.model = folder
        if (folder / "model_index.json").is_file():
            return {"folder": str(folder), "reused": True}
        torch.manual_seed(0)
        with torch.device(self.device):  # random init on the GPU: seconds, not minutes
            transformer = WanTransformer3DModel(**self.cfg).to(torch.bfloat16 if self.cuda else torch.float32)
            vae = AutoencoderKLWan() if self.cuda else AutoencoderKLWan(
                base_dim=8, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True])
            tokenizer = word_tokenizer(max_length=512)
            text = UMT5EncoderModel(UMT5Config(vocab_size=len(tokenizer), d_model=self.cfg["text_dim"], d_kv=64,
                                               d_ff=256, num_layers=1, num_heads=8, dropout_rate=0.0))
        params = sum(p.numel() for p in transformer.parameters())
        pipe = WanPipeline(tokenizer=tokenizer, text_encoder=text.eval(), transformer=transformer.eval(),
                           vae=vae.eval(), scheduler=UniPCMultistepScheduler(
                               prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0))
        pipe.save_pretrained(folder, safe_serialization=True)
        del pipe, transformer, vae, text
        self.reset_peak()
        return {"folder": str(folder), "transformer_params": params}

    def flops(self) -> float:
        return transformer_flops(self.cfg, self.frames, self.height, self.width, 512)

    def steps(self) -> dict[str, Any]:
        """Seconds per denoising step, videogen and WanPipeline alternating (latents only: no decode)."""
        torch = self.torch
        from diffusers import WanPipeline

        from videogen.engine import Engine
        from videogen.sampling import sample

        spec = self.spec(steps=self.args.steps)
        engine = Engine.load(spec)
        resolved = engine.resolve(spec)
        cond, uncond = engine.model.encode(resolved)
        pipe = WanPipeline.from_pretrained(self.model, torch_dtype=getattr(torch, self.dtype)).to(self.device)
        pipe.set_progress_bar_config(disable=True)

        def per_step(marks: list[float]) -> float:
            return (marks[-1] - marks[0]) / (len(marks) - 1)

        def videogen(batch_cfg: bool) -> float:
            marks: list[float] = []

            def tick(_i: int, _n: int, _x: Any, _x0: Any) -> None:
                self.sync()
                marks.append(time.perf_counter())

            plan = engine.model.plan(resolved.replace(batch_cfg=batch_cfg), cond, uncond)
            with torch.inference_mode():  # as Engine.render samples
                sample(plan, tick)
            return per_step(marks)

        def pipeline() -> float:
            marks: list[float] = []

            def tick(_p: Any, _i: int, _t: Any, kw: dict) -> dict:
                self.sync()
                marks.append(time.perf_counter())
                return kw

            pipe(prompt=PROMPT, negative_prompt="", num_frames=self.frames, height=self.height, width=self.width,
                 num_inference_steps=self.args.steps, guidance_scale=5.0, output_type="latent",
                 generator=torch.Generator("cpu").manual_seed(1), callback_on_step_end=tick)
            return per_step(marks)

        sides = {"videogen": lambda: videogen(False), "videogen --batch-cfg": lambda: videogen(True),
                 "WanPipeline": pipeline}
        for fn in sides.values():
            fn()  # warm-up
        times: dict[str, list[float]] = {k: [] for k in sides}
        for _ in range(self.args.repeats):
            for k, fn in sides.items():
                times[k].append(fn())
        peak = self.results.get("matmul_peak", {}).get("tflops")
        flops = 2 * self.flops()  # guidance: two forwards per step
        out: dict[str, Any] = {"flops_per_forward_tflop": self.flops() / 1e12, "steps_per_measure": self.args.steps}
        for k, v in times.items():
            med = sorted(v)[len(v) // 2]
            tflops = flops / med / 1e12
            out[k] = {"s_per_step": med, "all": v, "tflops": tflops,
                      "fraction_of_peak": tflops / peak if peak else None}
        out["ratio_videogen_vs_pipeline"] = out["videogen"]["s_per_step"] / out["WanPipeline"]["s_per_step"]
        engine = pipe = sides = None  # free both models before the next section measures memory
        self.reset_peak()
        return out

    def offload(self) -> dict[str, Any]:
        """Peak GPU memory of a whole render (encode, 1 step, tiled decode) for each offload mode."""
        from videogen.engine import Engine

        out: dict[str, Any] = {}
        modes = ("none", "model", "sequential", "group") if self.cuda else ("none",)
        for mode in modes:
            self.reset_peak()
            spec = self.spec(steps=2, offload=mode, vae_tiling=True)
            try:
                start = time.perf_counter()
                engine = Engine.load(spec)
                load = time.perf_counter() - start
                after_load = self.torch.cuda.memory_allocated() / 2**30 if self.cuda else None
                result = engine.render(spec)
                out[mode] = {"peak_gib": self.peak_gib(), "resident_after_load_gib": after_load,
                             "s_per_step": result.record["timings"]["per_step"], "load_s": load,
                             "decode_s": result.record["timings"]["decode"]}
                del engine, result
            except Exception as e:  # report the mode as failed, go on with the others
                traceback.print_exc()
                out[mode] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
        self.reset_peak()
        return out

    def vae(self) -> dict[str, Any]:
        """Decode of one 81-frame latent video, untiled and tiled (diffusers' default tiles)."""
        torch = self.torch
        from videogen import vae as vae_ops
        from videogen.engine import Engine

        engine = Engine.load(self.spec(steps=1))
        model = engine.model
        s, t = model.vae_geo.spatial, model.vae_geo.temporal
        latents = torch.randn(1, 16, (self.frames - 1) // t + 1, self.height // s, self.width // s,
                              generator=torch.Generator("cpu").manual_seed(0)).to(self.device)
        out: dict[str, Any] = {}
        frames = {}
        for tiled in (False, True):
            if tiled:
                model.vae.enable_tiling()
            self.reset_peak()
            self.sync()
            start = time.perf_counter()
            with torch.inference_mode():
                frames[tiled] = vae_ops.to_frames(vae_ops.decode(model.vae, latents, False))
            self.sync()
            out["tiled" if tiled else "untiled"] = {"s": time.perf_counter() - start, "peak_gib": self.peak_gib()}
        from videogen.options import psnr

        out["tiled_vs_untiled_psnr_db"] = psnr(frames[True], frames[False])
        del engine, model
        self.reset_peak()
        return out

    def compile_and_caches(self) -> dict[str, Any]:
        """--compile and each --cache against the plain render: seconds per step and drift (PSNR of frames)."""
        from videogen import options
        from videogen.engine import Engine

        steps = self.args.cache_steps
        spec = self.spec(steps=steps)
        engine = Engine.load(spec)
        plain = engine.render(spec)
        out: dict[str, Any] = {"steps": steps, "plain": {"s_per_step": plain.record["timings"]["per_step"]}}
        base = engine.options
        for cache in ("fbc", "mag", "taylorseer", "pab"):
            # One loaded model, the step cache swapped: what Engine.load(--cache X) would set up, minus a reload.
            engine.options = options.Options(transformers=base.transformers, blocks=base.blocks, cache=cache,
                                              threshold=None,
                                              dtype=base.dtype)
            cspec = spec.replace(cache=cache)
            result = engine.render(cspec)
            engine.options._disable()
            entry = {"s_per_step": result.record["timings"]["per_step"],
                     "drift_psnr_db": options.psnr(result.frames_float, plain.frames_float)}
            entry["speedup"] = out["plain"]["s_per_step"] / entry["s_per_step"]
            out[cache] = entry
        engine.options = base
        del engine
        self.reset_peak()
        # --compile: a fresh engine (regional compilation of the 30 blocks); first render includes compiling.
        cspec = spec.replace(compile=True)
        start = time.perf_counter()
        engine = Engine.load(cspec)
        engine.render(cspec.replace(steps=2))
        first = time.perf_counter() - start
        result = engine.render(cspec)
        out["compile"] = {"s_per_step": result.record["timings"]["per_step"], "load_and_first_render_s": first,
                          "drift_psnr_db": options.psnr(result.frames_float, plain.frames_float),
                          "max_abs": float((result.frames_float - plain.frames_float).abs().max())}
        out["compile"]["speedup"] = out["plain"]["s_per_step"] / out["compile"]["s_per_step"]
        del engine
        self.reset_peak()
        return out

    def run(self) -> None:
        self.section("machine", self.machine)
        self.section("matmul_peak", self.matmul_peak)
        self.results["build"] = self.build()
        self.section("steps", self.steps)
        self.section("offload", self.offload)
        self.section("vae", self.vae)
        self.section("compile_and_caches", self.compile_and_caches)


def markdown(r: dict[str, Any]) -> str:
    def num(x: Any, digits: int = 3) -> str:
        return f"{x:.{digits}g}" if isinstance(x, int | float) and math.isfinite(x) else str(x)

    m = r.get("machine", {})
    lines = [f"## GPU benchmark: {m.get('gpu', m.get('device', '?'))}", "",
             f"Wan 2.1 1.3B transformer and VAE at full size with random weights (small random text encoder), "
             f"832x480, 81 frames, bf16; torch {m.get('torch')}, diffusers {m.get('diffusers')}. "
             f"Command: `python3 bench/gpu.py` (see its docstring). bf16 matmul peak measured on this card: "
             f"{num(r.get('matmul_peak', {}).get('tflops'))} TFLOP/s.", ""]
    s = r.get("steps", {})
    if "WanPipeline" in s:
        lines += [f"### Denoising step (guidance: 2 forwards of {num(s['flops_per_forward_tflop'])} TFLOP)", "",
                  "| | s / step | TFLOP/s | of peak | vs WanPipeline |", "|---|---|---|---|---|"]
        ref = s["WanPipeline"]["s_per_step"]
        for k in ("videogen", "videogen --batch-cfg", "WanPipeline"):
            v = s[k]
            frac = v.get("fraction_of_peak")
            lines.append(f"| {k} | {num(v['s_per_step'])} | {num(v['tflops'])} | "
                         f"{'' if frac is None else f'{frac:.0%}'} | {v['s_per_step'] / ref:.2f} |")
        lines.append("")
    elif s:
        lines += [f"Steps: {s}", ""]
    o = r.get("offload", {})
    if o and "error" not in o:
        lines += ["### Offload (whole render: encode, 2 steps, tiled decode)", "",
                  "| --offload | peak GPU GiB | GiB after load | s / step | decode s |", "|---|---|---|---|---|"]
        lines += [f"| {k} | {num(v['peak_gib'])} | {num(v['resident_after_load_gib'])} | {num(v['s_per_step'])} | "
                  f"{num(v['decode_s'])} |" if "error" not in v else f"| {k} | failed: {v['error']} | | | |"
                  for k, v in o.items()]
        lines.append("")
    elif o:
        lines += [f"Offload: {o}", ""]
    v = r.get("vae", {})
    if "tiled" in v:
        lines += ["### VAE decode (81 frames, 832x480)", "", "| | s | peak GPU GiB |", "|---|---|---|",
                  f"| untiled | {num(v['untiled']['s'])} | {num(v['untiled']['peak_gib'])} |",
                  f"| tiled | {num(v['tiled']['s'])} | {num(v['tiled']['peak_gib'])} |", "",
                  f"Tiled vs untiled: PSNR {num(v['tiled_vs_untiled_psnr_db'])} dB.", ""]
    c = r.get("compile_and_caches", {})
    if "plain" in c:
        lines += [f"### Compile and step caches ({c['steps']} steps; drift = PSNR of frames vs the plain render)", "",
                  "| | s / step | speed-up | drift PSNR dB |", "|---|---|---|---|",
                  f"| plain | {num(c['plain']['s_per_step'])} | 1.00 | |"]
        for k in ("compile", "fbc", "mag", "taylorseer", "pab"):
            if k in c:
                lines.append(f"| {'--compile' if k == 'compile' else '--cache ' + k} | {num(c[k]['s_per_step'])} | "
                             f"{c[k]['speedup']:.2f} | {num(c[k]['drift_psnr_db'])} |")
        lines.append("")
    elif c:
        lines += [f"Compile and caches: {c}", ""]
    lines.append(f"Section times (s): {r.get('_seconds', {})}")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="gpu-bench-out", help="folder for gpu-bench.json and gpu-bench.md")
    ap.add_argument("--work", default="/tmp/videogen-gpu-bench", help="where the random model is saved")
    ap.add_argument("--steps", type=int, default=4, help="steps per timed denoising run")
    ap.add_argument("--cache-steps", type=int, default=10, help="steps of the compile/cache comparison")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--only", action="append", help="run only these sections (repeatable)")
    ap.add_argument("--small", action="store_true", help="dry run on the CPU with a small model")
    ap.add_argument("--append", type=Path, help="append a saved gpu-bench.md to BENCHMARKS.md and exit")
    args = ap.parse_args()
    if args.append:
        with (ROOT / "BENCHMARKS.md").open("a", encoding="utf-8") as f:
            f.write(args.append.read_text(encoding="utf-8") + "\n")
        return
    import torch

    if not args.small and not torch.cuda.is_available():
        raise SystemExit("bench/gpu.py needs a CUDA GPU (or --small for a dry run on the CPU)")
    Bench(args).run()


if __name__ == "__main__":
    main()
