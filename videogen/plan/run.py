"""From command-line flags to a plan: merge them with the preset as `generate` does, find the card, trace."""

from __future__ import annotations

from typing import Any

import torch

from videogen.errors import UserError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _preset_name(flags: dict[str, Any], preset: str | None) -> str | None:
    from videogen import presets

    if preset is not None:
        return presets.load_preset(preset).name
    model = flags.get("model")
    if model is not None and not presets.looks_like_path(model):
        found = presets.find_preset(model)
        return found.name if found is not None else None
    return None


def plan_for(flags: dict[str, Any], preset: str | None) -> dict[str, Any]:
    from videogen.cli.options import merge
    from videogen.cli.plan import model_card_for
    from videogen.plan.planner import plan

    name = _preset_name(flags, preset)
    spec = merge("(plan)", dict(flags), preset)
    card = model_card_for(spec.model, name)
    if spec.frames is None or spec.height is None or spec.width is None:
        if card.name in _preset_names():  # a Hub id a card describes: its preset's settings as defaults
            spec = merge("(plan)", dict(flags), card.name)
        else:
            from videogen.resolve import inspect_model, resolve_spec

            spec = resolve_spec(spec, inspect_model(spec.model))
    # auto means bfloat16 on a CUDA GPU, which is what the plan is for
    dtype = torch.bfloat16 if spec.dtype == "auto" else DTYPES[spec.dtype]
    s = settings_of(spec, card, dtype)
    result = plan(card, s)
    result["settings"]["steps"] = spec.steps
    result["settings"]["offload"] = spec.offload
    return result


def settings_of(spec: Any, card: Any, dtype: torch.dtype) -> Any:
    """The planner's settings for a spec whose frames and size are known (`card` may cap its text tokens)."""
    from videogen.plan.planner import Settings

    if spec.max_sequence_length:
        card.data["text_tokens"] = {k: min(v, spec.max_sequence_length) if k == "text_encoder" else v
                                    for k, v in card.data["text_tokens"].items()}
    assert spec.frames and spec.height and spec.width
    from videogen.plan.inputs import DENOISERS

    for comp in card.data["components"].values():  # before any trace: one the planner cannot feed is refused
        if comp["class"].endswith("Transformer3DModel") and comp["class"] not in DENOISERS:
            raise UserError(f"videogen plan does not know the inputs of {comp['class']} yet "
                            f"(known: {', '.join(DENOISERS)})")
    lat = card.data["latent"]
    if spec.height % lat["spatial"] or spec.width % lat["spatial"]:
        raise UserError(f"--height/--width must be multiples of {lat['spatial']} for this model")
    return Settings(frames=spec.frames, height=spec.height, width=spec.width, dtype=dtype,
                    guidance=spec.guidance if spec.guidance is not None else 5.0, guidance_2=spec.guidance_2,
                    true_guidance=spec.true_guidance, batch_cfg=bool(spec.batch_cfg),
                    vae_tiling=bool(spec.vae_tiling), quantize=spec.quantize, fps=spec.fps or 16,
                    audio_guidance=spec.audio_guidance)


def _preset_names() -> set[str]:
    from videogen import presets

    return set(presets.all_presets())
