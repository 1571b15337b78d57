"""Models on the Hugging Face Hub: the local cache as huggingface_hub lays it out, and downloads of exactly the
files a render reads (videogen.modelfiles decides which)."""

from __future__ import annotations

import json
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from videogen.errors import RenderError, UserError
from videogen.modelfiles import Selection, select

COMMIT = re.compile(r"^[0-9a-f]{40}$")


def cache_dir() -> Path:
    # huggingface_hub 2.x no longer imports its submodules eagerly: `huggingface_hub.constants` needs its own import.
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def repo_folder(repo_id: str) -> Path:
    return cache_dir() / ("models--" + repo_id.replace("/", "--"))


def download_hint(repo_id: str, revision: str | None = None, variant: str | None = None) -> str:
    rev = f" --revision {revision}" if revision and revision != "main" else ""
    var = f" --variant {variant}" if variant else ""
    return f"run `videogen download {repo_id}{rev}{var}`"


def snapshot_identity(path: Path) -> tuple[str, str] | None:
    """(hub id, commit) of a folder that is a snapshot in a Hub cache (models--org--name/snapshots/<commit>)."""
    repo, snapshots = path.parent.parent, path.parent
    if snapshots.name != "snapshots" or not repo.name.startswith("models--"):
        return None
    org, sep, name = repo.name[len("models--"):].partition("--")
    return (f"{org}/{name}", path.name) if sep and name else None


def repo_folder_identity(path: Path) -> str | None:
    """The hub id of a folder that is a whole cached repo (models--org--name, holding snapshots/)."""
    if path.name.startswith("models--") and (path / "snapshots").is_dir():
        org, sep, name = path.name[len("models--"):].partition("--")
        return f"{org}/{name}" if sep and name else None
    return None


def cached_snapshot(repo_id: str, revision: str | None = None) -> tuple[Path, str]:
    """The snapshot folder and commit of repo_id in the local cache, read the way huggingface_hub reads it."""
    folder = repo_folder(repo_id)
    rev = revision or "main"
    if not folder.is_dir():
        how = "HF_HUB_OFFLINE is set" if offline() else "the Hub cannot be reached"
        raise UserError(f"model '{repo_id}' is not in the Hugging Face cache ({cache_dir()}) and {how}; "
                        f"{download_hint(repo_id, revision)} on a machine with network")
    if COMMIT.match(rev):
        commit = rev
    else:
        ref = folder / "refs" / rev
        if not ref.is_file():
            snaps = sorted(p.name for p in (folder / "snapshots").glob("*")) if (folder / "snapshots").is_dir() else []
            held = f"the cache holds snapshot(s) {', '.join(s[:12] for s in snaps)} but " if snaps else ""
            raise UserError(f"{ref}: missing ({held}no ref '{rev}' says which one is {repo_id} {rev}); "
                            f"{download_hint(repo_id, revision)}, or give the snapshot folder as -m")
        commit = ref.read_text(encoding="utf-8").strip()
    snap = folder / "snapshots" / commit
    if not snap.is_dir():
        raise UserError(f"{snap}: missing snapshot of {repo_id} {rev}; {download_hint(repo_id, revision)}")
    return snap, commit


class NotADiffusersModel(UserError):
    """A Hub repo without model_index.json (`videogen download` then takes it as a LoRA repo)."""


@dataclass
class RemoteFile:
    path: str
    size: int


def _network_error(e: BaseException) -> bool:
    import httpx2
    from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled

    return isinstance(e, httpx2.TransportError | LocalEntryNotFoundError | OfflineModeIsEnabled | ConnectionError)


def hub_errors(repo_id: str, revision: str | None, e: Exception) -> Exception:
    """A Hub failure as the error the user sees: bad id or revision exit 2, the network exit 1."""
    from huggingface_hub import constants
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    if isinstance(e, GatedRepoError):
        return UserError(f"'{repo_id}' is gated: accept its terms on the Hub and run `hf auth login`")
    if isinstance(e, RepositoryNotFoundError):
        return UserError(f"no model '{repo_id}' on the Hugging Face Hub (or it is private: run `hf auth login`)")
    if isinstance(e, RevisionNotFoundError):
        return UserError(f"--revision {revision}: no such branch, tag or commit in '{repo_id}'")
    if _network_error(e):
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        return RenderError(f"cannot reach the Hugging Face Hub ({constants.ENDPOINT}): {first}")
    if isinstance(e, HfHubHTTPError | OSError):
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        return RenderError(f"download from the Hugging Face Hub failed: {first}")
    return e


def quiet_library() -> None:
    # The library's own retry warnings and bars would interleave with our one line per problem.
    from huggingface_hub.utils import logging as hub_logging

    hub_logging.set_verbosity_error()


def plan_download(repo_id: str, revision: str | None, variant: str | None) -> tuple[str, Selection, list[RemoteFile]]:
    """(commit, selection, files to fetch with sizes), asking the Hub for the file list and model_index.json."""
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub.hf_api import RepoFile

    quiet_library()
    api = HfApi()
    try:
        commit = api.repo_info(repo_id, revision=revision).sha
        assert commit is not None
        tree = [f for f in api.list_repo_tree(repo_id, recursive=True, revision=commit) if isinstance(f, RepoFile)]
        if not any(f.path == "model_index.json" for f in tree):
            raise NotADiffusersModel(f"'{repo_id}' is not a diffusers model (no model_index.json)")
        index_path = hf_hub_download(repo_id, "model_index.json", revision=commit)
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001 - sorted into the user's error by hub_errors
        raise hub_errors(repo_id, revision, e) from None
    try:
        index = json.loads(Path(index_path).read_text(encoding="utf-8"))
    except ValueError as e:
        raise UserError(f"{repo_id}: model_index.json is not valid JSON ({e})") from None
    sizes = {f.path: (f.lfs.size if f.lfs is not None else f.size) for f in tree}
    sel = select(sizes, index, variant, where=repo_id)
    return commit, sel, [RemoteFile(p, sizes[p]) for p in sel.files]


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def free_space(folder: Path) -> int:
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return shutil.disk_usage(folder).free


def download(repo_id: str, revision: str | None = None, variant: str | None = None,
             progress: bool = True, announce: bool = True, weights: bool = True) -> tuple[Path, str, Selection]:
    """Fetch what a render of repo_id reads into the Hub cache; (snapshot folder, commit, selection).
    The file count and size go to stderr first (with announce=False only when something is to be fetched).
    weights=False fetches the rest only (configs, tokenizers, weight indexes: what a render is checked against)."""
    from huggingface_hub import hf_hub_download

    from videogen.cli.progress import stderr

    commit, sel, files = plan_download(repo_id, revision, variant)
    snap = repo_folder(repo_id) / "snapshots" / commit
    if not weights:  # small files, fetched quietly; the weights' size is announced when they are fetched
        files = [f for f in files if not f.path.endswith(".safetensors")]
        announce = progress = False
    todo = [f for f in files if not (snap / f.path).is_file()]
    total, need = sum(f.size for f in files), sum(f.size for f in todo)
    for note in sel.notes if announce else []:  # a render notes the variant when it resolves the folder
        stderr.print(f"note: {note}", highlight=False, soft_wrap=True)
    if announce or (todo and weights):  # a render of a model already complete in the cache says nothing
        stderr.print(f"{repo_id} {commit[:12]}: {len(files)} files, {human(total)}"
                     + (f" ({human(need)} to fetch)" if human(need) != human(total) else ""),
                     highlight=False, soft_wrap=True)
    free = free_space(repo_folder(repo_id))
    if need > free:
        raise UserError(f"not enough disk space for {repo_id}: {human(need)} to fetch, {human(free)} free in "
                        f"{cache_dir()} (set HF_HOME to a larger disk)")
    with ByteProgress(need, progress) as bar:
        for f in todo:
            try:
                hf_hub_download(repo_id, f.path, revision=commit, tqdm_class=bar.tqdm_class())
            except Exception as e:  # noqa: BLE001
                err = hub_errors(repo_id, revision, e)
                if isinstance(err, RenderError):
                    err = RenderError(f"{err} (while fetching {f.path}; run the same command again to resume)")
                raise err from None
    if weights:  # a ref only ever points at a complete snapshot
        write_ref(repo_id, revision or "main", commit)
    return snap, commit, sel


def write_ref(repo_id: str, revision: str, commit: str) -> None:
    """refs/<branch or tag> names the commit, as huggingface_hub writes it (we fetch by commit, so it does not);
    written last, so that a ref only ever points at a complete snapshot."""
    if COMMIT.match(revision):
        return
    ref = repo_folder(repo_id) / "refs" / revision
    ref.parent.mkdir(parents=True, exist_ok=True)
    tmp = ref.with_name(f".{ref.name}.tmp")
    tmp.write_text(commit, encoding="utf-8")
    tmp.replace(ref)


class ByteProgress:
    """One progress bar over all bytes to fetch, fed by huggingface_hub's per-file tqdm updates."""

    def __init__(self, total: int, enabled: bool) -> None:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        from videogen.cli.progress import stderr

        self.enabled = enabled and total > 0
        self.progress = Progress(TextColumn("downloading"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                                 TimeRemainingColumn(), console=stderr, disable=not self.enabled)
        self.task = self.progress.add_task("download", total=total)

    def __enter__(self) -> ByteProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)

    def tqdm_class(self) -> Any:
        from tqdm import tqdm

        owner = self

        class Bar(tqdm):  # type: ignore[misc]
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                kwargs["disable"] = True
                kwargs["file"] = sys.stderr
                super().__init__(*args, **kwargs)

            def update(self, n: float | None = 1) -> bool | None:
                owner.progress.advance(owner.task, n or 0)
                return None

        return Bar
