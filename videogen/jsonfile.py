"""JSON files that must hold an object (model index, configs, run records, render defaults): one reader, so that
every way such a file can be wrong is one line naming the file and what it should have been."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from videogen.errors import UserError


def parse_object(text: str, where: str, what: str, needs: tuple[str, type] | None = None) -> dict[str, Any]:
    """`text` as a JSON object; `where` names its source, `what` what it should be ("a videogen run record"),
    `needs` a key it must hold and that key's type."""
    try:
        data = json.loads(text)
    except ValueError as e:
        raise UserError(f"{where}: not {what}: invalid JSON ({e})") from None
    if not isinstance(data, dict):
        raise UserError(f"{where}: not {what} (a JSON {type(data).__name__}, not an object)")
    if needs is not None and not isinstance(data.get(needs[0]), needs[1]):
        raise UserError(f"{where}: not {what} (no '{needs[0]}')")
    return data


def read_object(path: Path, what: str, needs: tuple[str, type] | None = None) -> dict[str, Any]:
    """The JSON object in the file `path` (see `parse_object`)."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not {what}: not UTF-8 text (byte {e.start})") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read {what} ({e.strerror or type(e).__name__})") from None
    return parse_object(text, str(path), what, needs)
