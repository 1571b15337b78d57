"""`--lora ORG/NAME[/FILE.safetensors]`: a LoRA named by its Hugging Face Hub repo, found in the local Hub cache.

A repo holding exactly one .safetensors file gives that file; one holding several needs the file named. Offline
(HF_HUB_OFFLINE) only the cache is read, and a LoRA missing there is refused with the `videogen download` that
fetches it; online the file is fetched into the cache first, as `-m ORG/NAME` fetches a model (a cached copy
still serves when the Hub cannot be reached). Offline, "exactly one" is judged on the files the cache holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from videogen import hub
from videogen.errors import RenderError, UserError

SUFFIX = ".safetensors"


@dataclass(frozen=True)
class HubLora:
    repo_id: str
    file: str  # path inside the repo
    commit: str
    path: Path  # the snapshot's file (a link into the cache's blobs)


_RESOLVED: dict[tuple[str, str | None], HubLora] = {}  # one Hub question per LoRA per process


def hint(repo_id: str, file: str | None) -> str:
    return f"run `videogen download {repo_id}{'/' + file if file else ''}`"


def choose(repo_id: str, file: str | None, files: list[str], where: str, held: str, fix: str = "") -> str:
    """The repo's one .safetensors file, or the one named; refused in one line otherwise."""
    if file is not None:
        if file not in files:
            have = f" ({held}: {', '.join(files)})" if files else ""
            raise UserError(f"{where}: LoRA '{repo_id}/{file}': no such file in {repo_id}{have}{fix}")
        return file
    if not files:
        raise UserError(f"{where}: LoRA '{repo_id}': {held} no .safetensors file")
    if len(files) > 1:
        raise UserError(f"{where}: LoRA '{repo_id}': {held} {len(files)} .safetensors files ({', '.join(files)}); "
                        f"name one, e.g. {repo_id}/{files[0]}")
    return files[0]


def from_cache(repo_id: str, file: str | None, where: str) -> HubLora:
    folder = hub.repo_folder(repo_id)
    ref = folder / "refs" / "main"
    if not ref.is_file():
        how = "HF_HUB_OFFLINE is set" if hub.offline() else "the Hub cannot be reached"
        raise UserError(f"{where}: LoRA '{repo_id}' is not in the Hugging Face cache ({hub.cache_dir()}) and "
                        f"{how}; {hint(repo_id, file)} on a machine with network")
    commit = ref.read_text(encoding="utf-8").strip()
    snap = folder / "snapshots" / commit
    files = sorted(p.relative_to(snap).as_posix() for p in snap.rglob(f"*{SUFFIX}")) if snap.is_dir() else []
    name = choose(repo_id, file, files, where, f"the cached snapshot {commit[:12]} holds", f"; {hint(repo_id, file)}")
    path = snap / name
    if not path.is_file():  # a link whose blob is gone (an interrupted download, a cleaned cache)
        raise UserError(f"{where}: LoRA {path}: a link to a missing blob; {hint(repo_id, name)}")
    return HubLora(repo_id, name, commit, path)


def remote_files(repo_id: str) -> tuple[str, dict[str, int]]:
    """(commit of main, the repo's .safetensors files with their sizes), asked of the Hub."""
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import RepoFile

    hub.quiet_library()
    api = HfApi()
    try:
        commit = api.repo_info(repo_id).sha
        assert commit is not None
        tree = [f for f in api.list_repo_tree(repo_id, recursive=True, revision=commit) if isinstance(f, RepoFile)]
    except Exception as e:  # noqa: BLE001 - sorted into the user's error by hub_errors
        raise hub.hub_errors(repo_id, None, e) from None
    return commit, {f.path: (f.lfs.size if f.lfs is not None else f.size) for f in tree if f.path.endswith(SUFFIX)}


def download(repo_id: str, file: str | None, where: str = "videogen download", progress: bool = True) -> HubLora:
    """Fetch one LoRA file of repo_id (main) into the Hub cache; a file already cached is not fetched again."""
    from huggingface_hub import hf_hub_download

    from videogen.cli.progress import stderr

    commit, sizes = remote_files(repo_id)
    name = choose(repo_id, file, sorted(sizes), where, "the repo holds")
    path = hub.repo_folder(repo_id) / "snapshots" / commit / name
    if not path.is_file():
        stderr.print(f"{repo_id} {commit[:12]}: LoRA {name}, {hub.human(sizes[name])}", highlight=False,
                     soft_wrap=True)
        free = hub.free_space(hub.repo_folder(repo_id))
        if sizes[name] > free:
            raise UserError(f"not enough disk space for {repo_id}/{name}: {hub.human(sizes[name])} to fetch, "
                            f"{hub.human(free)} free in {hub.cache_dir()} (set HF_HOME to a larger disk)")
        with hub.ByteProgress(sizes[name], progress) as bar:
            try:
                hf_hub_download(repo_id, name, revision=commit, tqdm_class=bar.tqdm_class())
            except Exception as e:  # noqa: BLE001
                err = hub.hub_errors(repo_id, None, e)
                if isinstance(err, RenderError):
                    err = RenderError(f"{err} (while fetching {name}; run the same command again to resume)")
                raise err from None
    hub.write_ref(repo_id, "main", commit)  # last: refs/main only ever names a snapshot holding the file
    return HubLora(repo_id, name, commit, path)


def resolve(repo_id: str, file: str | None, where: str) -> HubLora:
    key = (repo_id, file)
    if key not in _RESOLVED:
        if hub.offline():
            found = from_cache(repo_id, file, where)
        else:
            try:
                found = download(repo_id, file, where)
            except RenderError as e:  # no network: a cached copy still serves
                try:
                    found = from_cache(repo_id, file, where)
                except UserError:
                    raise e from None
        _RESOLVED[key] = found
    return _RESOLVED[key]
