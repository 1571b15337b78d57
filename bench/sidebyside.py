"""videogen's Engine and diffusers' WanPipeline on the same folder and settings, in one process, alternating.

Run as a child process by bench/run.py (one process per model, so each measurement starts from the same state).
"""

from __future__ import annotations

import json
import resource
import statistics
import sys
import time
from typing import Any

import torch


def pipeline_call(pipe: Any, s: dict[str, Any], on_step: Any = None) -> Any:
    """WanPipeline as a user would call it. An image VAE (the built-in model's) cannot decode WanPipeline's 5-D
    latents, so there the pipeline stops at latents and each frame is decoded the way diffusers' image
    pipelines do (latent stats, vae.decode, to [0, 1])."""
    per_frame = type(pipe.vae).__name__ == "AutoencoderKL"
    # With a temporal factor of 1, WanPipeline turns N frames into N // 1 * 1 + 1: ask for one less to get N.
    out = pipe(prompt=s["prompt"], negative_prompt=s["negative_prompt"], num_frames=s["frames"] - per_frame,
               height=s["height"], width=s["width"], num_inference_steps=s["steps"], guidance_scale=s["guidance"],
               max_sequence_length=s["max_sequence_length"], generator=torch.Generator("cpu").manual_seed(s["seed"]),
               output_type="latent" if per_frame else "np", callback_on_step_end=on_step).frames
    if not per_frame:
        return out[0]
    cfg = pipe.vae.config
    mean = torch.tensor(cfg.latents_mean).view(1, -1, 1, 1)
    std = torch.tensor(cfg.latents_std).view(1, -1, 1, 1)
    with torch.no_grad():
        z = out[0].permute(1, 0, 2, 3) * std + mean  # [F, C, h, w]
        video = pipe.vae.decode(z).sample
    return (video / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).numpy()


def timed_pipeline(pipe: Any, s: dict[str, Any]) -> tuple[float, float, Any]:
    """(seconds per render, seconds per step, frames): per step from the first to the last step's end."""
    marks: list[float] = []

    def on_step(_pipe, _i, _t, kwargs):
        marks.append(time.perf_counter())
        return kwargs

    start = time.perf_counter()
    frames = pipeline_call(pipe, s, on_step)
    total = time.perf_counter() - start
    return total, (marks[-1] - marks[0]) / max(len(marks) - 1, 1), frames


def timed_engine(engine: Any, spec: Any) -> tuple[float, float, Any]:
    marks: list[float] = []

    def progress(stage: str, done: int, _total: int) -> None:
        if stage == "denoise" and done > 0:
            marks.append(time.perf_counter())

    start = time.perf_counter()
    result = engine.render(spec, progress)
    total = time.perf_counter() - start
    return total, (marks[-1] - marks[0]) / max(len(marks) - 1, 1), result.frames_float


def side_by_side(model: str, s: dict[str, Any], repeats: int, compile_too: bool) -> dict[str, Any]:
    from diffusers import WanPipeline

    from videogen.engine import Engine
    from videogen.spec import RenderSpec

    spec = RenderSpec(prompt=s["prompt"], model=model, negative_prompt=s["negative_prompt"], frames=s["frames"],
                      height=s["height"], width=s["width"], steps=s["steps"], guidance=s["guidance"],
                      seed=s["seed"], max_sequence_length=s["max_sequence_length"], device="cpu", dtype="float32")
    engine = Engine.load(spec)
    pipe = WanPipeline.from_pretrained(model, torch_dtype=torch.float32).to("cpu")
    pipe.set_progress_bar_config(disable=True)
    runs = {
        "videogen": lambda: timed_engine(engine, spec),
        "videogen --batch-cfg": lambda: timed_engine(engine, spec.replace(batch_cfg=True)),
        "WanPipeline": lambda: timed_pipeline(pipe, s),
    }
    warmup: dict[str, float] = {}
    if compile_too:
        compiled = Engine.load(spec.replace(compile=True))
        runs["videogen --compile"] = lambda: timed_engine(compiled, spec.replace(compile=True))
    for name, fn in runs.items():  # warm-up: first calls allocate, pick kernels (and compile)
        start = time.perf_counter()
        fn()
        warmup[name] = time.perf_counter() - start
    out: dict[str, dict[str, list[float]]] = {k: {"render": [], "step": []} for k in runs}
    frames: dict[str, Any] = {}
    for _ in range(repeats):
        for name, fn in runs.items():  # alternate, so drift in machine load hits every side alike
            total, step, frames[name] = fn()
            out[name]["render"].append(total)
            out[name]["step"].append(step)
    ours = frames["videogen"].numpy()
    diff = float(abs(ours - frames["WanPipeline"]).max())
    drift = {k: float(abs(f.numpy() - ours).max()) for k, f in frames.items() if k.startswith("videogen --")}
    return {"medians": {k: {m: statistics.median(v) for m, v in d.items()} for k, d in out.items()},
            "raw": out, "warmup_s": warmup, "max_abs_diff_vs_pipeline": diff, "max_abs_diff_vs_videogen": drift}


def peak_rss(side: str, model: str, s: dict[str, Any]) -> float:
    """MiB of peak resident memory of this process after loading and rendering once with one side."""
    if side == "videogen":
        from videogen.engine import Engine
        from videogen.spec import RenderSpec

        spec = RenderSpec(prompt=s["prompt"], model=model, negative_prompt=s["negative_prompt"], frames=s["frames"],
                          height=s["height"], width=s["width"], steps=s["steps"], guidance=s["guidance"],
                          seed=s["seed"], max_sequence_length=s["max_sequence_length"], device="cpu", dtype="float32")
        Engine.load(spec).render(spec)
    else:
        from diffusers import WanPipeline

        pipe = WanPipeline.from_pretrained(model, torch_dtype=torch.float32).to("cpu")
        pipe.set_progress_bar_config(disable=True)
        pipeline_call(pipe, s)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


if __name__ == "__main__":
    mode, model, settings = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    torch.set_num_threads(int(settings.pop("threads", torch.get_num_threads())))
    if mode == "time":
        repeats, compile_too = int(settings.pop("repeats", 3)), bool(settings.pop("compile", False))
        result: Any = side_by_side(model, settings, repeats, compile_too)
    else:
        result = peak_rss(mode, model, settings)
    print(json.dumps(result))
