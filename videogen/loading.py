"""Find a diffusers-format model (local folder or Hub id), check it, and load its components safely."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from videogen.errors import UserError
from videogen.jsonfile import read_object
from videogen.modelfiles import PICKLE_SUFFIXES, VARIANTS, Selection, check_folder, components

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")
ALLOWED_LIBRARIES = ("diffusers", "transformers")
FULL_HASH_LIMIT = 256 * 2**20
# The weights variant each resolved folder's components load (set by resolve_model, read by load_component):
# families call load_component with a folder path only, and the variant is a property of that resolution.
_VARIANTS: dict[Path, dict[str, str | None]] = {}


@dataclass(frozen=True)
class ModelSource:
    """Where a model's files are, and how to name that version in a run record."""

    ref: str  # what the user asked for
    path: Path
    hub_id: str | None
    revision: str | None  # Hub commit, when from the Hub (or a Hub cache snapshot given as a folder)
    fingerprint: str  # sha256 of the files (or of configs and weight headers for large models)
    variant: str | None = None  # weights variant (fp16, bf16) loaded, asked for or the folder's only one
    # A Hub model resolved with weights=False whose weights are not fetched yet: its configs are here (enough for
    # every check before loading), its fingerprint is empty; resolve it again with weights=True to fetch them.
    configs_only: bool = False

    def record(self) -> dict[str, Any]:
        return {"ref": self.ref, "path": str(self.path), "hub_id": self.hub_id,
                "revision": self.revision, "variant": self.variant, "fingerprint": self.fingerprint}


# The built-in models by name (`builtin:NAME`): folders inside the package. `mini` is the default one. The second
# generation (videogen/mini/train2.py) joins as `mini-v2` once a trained folder ships.
BUILTIN_FOLDERS = {"mini": "model", "mini-v1": "model"}


def builtin_model_path(ref: str = "builtin:mini") -> Path:
    name = ref.removeprefix("builtin:")
    if name not in BUILTIN_FOLDERS:
        known = ", ".join(f"builtin:{k}" for k in BUILTIN_FOLDERS)
        raise UserError(f"unknown built-in model {ref!r}; the built-in models are {known}")
    return Path(__file__).resolve().parent / "mini" / BUILTIN_FOLDERS[name]


def resolve_model(ref: str, revision: str | None = None, variant: str | None = None,
                  weights: bool = True) -> ModelSource:
    """A local folder, the built-in model, or a Hub id (through the local Hub cache), checked complete.
    weights=False: a Hub model that is not in the cache has only its configs fetched (`configs_only`)."""
    if variant is not None and variant not in VARIANTS:
        raise UserError(f"--variant {variant}: unknown weights variant; use one of {', '.join(VARIANTS)}")
    if ref.startswith("builtin:"):
        path = builtin_model_path(ref)
        if not (path / "model_index.json").is_file():
            raise UserError(f"the built-in model is missing from this install ({path}); run `make mini-model`")
        return _local(ref, path, variant, revision)
    path = Path(ref).expanduser()
    if path.exists() or ref.startswith((".", "/", "~")) or not HUB_ID.match(ref):
        if not path.exists():
            raise UserError(f"model folder not found: {ref}")
        if not path.is_dir():
            raise UserError(f"not a model folder (diffusers format is a folder with model_index.json): {ref}")
        return _local(ref, path, variant, revision)
    return _from_hub(ref, revision, variant, weights)


def _local(ref: str, path: Path, variant: str | None, revision: str | None) -> ModelSource:
    from videogen import hub

    path = path.resolve()
    repo_id = hub.repo_folder_identity(path)
    if repo_id is not None and not (path / "model_index.json").exists():
        raise UserError(f"{path} is a Hugging Face cache folder, not a model: use -m {repo_id} "
                        f"or one of its snapshots ({path / 'snapshots'}/<commit>)")
    identity = hub.snapshot_identity(path)
    if revision is not None and identity is None:
        raise UserError(f"--revision {revision}: only a Hub id has revisions; {ref} is a local folder")
    if identity is not None and revision is not None and revision != identity[1]:
        raise UserError(f"--revision {revision}: {ref} is the snapshot of commit {identity[1]}")
    fix = hub.download_hint(identity[0]) if identity else "re-save or re-download the model"
    sel = check_model_folder(path, variant, fix)
    return _source(ref, path, identity[0] if identity else None, identity[1] if identity else None, sel)


def _source(ref: str, path: Path, hub_id: str | None, revision: str | None, sel: Selection) -> ModelSource:
    import logging

    for note in sel.notes:
        logging.getLogger("videogen").warning(note)
    variants = _VARIANTS[path] = sel.variants
    used = sorted({v for v in variants.values() if v is not None})
    return ModelSource(ref=ref, path=path, hub_id=hub_id, revision=revision, fingerprint=fingerprint(path),
                       variant=",".join(used) or None)


def _from_hub(repo_id: str, revision: str | None, variant: str | None, weights: bool = True) -> ModelSource:
    from videogen import hub
    from videogen.errors import RenderError

    if hub.offline():
        path, commit = hub.cached_snapshot(repo_id, revision)
    else:
        try:
            path, commit, sel = hub.download(repo_id, revision, variant, announce=False, weights=weights)
            if not all((path / f).is_file() for f in sel.files):
                _VARIANTS[path] = sel.variants
                return ModelSource(repo_id, path, repo_id, commit, "", variant, configs_only=True)
        except RenderError as e:  # no network: a cached copy still renders
            try:
                path, commit = hub.cached_snapshot(repo_id, revision)
            except UserError:
                raise e from None
    sel = check_model_folder(path, variant, hub.download_hint(repo_id, revision, variant))
    return _source(repo_id, path, repo_id, commit, sel)


def read_model_index(path: Path) -> dict[str, Any]:
    index = path / "model_index.json"
    if index.is_symlink() and not index.exists():
        raise UserError(f"{index}: a link to a missing blob ({index.readlink()})")
    if not index.is_file():
        raise UserError(f"not a diffusers model folder (no model_index.json): {path}")
    return read_object(index, "a diffusers model index", needs=("_class_name", str))


def diffusers_pipeline_module(library: str) -> bool:
    """Whether a model index's library names a module of diffusers' own pipelines (LTX-2's connectors and
    vocoder are `["ltx2", ...]`): diffusers code, not remote code. Told from the installed files, without
    importing diffusers."""
    import importlib.util

    if not re.fullmatch(r"[a-z0-9_]+", library):
        return False
    spec = importlib.util.find_spec("diffusers")
    roots = list(spec.submodule_search_locations or []) if spec is not None else []
    return any((Path(root) / "pipelines" / library / "__init__.py").is_file() for root in roots)


def check_model_folder(path: Path, variant: str | None = None, fix: str = "") -> Selection:
    """Refuse folders that are not diffusers models, custom code, pickle-only weights, and missing or cut files."""
    index = read_model_index(path)
    for name, (library, _cls) in components(index).items():
        if library not in ALLOWED_LIBRARIES and not diffusers_pipeline_module(library):
            raise UserError(
                f"{path}: component '{name}' comes from '{library}', which is custom code; "
                f"videogen runs no remote code (only {', '.join(ALLOWED_LIBRARIES)} classes)"
            )
    return check_folder(path, index, variant, fix)


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


def load_component(path: Path, name: str, library: str, cls_name: str, dtype: Any = None,
                   variant: str | None = None) -> Any:
    """Load one component with its library's own loader; safetensors only, no remote code."""
    import diffusers
    import transformers

    if library in ALLOWED_LIBRARIES:
        module: Any = {"diffusers": diffusers, "transformers": transformers}[library]
    else:  # a module of diffusers' pipelines (checked by check_model_folder)
        import importlib

        module = importlib.import_module(f"diffusers.pipelines.{library}")
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
    variant = variant or _VARIANTS.get(path, {}).get(name)
    if variant is not None:
        kwargs["variant"] = variant
    if dtype is not None:
        kwargs["torch_dtype"] = dtype
    # transformers fills tensors its files lack with random values (and says so in a log videogen quiets); it
    # reports them, after its own tying and key conversions, when asked for its loading info
    reports = isinstance(cls, type) and issubclass(cls, transformers.PreTrainedModel)
    if library == "transformers":
        kwargs["trust_remote_code"] = False
    if reports:
        kwargs["output_loading_info"] = True
    try:
        component = cls.from_pretrained(sub, **kwargs)
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{path}: cannot load component '{name}': {first}") from None
    not_in_files: list[str] = []
    if reports:
        component, info = component
        not_in_files = sorted(info.get("missing_keys") or ())
    check_all_loaded(component, path, name, not_in_files)
    return component


def check_all_loaded(component: Any, path: Path, name: str, not_in_files: list[str] | None = None) -> None:
    """A weight file that lacks some of the model's tensors leaves them on the meta device (diffusers: no data,
    which would fail much later with a message about meta tensors) or at random values (transformers, which lists
    them as `not_in_files`): say here which component and which tensor."""
    import itertools

    if not hasattr(component, "named_parameters"):
        return
    tensors = itertools.chain(component.named_parameters(), component.named_buffers())
    reported = list(not_in_files or ())
    missing = reported + [key for key, t in tensors if t.is_meta and key not in reported]
    if missing:
        raise UserError(f"{path}: component '{name}': its weight files lack {len(missing)} of its tensors (first: "
                        f"{missing[0]}); an incomplete download or the files of another model?")

