"""`--lora PATH|HUB_ID[:WEIGHT][@high|@low|@both]`: which file, how strongly, and into which expert.

PATH is a local .safetensors file; HUB_ID a Hugging Face Hub repo, `ORG/NAME` (its one .safetensors file) or
`ORG/NAME/FILE.safetensors`, at main, or at a branch, tag or commit: `ORG/NAME@REV[/FILE.safetensors]` (REV
without `/`), found through the local Hub cache (videogen/lora/hubref.py). A path that exists wins over a Hub id
spelled the same. WEIGHT (default 1.0) multiplies the LoRA's delta; 0 is exactly no LoRA.
The expert matters for two-expert models (Wan 2.2 A14B): `high` is the high-noise expert (`transformer`, the
first steps), `low` the low-noise one (`transformer_2`), `both` (the default) each of them. A one-expert model
takes only `both`. Examples: `style.safetensors`, `style.safetensors:0.6`, `high.safetensors:1@high`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from videogen.errors import UserError

EXPERTS = ("both", "high", "low")
# Expert -> the model components it names (a model that lacks a component simply has fewer targets).
TARGETS = {"both": ("transformer", "transformer_2"), "high": ("transformer",), "low": ("transformer_2",)}
WEIGHT_RANGE = (-10.0, 10.0)


# A two-part `a/b.pt` with a file suffix is a path (a missing one), never a Hub repo of that name.
FILE_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")


@dataclass(frozen=True)
class LoraRef:
    path: Path  # the file read (for a Hub LoRA, the snapshot's file in the cache)
    weight: float = 1.0
    expert: str = "both"
    hub_id: str | None = None  # ORG/NAME when named by its Hub repo
    file: str | None = None  # the file's path inside that repo
    revision: str | None = None  # the repo's commit the file came from
    asked: str | None = None  # the branch, tag or commit named with `@REV` (None: main)

    @property
    def name(self) -> str:
        """How messages and the spec name the LoRA: its absolute path, or ORG/NAME[@REV]/FILE (ORG/NAME[@REV]
        while its one file is not looked up yet)."""
        if self.hub_id:
            from videogen.lora.hubref import label

            return label(self.hub_id, self.file, self.asked)
        return str(self.path)

    def canonical(self) -> str:
        """The form kept in the resolved spec and run record: absolute path (or ORG/NAME/FILE, never absolute,
        so it resolves through the cache again), weight and expert spelled out."""
        return f"{self.name}:{self.weight:g}@{self.expert}"


def beside(text: str, folder: Path) -> str:
    """A `--lora` value from a file (preset, prompt file) with its relative path made relative to that file's
    folder, as a preset's `model:` is; a Hub id, an absolute path and the weight and expert stay as written."""
    head, at, tail = text.rpartition("@")
    body = head if at and tail in EXPERTS else text
    head, sep, tail = body.rpartition(":")
    if sep and head and not tail.startswith(("/", "\\")):
        body = head
    given = Path(body).expanduser()
    if given.is_absolute() or not (body.startswith(".") or (folder / given).exists() or hub_id_of(body) is None):
        return text
    return str((folder / given).absolute()) + text[len(body):]


def beside_file(value: Any, folder: Path) -> Any:
    """A file's `loras:` value (one string or a list) with each relative path rebased on the file's folder; a value
    of another type is left for the field check to refuse."""
    if isinstance(value, str):
        return beside(value, folder)
    if isinstance(value, list):
        return [beside(v, folder) if isinstance(v, str) else v for v in value]
    return value


def parse_ref(text: str, where: str, resolve: bool = True) -> LoraRef:
    """Parse one `--lora` value; `where` names the flag, preset or batch line in errors. With resolve=False a Hub
    id is only parsed, not looked up (reading a preset or a batch file must not reach the Hub or the cache:
    settings.merge resolves it for a render)."""
    body, expert = text, "both"
    head, at, tail = text.rpartition("@")
    if at and tail in EXPERTS:
        body, expert = head, tail
    elif at and not any(Path(b).expanduser().exists() for b in (text, text.rpartition(":")[0]) if b) \
            and not names_a_revision(text):
        raise UserError(f"{where}: LoRA '{text}': unknown expert '@{tail}'; use @high, @low or @both (a Hub "
                        f"revision goes after the repo: ORG/NAME@REV/FILE.safetensors)")
    weight = 1.0
    head, sep, tail = body.rpartition(":")
    if sep and head and not tail.startswith(("/", "\\")):  # a trailing ":WEIGHT" (not a Windows drive letter)
        try:
            weight = float(tail)
        except ValueError:
            raise UserError(f"{where}: LoRA '{text}': weight '{tail}' is not a number") from None
        body = head
    if weight != weight or not WEIGHT_RANGE[0] <= weight <= WEIGHT_RANGE[1]:
        raise UserError(f"{where}: LoRA '{text}': weight must be between {WEIGHT_RANGE[0]:g} and "
                        f"{WEIGHT_RANGE[1]:g}")
    if not body:
        raise UserError(f"{where}: LoRA '{text}': no file named")
    path = Path(body).expanduser()
    hub_parts = None if path.exists() else hub_id_of(body)  # a path that exists wins over a Hub id
    if hub_parts is not None:
        from videogen.lora import hubref

        repo_id, file, asked = hub_parts
        if file is not None and not file.endswith(".safetensors"):
            raise UserError(f"{where}: LoRA '{body}': only .safetensors LoRA files are loaded")
        if not resolve:
            return LoraRef(Path(body), weight, expert, repo_id, file, asked=asked)
        found = hubref.resolve(repo_id, file, asked, where)
        return LoraRef(found.path, weight, expert, found.repo_id, found.file, found.commit, asked)
    if path.suffix != ".safetensors":
        raise UserError(f"{where}: LoRA '{body}': only .safetensors LoRA files are loaded")
    if not path.is_file():
        raise UserError(f"{where}: LoRA file not found: {body}")
    return LoraRef(path.resolve(), weight, expert)


def pin(text: str, entries: list[Any], where: str) -> str:
    """A run record's `--lora` value naming a Hub LoRA, pinned to the commit its entry in the record says the run
    used (`ORG/NAME@COMMIT/FILE`), so that a rerun renders that file even after the repo has moved on."""
    from videogen.hub import COMMIT

    ref = parse_ref(text, where, resolve=False)
    if ref.hub_id is None:
        return text
    found = {(str(e.get("file")), str(e.get("revision"))) for e in entries if isinstance(e, dict)
             and e.get("hub_id") == ref.hub_id and (ref.file is None or e.get("file") == ref.file)}
    if len(found) != 1 or not COMMIT.match(next(iter(found))[1]):
        return text
    file, commit = found.pop()
    return LoraRef(ref.path, ref.weight, ref.expert, ref.hub_id, file, asked=commit).canonical()


def hub_id_of(body: str) -> tuple[str, str | None, str | None] | None:
    """`ORG/NAME[@REV]` or `ORG/NAME[@REV]/FILE` -> (repo id, file or None, revision or None); None for what can
    only be a path."""
    from videogen.loading import HUB_ID

    if body.startswith((".", "/", "~", "\\")) or "\\" in body:
        return None
    parts = body.split("/")
    if len(parts) < 2 or "" in parts:
        return None
    name, at, asked = parts[1].partition("@")
    if at and (not asked or "@" in asked or ":" in asked):
        return None
    if not HUB_ID.match(f"{parts[0]}/{name}") or any("@" in p for p in [parts[0], *parts[2:]]):
        return None
    repo_id = f"{parts[0]}/{name}"
    if len(parts) == 2:
        return None if name.lower().endswith(FILE_SUFFIXES) else (repo_id, None, asked or None)
    return repo_id, "/".join(parts[2:]), asked or None


def names_a_revision(text: str) -> bool:
    """Whether `text` (a `--lora` value without its expert) is a Hub id with `@REV`, with or without :WEIGHT."""
    head, sep, tail = text.rpartition(":")
    try:
        bodies = [text, head] if sep and float(tail) == float(tail) else [text]
    except ValueError:
        bodies = [text]
    return any((parts := hub_id_of(b)) is not None and parts[2] is not None for b in bodies)


_HASHES: dict[tuple[str, int, int], str] = {}


def sha256(path: Path) -> str:
    """sha256 of a LoRA file, cached per (path, size, mtime) so a batch hashes each file once."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _HASHES:
        h = hashlib.sha256()
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                h.update(chunk)
        _HASHES[key] = h.hexdigest()
    return _HASHES[key]
