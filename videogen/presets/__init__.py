"""Presets: YAML files naming a model and defaults for any render field, validated with clear errors."""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from videogen.errors import UserError
from videogen.spec import check_value, spec_field_types

BUILTIN_DIR = Path(__file__).resolve().parent  # the YAML files ship as package data beside this module

MAX_PRESET_BYTES = 256 * 1024
# Fields a preset may not set: they belong to one render, not to a reusable preset.
NOT_IN_PRESETS = {"prompt", "image", "last_image"}
META_KEYS = {"description", "family"}


def user_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "videogen" / "presets"


def allowed_keys() -> list[str]:
    return sorted((set(spec_field_types()) - NOT_IN_PRESETS) | META_KEYS)


@dataclass(frozen=True)
class Preset:
    name: str
    path: Path
    description: str
    family: str | None
    values: dict[str, Any]  # validated RenderSpec fields, "model" included when given

    @property
    def model(self) -> str | None:
        return self.values.get("model")


def suggest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _read_yaml(path: Path) -> Any:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise UserError(f"{path}: cannot read preset ({e.strerror})") from None
    if len(raw) > MAX_PRESET_BYTES:
        raise UserError(f"{path}: preset is larger than {MAX_PRESET_BYTES // 1024} KiB")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text (byte {e.start})") from None
    try:
        return yaml.load(text, Loader=_NoAliasLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise UserError(f"{path}:{where} invalid YAML: {problem}") from None
    except RecursionError:  # PyYAML recurses once per nesting level
        raise UserError(f"{path}: invalid YAML: nested too deeply") from None


class _NoAliasLoader(yaml.SafeLoader):
    """Safe YAML without anchors and aliases: presets never need them, and they allow billion-laughs."""

    def compose_node(self, parent, index):  # type: ignore[no-untyped-def]
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not allowed", mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):  # type: ignore[no-untyped-def]
        # PyYAML keeps the last of two equal keys; a preset that says `steps` twice is a mistake to point at.
        seen: set[str] = set()
        for key_node, _value in node.value:
            key = self.construct_object(key_node) if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, str):
                continue  # other keys are refused by name where the mapping is read
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def parse_preset(path: Path, name: str | None = None) -> Preset:
    data = _read_yaml(path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: a preset must be a mapping of keys to values, not {type(data).__name__}")
    keys = allowed_keys()
    values: dict[str, Any] = {}
    for key, value in data.items():
        if not isinstance(key, str):
            raise UserError(f"{path}: keys must be strings, not {key!r}")
        if key in META_KEYS:
            continue
        if key not in keys:
            raise UserError(f"{path}: unknown key '{key}'{suggest(key, keys)}; valid keys: {', '.join(keys)}")
        if key == "loras":  # a relative LoRA file, like the model, is relative to the preset file
            from videogen.lora.refs import beside_file

            value = beside_file(value, path.parent)
        values[key] = check_value(key, value, f"{path}")
    description = data.get("description") or ""
    if not isinstance(description, str):
        raise UserError(f"{path}: 'description' must be a string")
    family = data.get("family")
    if family is not None and not isinstance(family, str):
        raise UserError(f"{path}: 'family' must be a string")
    if values.get("model") is not None:  # `model: null` sets no model (and is no path to resolve)
        values["model"] = _model_beside(path, values["model"])
    return Preset(name=name or path.stem, path=path, description=description, family=family, values=values)


def _model_beside(path: Path, model: str) -> str:
    """A preset's relative model folder is relative to the preset file, not to the current folder."""
    if model.startswith("builtin:"):
        return model
    given = Path(model).expanduser()
    if given.is_absolute():
        return str(given)
    beside = path.parent / given
    if model.startswith(".") or beside.exists():  # else a Hub id such as org/name
        return str(beside.absolute())
    return model


def _yaml_files(folder: Path) -> list[Path]:
    return sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")])


def builtin_names() -> list[str]:
    return sorted(p.stem for p in _yaml_files(BUILTIN_DIR))


def all_presets() -> dict[str, Path]:
    """Name -> file (.yaml or .yml). User presets shadow built-in ones of the same name."""
    found = {p.stem: p for p in _yaml_files(BUILTIN_DIR)}
    udir = user_dir()
    if udir.is_dir():
        found.update({p.stem: p for p in _yaml_files(udir)})
    return found


def readable_presets() -> list[tuple[str, Preset | UserError]]:
    """Every preset, parsed; a broken one comes as its error, so that one bad file does not hide the others."""
    out: list[tuple[str, Preset | UserError]] = []
    for name, path in sorted(all_presets().items()):
        try:
            out.append((name, parse_preset(path, name)))
        except UserError as e:
            out.append((name, e))
    return out


def looks_like_path(ref: str) -> bool:
    return ref.endswith((".yaml", ".yml")) or os.sep in ref or ref.startswith(".")


def find_preset(ref: str) -> Preset | None:
    """A preset by name, or None if no preset has that name (paths must exist)."""
    if looks_like_path(ref):
        path = Path(ref).expanduser()
        if not path.is_file():
            raise UserError(f"preset file not found: {ref}")
        return parse_preset(path)
    path = all_presets().get(ref)
    return parse_preset(path, ref) if path else None


def load_preset(ref: str) -> Preset:
    preset = find_preset(ref)
    if preset is None:
        names = sorted(all_presets())
        raise UserError(f"unknown preset '{ref}'{suggest(ref, names)}; available: {', '.join(names)}")
    return preset
