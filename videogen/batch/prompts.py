"""Prompt files: .txt (one prompt a line), .jsonl and .yaml items; every problem names the file and the line."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from videogen.errors import UserError
from videogen.spec import check_value, spec_field_types

MAX_FILE_BYTES = 32 * 2**20
MAX_PROMPT_CHARS = 10_000
MAX_ITEMS = 100_000
PROMPT_SUFFIXES = (".txt", ".jsonl", ".yaml", ".yml")
# Fields a prompt-file item may set: every render field (the prompt is the item's own key).
ITEM_KEYS = sorted(set(spec_field_types()) - {"prompt"})
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")


@dataclass(frozen=True)
class Entry:
    """One prompt-file entry: where it is, its prompt, and the render fields it sets."""

    where: str  # "FILE:LINE"
    prompt: str
    fields: dict[str, Any]


def read_prompt_file(path: Path) -> list[Entry]:
    """Parse a .txt / .jsonl / .yaml prompt file; any problem is a UserError naming the file and line or key."""
    suffix = path.suffix.lower()
    if suffix not in PROMPT_SUFFIXES:
        raise UserError(f"{path}: unsupported prompt file type '{suffix}': use .txt, .jsonl or .yaml")
    text = _read_text(path)
    if suffix == ".txt":
        entries = _parse_txt(path, text)
    elif suffix == ".jsonl":
        entries = _parse_jsonl(path, text)
    else:
        entries = _parse_yaml(path, text)
    if not entries:
        raise UserError(f"{path}: no prompts in the file")
    if len(entries) > MAX_ITEMS:
        raise UserError(f"{path}: more than {MAX_ITEMS} prompts")
    return entries


def _read_text(path: Path) -> str:
    try:
        if not path.is_file():
            raise UserError(f"prompt file not found: {path}" if not path.exists() else f"{path}: not a file")
        if path.stat().st_size > MAX_FILE_BYTES:
            raise UserError(f"{path}: larger than {MAX_FILE_BYTES // 2**20} MiB")
        raw = path.read_bytes()
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise UserError(f"{path}:{line}: not UTF-8 text (byte {e.start}); save the file as UTF-8") from None


def _lines(text: str) -> Iterator[tuple[int, str]]:
    # Only "\n" ends a line (str.splitlines would also split on form feeds and U+2028, shifting line numbers).
    for number, line in enumerate(text.split("\n"), start=1):
        yield number, line.removesuffix("\r")


def check_prompt(prompt: Any, where: str) -> str:
    if not isinstance(prompt, str):
        raise UserError(f"{where}: 'prompt' must be a string, not {_short(prompt)}")
    if not prompt.strip():
        raise UserError(f"{where}: the prompt is empty")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise UserError(f"{where}: the prompt is longer than {MAX_PROMPT_CHARS} characters ({len(prompt)})")
    bad = _CONTROL.search(prompt)
    if bad:
        raise UserError(f"{where}: control character U+{ord(bad.group()):04X} in the prompt")
    return prompt


def _parse_txt(path: Path, text: str) -> list[Entry]:
    entries = []
    for number, line in _lines(text):
        prompt = line.strip()
        if not prompt or prompt.startswith("#"):
            continue
        where = f"{path}:{number}"
        if prompt.startswith("{") and _json_object(prompt):
            raise UserError(f"{where}: a JSON object in a .txt file, which holds one plain prompt a line; for "
                            "items with their own settings name the file .jsonl")
        entries.append(Entry(where, check_prompt(prompt, where), {}))
    return entries


def _json_object(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def _item(mapping: dict[str, Any], where: str, key_where: Callable[[str], str] | None = None,
          folder: Path | None = None) -> Entry:
    """A mapping -> Entry: 'prompt' plus known render fields, each type- and range-checked; `folder` is the
    prompt file's, which relative LoRA files are relative to."""
    key_where = key_where or (lambda _k: where)
    if "prompt" not in mapping:
        raise UserError(f"{where}: missing 'prompt'")
    fields: dict[str, Any] = {}
    for key, value in mapping.items():
        if key == "prompt":
            continue
        if key not in ITEM_KEYS:
            from videogen.presets import suggest

            raise UserError(f"{key_where(key)}: unknown key {_short(key)}{suggest(key, ITEM_KEYS)}; "
                            f"valid keys: prompt, {', '.join(ITEM_KEYS)}")
        if key == "loras" and folder is not None:
            from videogen.lora.refs import beside_file

            value = beside_file(value, folder)
        try:
            fields[key] = check_value(key, value, key_where(key))
        except UserError as e:
            raise UserError(cap(str(e))) from None
    prompt = check_prompt(mapping["prompt"], key_where("prompt"))
    return Entry(where, prompt, fields)


def _parse_jsonl(path: Path, text: str) -> list[Entry]:
    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in pairs:
            if k in out:
                raise ValueError(f"duplicate key {_short(k)}")
            out[k] = v
        return out

    entries = []
    for number, line in _lines(text):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            obj = json.loads(line, object_pairs_hook=no_duplicates)
        except json.JSONDecodeError as e:
            raise UserError(f"{where}: invalid JSON: {e.msg} (column {e.colno})") from None
        except ValueError as e:  # duplicate keys
            raise UserError(f"{where}: invalid item: {e}") from None
        except RecursionError:
            raise UserError(f"{where}: invalid JSON: nested too deeply") from None
        if isinstance(obj, str):
            obj = {"prompt": obj}
        if not isinstance(obj, dict):
            raise UserError(f"{where}: each line must be a JSON object with a 'prompt' (or a string), "
                            f"not {type(obj).__name__}")
        entries.append(_item(obj, where, folder=path.parent))
    return entries


def _parse_yaml(path: Path, text: str) -> list[Entry]:
    """A YAML list of items (a prompt string, or a mapping with 'prompt' and render fields); no aliases."""
    import yaml

    from videogen.presets import (
        _NoAliasLoader as Loader,  # the presets' safe loader: no aliases (billion laughs)
    )

    def line(node: Any) -> str:
        return f"{path}:{node.start_mark.line + 1}"

    def value(node: Any) -> Any:
        try:
            return loader.construct_object(node, deep=True)
        except yaml.YAMLError as e:
            raise UserError(f"{line(node)}: invalid value: {_yaml_problem(e)}") from None
        except (ValueError, TypeError, OverflowError) as e:
            raise UserError(f"{line(node)}: invalid value ({type(e).__name__})") from None

    bad = re.search(r"[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]", text)
    if bad:  # what YAML's reader refuses, named by line before the reader sees it
        raise UserError(f"{path}:{text.count(chr(10), 0, bad.start()) + 1}: control character "
                        f"U+{ord(bad.group()):04X} is not allowed in YAML")
    loader = Loader(text)
    try:
        try:
            root = loader.get_single_node()
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
            raise UserError(f"{where}: invalid YAML: {_yaml_problem(e)}") from None
        except RecursionError:
            line_no = loader.get_mark().line + 1
            raise UserError(f"{path}:{line_no}: invalid YAML: nested too deeply") from None
        if root is None:
            return []
        if not isinstance(root, yaml.SequenceNode):
            raise UserError(f"{line(root)}: a YAML prompt file is a list of items ('- prompt' or "
                            f"'- {{prompt: ..., seed: ...}}'), not a {_node_kind(root)}")
        entries = []
        for node in root.value:
            if isinstance(node, yaml.MappingNode):
                mapping: dict[str, Any] = {}
                key_lines: dict[str, str] = {}
                for knode, vnode in node.value:
                    key = value(knode) if isinstance(knode, yaml.ScalarNode) else None
                    if not isinstance(key, str):
                        raise UserError(f"{line(knode)}: keys must be strings, not {_short(key) if key is not None else _node_kind(knode)}")
                    if key in mapping:
                        raise UserError(f"{line(knode)}: duplicate key {_short(key)}")
                    mapping[key] = value(vnode)
                    key_lines[key] = line(knode)
                entries.append(_item(mapping, line(node), lambda k, kl=key_lines, n=node: kl.get(k, line(n)),
                                 folder=path.parent))
            elif isinstance(node, yaml.ScalarNode):
                prompt = value(node)
                entries.append(Entry(line(node), check_prompt(prompt, line(node)), {}))
            else:
                raise UserError(f"{line(node)}: an item is a prompt or a mapping with 'prompt', not a list")
        return entries
    finally:
        loader.dispose()


def _yaml_problem(e: Exception) -> str:
    problem = getattr(e, "problem", None) or (str(e).strip().splitlines() or ["invalid"])[0]
    return cap(" ".join(str(problem).split()))


def _node_kind(node: Any) -> str:
    return {"MappingNode": "mapping", "SequenceNode": "list", "ScalarNode": "single value"}.get(
        type(node).__name__, "value")


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def cap(message: str, limit: int = 400) -> str:
    message = " ".join(message.split())  # one line, whatever the values held
    return message if len(message) <= limit else message[: limit - 3] + "..."
