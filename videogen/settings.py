"""Where a render's settings come from, in one order for `generate`, `batch` and the Python API:

    the family's defaults < the model folder's own (videogen_defaults.json: the built-in model's live there)
    < run record (--from) < preset < flags

The first two are filled in by `engine.resolve_spec` once the model is known; `merge` does the rest. Every value
keeps a label saying where it came from (`RenderSpec.extras["where"]`), so that errors name the flag, the preset
file and key, the record or the default, never a flag the user did not type."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from videogen.errors import UserError
from videogen.jsonfile import read_object
from videogen.spec import BUILTIN_MODEL, RenderSpec, check_value

# Top-level record fields that repeat `spec`: a rerun reads `spec`, so the two must agree.
RECORD_DUPLICATES = ("prompt", "negative_prompt", "seed", "steps", "guidance", "frames", "height", "width", "fps")


def flag_label(name: str) -> str:
    return {"loras": "--lora"}.get(name) or "--" + name.replace("_", "-")  # --lora is repeated, one file each


@dataclass(frozen=True)
class Rerun:
    """What a run record brings to a rerun: its `spec` section (the only fields that count) and what the model
    and libraries were, to compare with now."""

    where: str  # the record's file, for messages
    prompt: str | None
    values: dict[str, Any]  # RenderSpec fields; `model` as the record's absolute path or Hub id when usable
    fingerprint: str | None = None
    revision: str | None = None
    versions: dict[str, str] = field(default_factory=dict)
    loras: list[Any] = field(default_factory=list)  # the record's LoRA entries (path, sha256, ...)
    inputs: dict[str, Any] = field(default_factory=dict)  # input files by flag: path and sha256 (clips.describe)


def rerun_of(data: dict[str, Any], where: str) -> Rerun:
    """Read a run record. Hand edits go in `spec`; a top-level copy that disagrees with it is refused."""
    spec = data.get("spec")
    if not isinstance(spec, dict):
        raise UserError(f"{where}: not a videogen run record (no 'spec')")
    for key in RECORD_DUPLICATES:
        if key in data and key in spec and data[key] != spec[key]:
            raise UserError(f"{where}: '{key}' is {data[key]!r} at the top level but {spec[key]!r} in 'spec'; "
                            f"a rerun reads 'spec': edit the value there and make both agree")
    label = f"run record {where}"
    values = {k: check_value(k, v, label) for k, v in spec.items() if k != "prompt"}
    prompt = spec.get("prompt", data.get("prompt"))
    if prompt is not None and not isinstance(prompt, str):
        raise UserError(f"{where}: 'prompt' must be a string")
    model = data.get("model") if isinstance(data.get("model"), dict) else {}
    if "model" in values and not str(values["model"]).startswith("builtin:"):
        # The record's ref may be relative to the folder it was made in: use its absolute path or Hub id.
        if model.get("hub_id"):
            values["model"] = model["hub_id"]
        elif model.get("path") and Path(model["path"]).is_dir():
            values["model"] = model["path"]
    if values.get("loras") and isinstance(data.get("loras"), list):
        # Hub LoRAs at the commits the run used, as the spec's `revision` holds the model's commit.
        from videogen.lora.refs import pin

        values["loras"] = tuple(pin(text, data["loras"], label) for text in values["loras"])
    versions = data.get("versions") if isinstance(data.get("versions"), dict) else {}
    return Rerun(where=where, prompt=prompt, values=values, fingerprint=model.get("fingerprint"),
                 revision=model.get("revision"), versions={str(k): str(v) for k, v in versions.items()},
                 loras=data.get("loras") or [],
                 inputs=data.get("inputs") if isinstance(data.get("inputs"), dict) else {})


def read_rerun(path: Path) -> Rerun:
    from videogen.video import load_record

    return rerun_of(load_record(path), str(path))


def merge(prompt: str | None, flags: dict[str, Any], preset: Any = None, record: Rerun | dict[str, Any] | None = None,
          where: str = "", labels: dict[str, str] | None = None) -> RenderSpec:
    """Build a RenderSpec from a run record < preset < flags (the model's defaults come later, in resolve).

    `flags` are RenderSpec fields (checked here); `labels` names where each came from (default: the flag,
    e.g. "prompts.jsonl line 3" for a batch item). `preset` is a name, a YAML path or a loaded Preset. A `-m`
    value that names a preset (e.g. `-m wan2.1-t2v-1.3b`) is read as that preset."""
    from videogen import presets

    labels = labels or {}
    if isinstance(record, dict):
        record = rerun_of(record, where or "run record")
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    if record is not None:
        values.update(record.values)
        sources.update(dict.fromkeys(record.values, f"run record {record.where}"))
    flags = dict(flags)
    model_flag = flags.pop("model", None)
    preset_ref = preset
    if (model_flag is not None and preset_ref is None and not presets.looks_like_path(model_flag)
            and not Path(model_flag).expanduser().exists() and presets.find_preset(model_flag) is not None):
        preset_ref, model_flag = model_flag, None  # `-m wan2.1-t2v-1.3b` names a preset
    if preset_ref is not None:
        p = preset_ref if isinstance(preset_ref, presets.Preset) else presets.load_preset(preset_ref)
        values.update(p.values)
        sources.update({k: f"preset {p.path}, key '{k}'" for k in p.values})
    for key, value in flags.items():
        label = labels.get(key, flag_label(key))
        values[key] = check_value(key, value, label)
        sources[key] = label
    if model_flag is not None:
        values["model"] = check_value("model", model_flag, labels.get("model", "--model"))
        sources["model"] = labels.get("model", "--model")
    values.setdefault("model", BUILTIN_MODEL)
    if prompt is None and record is not None:
        prompt = record.prompt
    if prompt is None:
        raise UserError("missing PROMPT (or --from RUN.json)")
    if values.get("loras"):
        # Hub ids are looked up here (the cache, or the Hub when online), so a missing or ambiguous one is refused
        # before the model's libraries are even imported; reading a preset or batch file alone only parses them.
        from videogen.lora.refs import parse_ref

        label = sources.get("loras", flag_label("loras"))
        values["loras"] = tuple(parse_ref(text, label).canonical() for text in values["loras"])
    if record is not None and record.loras:  # the LoRAs a rerun still uses must be the recorded files
        from videogen.lora import check_record

        check_record(record.loras, values.get("loras", ()), record.where)
    return RenderSpec(prompt=prompt, **values, extras={"where": sources})


MODEL_DEFAULTS = "videogen_defaults.json"  # a model folder's own render defaults, if it ships them


def model_folder_defaults(folder: Path) -> dict[str, Any]:
    """The render defaults a model folder ships (the built-in model's live there, and only there:
    videogen/mini/model/videogen_defaults.json, read by the CLI, the API, training and evaluation alike)."""
    path = folder / MODEL_DEFAULTS
    if not path.is_file():
        return {}
    data = read_object(path, "the model's render defaults")
    allowed = {"negative_prompt", "frames", "height", "width", "steps", "guidance", "guidance_2", "fps",
               "scheduler", "flow_shift", "batch_cfg", "true_guidance", "max_sequence_length"}
    for key in data:
        if key not in allowed:
            raise UserError(f"{path}: '{key}' is not a render default a model may set")
    return {k: check_value(k, v, str(path)) for k, v in data.items()}
