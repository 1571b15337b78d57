"""What is known before a model loads: where it is, its family and geometry, and a RenderSpec resolved against it.

Everything here reads configs and files only (no weights, no torch), so that a refused flag or a 10,000-line
`batch --dry-run` costs no torch import; `engine` loads and renders."""

from __future__ import annotations

import platform
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import videogen
from videogen import loading
from videogen.errors import UserError
from videogen.families import Family, family_for
from videogen.families.base import Geometry
from videogen.spec import RenderSpec, where


@dataclass(frozen=True)
class ModelInfo:
    """What can be known about a model without loading weights."""

    source: loading.ModelSource
    index: dict[str, Any]
    family: type[Family]
    geometry: Geometry


def versions() -> dict[str, str]:
    """The versions a run record names, read from the installed packages' metadata (importing diffusers to ask
    would cost a rerun's checks seconds before they could refuse anything)."""
    from importlib.metadata import version

    return {"videogen": videogen.__version__, **{name: version(name) for name in ("torch", "diffusers", "transformers")},
            "python": platform.python_version()}


def inspect_model(ref: str, revision: str | None = None, variant: str | None = None,
                  weights: bool = True) -> ModelInfo:
    """The model and its family; weights=False leaves an uncached Hub model's weights unfetched (its configs are
    what a render is checked against)."""
    source = loading.resolve_model(ref, revision, variant, weights)
    index = loading.read_model_index(source.path)
    family = family_for(index, str(source.path))
    return ModelInfo(source, index, family, family.geometry(source.path, index))


def model_defaults(info: ModelInfo, spec: RenderSpec) -> dict[str, tuple[Any, str]]:
    """Field -> (default value, where it comes from): the family's, those its configs or the spec's inputs
    decide, then those the model folder ships (the built-in model's among them)."""
    d = info.family.defaults_for(info.index)
    out: dict[str, tuple[Any, str]] = {
        name: (getattr(d, name), "the model's default")
        for name in ("frames", "height", "width", "steps", "guidance", "fps", "negative_prompt")}
    out.update(info.family.defaults_from(info.source.path, info.index, spec))
    from videogen.settings import MODEL_DEFAULTS, model_folder_defaults

    label = f"the model's default, {MODEL_DEFAULTS}"
    out.update({k: (v, label) for k, v in model_folder_defaults(info.source.path).items()})
    out.setdefault("batch_cfg", (False, "the default"))
    return out


def resolve_spec(spec: RenderSpec, info: ModelInfo) -> RenderSpec:
    """Fill the model's defaults and check what the model can take; bad values are refused by name, and by
    where they came from (a default is not reported as a flag the user typed)."""
    spec = check_sigmas(spec, info)  # before the defaults: the sigmas set the step count
    from videogen import clips

    try:  # input clips first: a clip sets the frames and size the user left open
        spec = clips.check_inputs(spec, info.family, info.geometry, info.family.task_of(info.index))
    except UserError as e:
        raise UserError(relabel(str(e), spec)) from None
    sources = dict(spec.extras.get("where", {}))
    filled: dict[str, Any] = {}
    for name, (value, label) in model_defaults(info, spec).items():
        if getattr(spec, name) is None:
            filled[name], sources[name] = value, label
    if spec.seed is None:
        filled["seed"], sources["seed"] = secrets.randbelow(2**31), "a random seed"
    spec = spec.replace(**filled, extras={**spec.extras, "where": sources})
    try:
        _check_resolved(spec, info)
    except UserError as e:
        raise UserError(relabel(str(e), spec)) from None
    return spec


def relabel(message: str, spec: RenderSpec) -> str:
    """Rewrite `--frames 81` in a message as `frames 81 (the model's default)` where no flag gave the value; a
    flag named without its value is rewritten only where it is the subject (it may be advice: "use --device cpu")."""
    for name, label in spec.extras.get("where", {}).items():
        if label.startswith("--"):
            continue
        flag, value, said = "--" + name.replace("_", "-"), getattr(spec, name), where(spec, name)
        message = re.sub(re.escape(f"{flag} {value}") + r"(?![\w.-])", lambda _m, s=said: s, message)
        message = re.sub(r"(^|; )" + re.escape(flag) + r"(?![\w-])", lambda m, s=said: m.group(1) + s, message)
    return message


def _check_resolved(spec: RenderSpec, info: ModelInfo) -> None:
    check_images(spec, info)
    info.family.check_fields(info.index, spec)  # set fields this family does not take, refused by name
    info.family.check_spec(info.source.path, info.index, spec)  # what only the model's configs tell
    from videogen.schedulers import scheduler_names

    if spec.scheduler is not None and spec.scheduler not in scheduler_names():
        raise UserError(f"unknown scheduler '{spec.scheduler}'; choose one of {', '.join(scheduler_names())}")
    problems = info.geometry.problems(spec.frames, spec.height, spec.width)
    if problems:
        raise UserError(f"{info.family.name} model: " + "; ".join(problems))
    if not spec.prompt.strip():
        raise UserError("the prompt is empty")
    from videogen import step_cache

    needs_blocks = spec.cache in step_cache.NEEDS_TWO_BLOCKS
    step_cache.check(spec, info.family.block_count(info.source.path) if needs_blocks else None)
    if not info.source.configs_only:  # (else the caller matches them once the weights are here: api.prepare, check_items)
        lora_infos(spec, info)  # every LoRA read and matched against the checkpoint before any weight is loaded


def check_sigmas(spec: RenderSpec, info: ModelInfo) -> RenderSpec:
    """--sigmas fixes the step count; a model whose adapter builds its own sigmas cannot take them."""
    if spec.sigmas is None:
        return spec
    if not info.family.takes_sigmas:
        raise UserError(f"--sigmas: this {info.family.name} model's sampler builds its own sigmas")
    if spec.steps is not None and spec.steps != len(spec.sigmas):
        raise UserError(f"{where(spec, 'steps')} disagrees with the {len(spec.sigmas)} sigmas given by "
                        f"{where(spec, 'sigmas')}")
    sources = {**spec.extras.get("where", {}), "steps": "the number of sigmas"}
    return spec.replace(steps=len(spec.sigmas), extras={**spec.extras, "where": sources})


def lora_infos(spec: RenderSpec, info: ModelInfo) -> list[Any]:
    if not spec.loras:
        return []
    from videogen import lora

    return lora.resolve(spec.loras, info.source.path, list(loading.components(info.index)), info.family,
                        str(info.index.get("_class_name", "")))


def check_images(spec: RenderSpec, info: ModelInfo) -> None:
    family, task = info.family, info.family.task_of(info.index)
    takes_image = task in ("i2v", "flf2v", "ti2v")
    if spec.image is None and task in ("i2v", "flf2v"):
        raise UserError(f"this {family.name} model is image-to-video: give the first frame with --image")
    if spec.image is not None and not takes_image:
        raise UserError(f"this {family.name} model is text-to-video only and cannot take --image")
    # A family that may hold first-last-frame models checks the model itself (its check_spec).
    if spec.last_image is not None and task != "flf2v" and "flf2v" not in family.tasks:
        raise UserError(f"this {family.name} model cannot take --last-image")
    for flag, value in (("--image", spec.image), ("--last-image", spec.last_image)):
        if value is not None and not Path(value).is_file():
            raise UserError(f"{flag}: file not found: {value}")
