"""Scheduler choice: the one stored with the model, or another by name, with an optional flow shift."""

from __future__ import annotations

from typing import Any

from videogen.errors import UserError

# name -> (diffusers class, config overrides that make it a flow-matching sampler)
FLOW_SCHEDULERS: dict[str, tuple[str, dict[str, Any]]] = {
    "unipc": ("UniPCMultistepScheduler", {"prediction_type": "flow_prediction", "use_flow_sigmas": True}),
    "euler": ("FlowMatchEulerDiscreteScheduler", {}),
    "dpm++": ("DPMSolverMultistepScheduler", {"prediction_type": "flow_prediction", "use_flow_sigmas": True}),
}
SHIFT_KEYS = ("flow_shift", "shift")


def scheduler_names() -> list[str]:
    return sorted(FLOW_SCHEDULERS)


def make_scheduler(base: Any, name: str | None, shift: float | None) -> Any:
    """A fresh scheduler for one render (schedulers keep per-run state), from the model's own config."""
    import diffusers

    config = dict(base.config)
    if name is None:
        cls, extra = type(base), {}
    else:
        if name not in FLOW_SCHEDULERS:
            raise UserError(f"unknown scheduler '{name}'; choose one of {', '.join(scheduler_names())}")
        cls_name, extra = FLOW_SCHEDULERS[name]
        cls = getattr(diffusers, cls_name)
        base_shift = next((config[k] for k in SHIFT_KEYS if config.get(k) is not None), None)
        if base_shift is not None and shift is None:
            shift = base_shift
        keep = cls._get_init_keys(cls)
        config = {k: v for k, v in config.items() if k in keep}
    overrides = dict(extra)
    if shift is not None:
        keys = [k for k in SHIFT_KEYS if k in cls._get_init_keys(cls)]
        if not keys:
            raise UserError(f"scheduler {cls.__name__} has no flow shift to set")
        overrides.update({k: shift for k in keys})
    return cls.from_config(config, **overrides)


def set_timesteps(scheduler: Any, steps: int, sigmas: tuple[float, ...] | None, device: Any) -> None:
    """`steps` evenly spaced by the scheduler, or exactly `sigmas` (before its flow shift) when given."""
    import inspect

    if sigmas is None:
        scheduler.set_timesteps(steps, device=device)
        return
    if "sigmas" not in inspect.signature(scheduler.set_timesteps).parameters:
        raise UserError(f"--sigmas: scheduler {type(scheduler).__name__} takes no sigmas; add --scheduler euler")
    scheduler.set_timesteps(sigmas=list(sigmas), device=device)


def describe(scheduler: Any) -> dict[str, Any]:
    return {"class": type(scheduler).__name__,
            "config": {k: v for k, v in dict(scheduler.config).items() if not k.startswith("_")}}
