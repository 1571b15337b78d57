"""Find a diffusers-format model (local folder or Hub id), check it, and load its components safely."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from videogen.errors import UserError

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")
ALLOWED_LIBRARIES = ("diffusers", "transformers")
# Files a render needs from a Hub snapshot: never pickle weights.
HUB_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken", "*.jinja"]
FULL_HASH_LIMIT = 256 * 2**20


@dataclass(frozen=True)
class ModelSource:
    """Where a model's files are, and how to name that version in a run record."""

    ref: str  # what the user asked for
    path: Path
    hub_id: str | None
    revision: str | None  # Hub commit, when from the Hub
    fingerprint: str  # sha256 of the files (or of configs and weight headers for large models)

    def record(self) -> dict[str, Any]:
        return {"ref": self.ref, "path": str(self.path), "hub_id": self.hub_id,
                "revision": self.revision, "fingerprint": self.fingerprint}


def builtin_model_path() -> Path:
    return Path(__file__).resolve().parent / "mini" / "model"


def resolve_model(ref: str) -> ModelSource:
    """A local folder, the built-in model, or a Hub id (through the local Hub cache)."""
    if ref.startswith("builtin:"):
        path = builtin_model_path()
        if not (path / "model_index.json").is_file():
            raise UserError(f"the built-in model is missing from this install ({path}); run `make mini-model`")
        return _local(ref, path)
    path = Path(ref).expanduser()
    if path.exists() or ref.startswith((".", "/", "~")) or not HUB_ID.match(ref):
        if not path.exists():
            raise UserError(f"model folder not found: {ref}")
        if not path.is_dir():
            raise UserError(f"not a model folder (diffusers format is a folder with model_index.json): {ref}")
        return _local(ref, path)
    return _from_hub(ref)


def _local(ref: str, path: Path) -> ModelSource:
    path = path.resolve()
    check_model_folder(path)
    return ModelSource(ref=ref, path=path, hub_id=None, revision=None, fingerprint=fingerprint(path))


def _from_hub(repo_id: str) -> ModelSource:
    import huggingface_hub
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

    offline = huggingface_hub.constants.HF_HUB_OFFLINE
    try:
        folder = huggingface_hub.snapshot_download(repo_id, allow_patterns=HUB_PATTERNS, local_files_only=offline)
    except RepositoryNotFoundError:
        raise UserError(f"no model '{repo_id}' on the Hugging Face Hub (or it is private: run `hf auth login`)") from None
    except LocalEntryNotFoundError:
        cache = huggingface_hub.constants.HF_HUB_CACHE
        how = "HF_HUB_OFFLINE is set" if offline else "the Hub cannot be reached"
        raise UserError(
            f"model '{repo_id}' is not in the Hugging Face cache ({cache}) and {how}; "
            f"fetch it first with `hf download {repo_id}` on a machine with network"
        ) from None
    except (HfHubHTTPError, OSError) as e:
        raise UserError(f"cannot fetch '{repo_id}' from the Hugging Face Hub: {str(e).splitlines()[0]}") from None
    path = Path(folder)
    check_model_folder(path)
    return ModelSource(ref=repo_id, path=path, hub_id=repo_id, revision=path.name, fingerprint=fingerprint(path))


def read_model_index(path: Path) -> dict[str, Any]:
    index = path / "model_index.json"
    if not index.is_file():
        raise UserError(f"not a diffusers model folder (no model_index.json): {path}")
    try:
        data = json.loads(index.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise UserError(f"{index}: invalid JSON ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("_class_name"), str):
        raise UserError(f"{index}: not a diffusers model index (no _class_name)")
    return data


def components(index: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Component name -> (library, class name), for the components that are present."""
    out = {}
    for name, value in index.items():
        if name.startswith("_") or not isinstance(value, list) or len(value) != 2:
            continue
        library, cls = value
        if library is None or cls is None:
            continue
        out[name] = (str(library), str(cls))
    return out


def check_model_folder(path: Path) -> None:
    """Refuse folders that are not diffusers models and weights that are only stored as pickles."""
    index = read_model_index(path)
    for name, (library, _cls) in components(index).items():
        if library not in ALLOWED_LIBRARIES:
            raise UserError(
                f"{path}: component '{name}' comes from '{library}', which is custom code; "
                f"videogen runs no remote code (only {', '.join(ALLOWED_LIBRARIES)} classes)"
            )
        sub = path / name
        if not sub.is_dir():
            raise UserError(f"{path}: component folder '{name}' is missing")
        files = [p for p in sub.iterdir() if p.is_file()]
        pickles = [p.name for p in files if p.suffix in PICKLE_SUFFIXES]
        has_safetensors = any(p.suffix == ".safetensors" for p in files)
        if pickles and not has_safetensors:
            raise UserError(
                f"{path}: component '{name}' has weights only in pickle format ({', '.join(sorted(pickles))}); "
                "videogen loads only .safetensors weights"
            )


def fingerprint(path: Path) -> str:
    """sha256 over the model's files; past FULL_HASH_LIMIT, over configs and safetensors headers only."""
    files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    files = [p for p in files if p.suffix not in PICKLE_SUFFIXES]
    total = sum(p.stat().st_size for p in files)
    full = total <= FULL_HASH_LIMIT
    h = hashlib.sha256(b"full" if full else b"headers")
    for p in files:
        h.update(str(p.relative_to(path)).encode())
        if full or p.suffix != ".safetensors":
            h.update(p.read_bytes())
        else:  # the header lists every tensor's name, dtype, shape and byte range
            with p.open("rb") as f:
                n = int.from_bytes(f.read(8), "little")
                h.update(f.read(min(n, 100 * 2**20)))
            h.update(str(p.stat().st_size).encode())
    return ("sha256:" if full else "sha256-headers:") + h.hexdigest()[:32]


def load_component(path: Path, name: str, library: str, cls_name: str, dtype: Any = None) -> Any:
    """Load one component with its library's own loader; safetensors only, no remote code."""
    import diffusers
    import transformers

    module = {"diffusers": diffusers, "transformers": transformers}[library]
    sub = path / name
    if "Tokenizer" in cls_name or cls_name == "TokenizersBackend":
        return transformers.AutoTokenizer.from_pretrained(sub, trust_remote_code=False)
    if "Processor" in cls_name:
        return transformers.AutoImageProcessor.from_pretrained(sub, trust_remote_code=False)
    cls = getattr(module, cls_name, None)
    if cls is None:
        raise UserError(f"{path}: component '{name}' names {library}.{cls_name}, which this install does not have")
    if "Scheduler" in cls_name:
        return cls.from_pretrained(sub)
    kwargs: dict[str, Any] = {"use_safetensors": True}
    if dtype is not None:
        kwargs["torch_dtype"] = dtype
    if library == "transformers":
        kwargs["trust_remote_code"] = False
    try:
        return cls.from_pretrained(sub, **kwargs)
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{path}: cannot load component '{name}': {first}") from None

