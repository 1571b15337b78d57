"""Predicted memory of each render stage and each offload mode, from a model card (no weights, no GPU).

Stages: the text encoders (one at a time), one denoising step (the guidance batch as configured) and the VAE
decode (tiled or not). Activations are traced on fake tensors with one repeated block per block stack: in
inference a block's intermediates are freed before the next block runs, so the activation peak of one block is
that of all of them, while the weights are counted at full size from the card. Two blocks are traced, so that
what one block hands to the next (UMT5's position bias, say) is counted too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from videogen.plan.cards import Card
from videogen.plan.components import Component, WeightStats
from videogen.plan.inputs import (
    CONDITIONERS,
    Shapes,
    audio_frames,
    decode_kwargs,
    denoiser_inputs,
    sound_call,
    text_inputs,
)
from videogen.plan.trace import peak_bytes, traced

GIB = 1024**3
OFFLOAD_MODES = ("none", "model", "group", "sequential")  # fastest first


@dataclass(frozen=True)
class Settings:
    frames: int
    height: int
    width: int
    dtype: torch.dtype
    guidance: float = 5.0
    guidance_2: float | None = None
    true_guidance: float | None = None
    batch_cfg: bool = False
    vae_tiling: bool = False
    quantize: str = "none"
    fps: int = 16
    audio_guidance: float | None = None  # models with sound (LTX-2): None is the card's default

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["dtype"] = str(self.dtype).removeprefix("torch.")
        return d


def cfg_on(card: Card, s: Settings) -> bool:
    """Whether each step needs a negative-prompt forward: embedded-guidance models only with true guidance; models
    with sound (LTX-2) also when only the sound is guided."""
    if card.data.get("guidance") == "embedded":
        return (s.true_guidance or 1.0) > 1.0
    audio = s.audio_guidance if s.audio_guidance is not None else card.data.get("audio_guidance", 0.0)
    return max(s.guidance or 1.0, s.guidance_2 or 0.0, audio or 0.0) > 1.0


def guidance_batch(card: Card, s: Settings) -> int:
    """The batch of one forward: the prompt and the negative as one batch of two with --batch-cfg, or always where
    the family batches them itself (card guidance "cfg-batched": LTX-2)."""
    return 2 if cfg_on(card, s) and (s.batch_cfg or card.data.get("guidance") == "cfg-batched") else 1


def _one_block(comp: Component) -> dict[str, Any]:
    """Two of each repeated block: the second one's peak includes what the first leaves alive for it."""
    return {k: min(2, int(comp.config[k])) for k in comp.repeat}


def _stack_peak(comp: Component, dtype: torch.dtype, work: Callable[[torch.nn.Module], int]) -> int:
    """Activation peak of the whole component from short stacks: two blocks of each repeated stack, then three of
    one stack at a time. What a third block adds is what each block leaves alive until the end (T5 keeps 2 score
    tensors per layer: 16% of a 3-layer encoder's peak), so it is added once per block beyond two."""
    two = _one_block(comp)
    base = traced(comp, dtype, two, work)
    extra = 0
    for key in comp.repeat:
        blocks = int(comp.config[key])
        if blocks > 2:
            extra += max(0, traced(comp, dtype, {**two, key: 3}, work) - base) * (blocks - 2)
    return base + extra


def _element(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def weight_bytes(comp: Component, stats: WeightStats, s: Settings) -> dict[str, int]:
    """Bytes of a component's weights: all, one leaf layer, the blocks-offload resident set."""
    b = _element(comp.dtype(s.dtype))
    total, leaf = stats.parameters * b, stats.largest_leaf * b
    block_set = (stats.outside_blocks + 2 * stats.largest_block) * b  # current block + the one prefetched
    if s.quantize == "fp8" and comp.name.startswith("transformer"):
        # fp8 storage for the blocks' layers; layerwise casting upcasts one layer at a time for its forward
        total = stats.outside_blocks * b + (stats.parameters - stats.outside_blocks) + leaf
        block_set = stats.outside_blocks * b + 2 * stats.largest_block + leaf
    return {"all": total, "leaf": leaf, "blocks": min(block_set, total)}


def trace_text_encoder(comp: Component, tokens: int, s: Settings) -> int:
    dtype = comp.dtype(s.dtype)
    if "text_config" in comp.config:  # a multimodal model as the text encoder: its language model and head run
        text = comp.config["text_config"]
        comp = Component(comp.name, "transformers", "AutoModelForCausalLM", text,
                         [k for k in ("num_hidden_layers",) if k in text], comp.runs_in)

    def work(module: torch.nn.Module) -> int:
        if comp.cls in CONDITIONERS:
            return peak_bytes(lambda: module(**CONDITIONERS[comp.cls](comp.config, tokens, dtype)))
        if "Vision" in comp.cls:
            size = int(comp.config.get("image_size", 224))
            return peak_bytes(lambda: module(pixel_values=torch.randn(1, 3, size, size, dtype=dtype)))
        return peak_bytes(lambda: module(**text_inputs(tokens)))

    return _stack_peak(comp, dtype, work)


def latent_shape(card: Card, s: Settings) -> tuple[int, int, int, int]:
    lat = card.data["latent"]
    return (lat["channels"], (s.frames - 1) // lat["temporal"] + 1, s.height // lat["spatial"],
            s.width // lat["spatial"])


def trace_denoise(card: Card, comp: Component, s: Settings) -> int:
    """One step: fp32 latents, the forward(s) of the guidance batch, the guidance mix and the scheduler update."""
    dtype = comp.dtype(s.dtype)
    c, f, h, w = latent_shape(card, s)
    tokens = max(card.data["text_tokens"].values(), default=512)
    guided = cfg_on(card, s)
    batch = guidance_batch(card, s)
    forwards = 2 if guided and batch == 1 else 1
    shapes = Shapes(batch, c, f, h, w, tokens, s.fps, sound_frames(card, s))

    def work(module: torch.nn.Module) -> int:
        def step() -> torch.Tensor:
            latents = torch.randn(1, c, f, h, w)
            outs = [module(**denoiser_inputs(comp.cls, comp.config, shapes, dtype))[0].float()
                    for _ in range(forwards)]
            pred = torch.cat(outs) if len(outs) > 1 else outs[0]
            if guided:
                cond, uncond = pred.chunk(2)
                pred = uncond + (s.guidance or 1.0) * (cond - uncond)
            return latents + 0.01 * pred.reshape(-1)[: latents.numel()].reshape(latents.shape)

        return peak_bytes(step)

    return _stack_peak(comp, dtype, work)


# The decode is traced at two short lengths (latent frames) and extrapolated linearly: a video VAE decodes frame
# by frame or as one tensor, so its memory is affine in the frame count while the trace cost grows with it.
FEW_FRAMES = (3, 4)  # from 3 latent frames on, a causal VAE's frame cache is full


def trace_decode(card: Card, comp: Component, s: Settings, tiled: bool) -> int:
    """Peak of the VAE decode, or -1 for a tiled decode of a VAE that cannot tile.

    Untiled: traced at two short lengths, extrapolated in frames. Tiled: the real tiling code traced on canvases
    of one row of 2 and 3 tiles, extrapolated on the model P = A + C*frames*area (A: one tile's activations,
    C: the buffers that hold the decoded tiles and video)."""
    dtype = comp.dtype(s.dtype)
    c, frames, h, w = latent_shape(card, s)
    c = int(comp.config.get("latent_channels") or comp.config.get("z_dim") or c)
    per_frame = comp.cls in ("AutoencoderKL", "AutoencoderTiny")

    def work(module: torch.nn.Module) -> int:
        if tiled:
            if not hasattr(module, "enable_tiling"):
                return -1
            module.enable_tiling()
        extra = decode_kwargs(comp.cls, comp.config)

        def peak(f: int, hh: int, ww: int) -> int:
            def decode() -> torch.Tensor:
                z = torch.randn(f, c, hh, ww, dtype=dtype) if per_frame else torch.randn(1, c, f, hh, ww, dtype=dtype)
                return module.decode(z, return_dict=False, **extra)[0]

            return peak_bytes(decode)

        a, b = FEW_FRAMES
        if frames <= b:
            a = b = frames
        if not tiled:  # P = A + B*frames
            p_a = peak(a, h, w)
            slope = (peak(b, h, w) - p_a) / (b - a) if b != a else 0.0
            return int(p_a + slope * (frames - a))
        # tiled: P = A + C*frames*area, from two canvases of `a` frames. One row of full-height tiles (the row
        # stride set to the tile height, so rows neither repeat nor blend) and two or three columns: 5 tile decodes
        # instead of 10 for a 2x2 and a 2x3 canvas. The rows' overlap is put back by the overlap ratio below.
        spatial = card.data["latent"]["spatial"]
        stride = int(getattr(module, "tile_sample_stride_height", 0) or 0) // spatial
        tile = int(getattr(module, "tile_sample_min_height", 0) or 0) // spatial
        if stride and tile:
            module.tile_sample_stride_height = module.tile_sample_min_height
            h1, w1, w2 = min(h, tile), min(w, 2 * stride), min(w, 3 * stride)
        else:
            h1, w1, w2 = h, w, w
        p1 = peak(a, h1, w1)
        coef_c = (peak(a, h1, w2) - p1) / (a * h1 * (w2 - w1)) if w2 != w1 else 0.0
        coef_a = p1 - coef_c * a * h1 * w1
        if stride and tile:  # decoded tiles overlap more on a larger canvas: scale the buffers by the overlap ratio
            coef_c *= _overlap(h, stride, tile) * _overlap(w, stride, tile) / _overlap(w2, stride, tile)
        return int(coef_a + coef_c * frames * h * w)

    return traced(comp, dtype, {}, work)


def sound_frames(card: Card, s: Settings) -> int:
    """The sound's latent frames for this render (0 for a silent model)."""
    if "audio_vae" not in card.components:
        return 0
    return audio_frames(card.components["audio_vae"]["config"], s.frames, s.fps)


def trace_sound(card: Card, comp: Component, s: Settings) -> int:
    """Peak of one sound decoder (the audio VAE, then the vocoder) for the render's duration."""
    dtype = comp.dtype(s.dtype)
    call = sound_call(comp.cls, comp.config, sound_frames(card, s), dtype)
    assert call is not None
    return traced(comp, dtype, {}, lambda module: peak_bytes(lambda: call(module)))


def _overlap(length: int, stride: int, tile: int) -> float:
    """Total extent of the tiles a tiled decode cuts along one side, over the side's length."""
    return sum(min(tile, length - i) for i in range(0, length, stride)) / length if tile else 1.0


def plan(card: Card, s: Settings) -> dict[str, Any]:
    names = list(card.components)
    comps = {n: card.component(n) for n in names}
    weights = {n: weight_bytes(comps[n], card.stats(n), s) for n in names}
    encoders = [n for n in names if n.startswith(("text_encoder", "image_encoder")) or comps[n].cls in CONDITIONERS]
    experts = [n for n in names if n.startswith("transformer")]
    sounds = [n for n in names if sound_call(comps[n].cls, comps[n].config, 1, s.dtype) is not None]
    tokens = max(card.data["text_tokens"].values(), default=77)  # a conditioner reads the text encoder's tokens

    te_act = {n: trace_text_encoder(comps[n], card.data["text_tokens"].get(n, tokens), s) for n in encoders}
    sound_act = {n: trace_sound(card, comps[n], s) for n in sounds}
    dn_act = trace_denoise(card, comps[experts[0]], s)  # the experts of a two-expert model share one config
    dec_act = {t: trace_decode(card, comps["vae"], s, t) for t in (False, True)}
    if dec_act[True] < 0:
        dec_act[True] = dec_act[False]

    all_weights = sum(w["all"] for w in weights.values())

    def stage_bytes(mode: str, tiled: bool) -> dict[str, int]:
        """GPU bytes of each stage in `mode`: every weight resident (none), or only that stage's component on the
        GPU, all of its weights (model), its resident block set (group: block groups for the transformer, leaf
        groups elsewhere) or one layer's (sequential)."""
        sound = {"sound": all_weights + max(sound_act.values())} if sounds else {}
        if mode == "none":
            return {"text_encoder": all_weights + max(te_act.values(), default=0),
                    "denoise": all_weights + dn_act, "decode": all_weights + dec_act[tiled], **sound}
        kind = {"model": "all", "group": "blocks", "sequential": "leaf"}[mode]
        other = "leaf" if mode == "group" else kind
        if sounds:
            sound = {"sound": max(weights[n][other] + sound_act[n] for n in sounds)}
        return {"text_encoder": max((weights[n][other] + te_act[n] for n in encoders), default=0),
                "denoise": max(weights[n][kind] for n in experts) + dn_act,
                "decode": weights["vae"][other] + dec_act[tiled], **sound}

    offload: dict[str, Any] = {}
    for mode in OFFLOAD_MODES:
        row = {tiled: stage_bytes(mode, tiled) for tiled in (False, True)}
        offload[mode] = {"gpu_peak_gib": _gib(max(row[s.vae_tiling].values())),
                         "gpu_peak_gib_untiled": _gib(max(row[False].values())),
                         "gpu_peak_gib_tiled": _gib(max(row[True].values())),
                         # every mode loads all weights on the CPU first; offload modes keep them there
                         "cpu_ram_gib": _gib(all_weights),
                         "stages_gib": {"untiled": {k: _gib(v) for k, v in row[False].items()},
                                        "tiled": {k: _gib(v) for k, v in row[True].items()}}}
    te_w = sum(weights[n]["all"] for n in encoders)
    stages = {
        # the stage with all of its encoders resident, as its weights are counted (offload rows load them in turn)
        "text_encoder": {"weights_gib": _gib(te_w), "peak_gib": _gib(te_w + max(te_act.values(), default=0)),
                         "activations_gib": {n: _gib(te_act[n]) for n in encoders}},
        "denoise": {"weights_gib": _gib(max(weights[n]["all"] for n in experts)),
                    "peak_gib": _gib(max(weights[n]["all"] for n in experts) + dn_act),
                    "activations_gib": _gib(dn_act), "experts": len(experts),
                    "guidance_batch": guidance_batch(card, s),
                    "forwards_per_step": 2 if cfg_on(card, s) and guidance_batch(card, s) == 1 else 1},
        "decode": {"weights_gib": _gib(weights["vae"]["all"]),
                   "peak_gib": _gib(weights["vae"]["all"] + dec_act[s.vae_tiling]), "tiled": s.vae_tiling,
                   "peak_gib_untiled": _gib(weights["vae"]["all"] + dec_act[False]),
                   "peak_gib_tiled": _gib(weights["vae"]["all"] + dec_act[True])},
    }
    if sounds:
        stages["sound"] = {"weights_gib": _gib(sum(weights[n]["all"] for n in sounds)),
                           "peak_gib": _gib(max(weights[n]["all"] + sound_act[n] for n in sounds)),
                           "activations_gib": {n: _gib(sound_act[n]) for n in sounds}}
    blocks = {n: {k: comps[n].config[k] for k in comps[n].repeat} for n in names if comps[n].repeat}
    return {"model": card.repo or card.name, "card": card.name, "settings": s.to_dict(), "stages": stages,
            "offload": offload,
            "method": {"traced_blocks": "two blocks of each repeated stack traced (their activations are those of "
                                        "all, freed block by block), weights counted at full size",
                       "repeated": blocks, "excludes": "CUDA context and allocator fragmentation"}}


def _gib(n: int | float) -> float:
    return round(n / GIB, 6)
