"""`--lora ORG/NAME[@REV][/FILE.safetensors]`: a LoRA named by its Hugging Face Hub repo, found in the local Hub
cache.

A repo holding exactly one .safetensors file gives that file; one holding several needs the file named. REV (a
branch, tag or commit; main when left out) picks the repo's revision. Offline (HF_HUB_OFFLINE) only the cache is
read, and a LoRA missing there is refused with the `videogen download` that fetches it; online the file is fetched
into the cache first, as `-m ORG/NAME` fetches a model (a cached copy still serves when the Hub cannot be reached;
a commit already cached is not asked of the Hub at all: it cannot change). Offline, "exactly one" is judged on the
files the cache holds.
"""

from __future__ import annotations

import contextlib
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


_RESOLVED: dict[tuple[str, str | None, str | None], HubLora] = {}  # one Hub question per LoRA per process


def label(repo_id: str, file: str | None, revision: str | None) -> str:
    """The LoRA as the user spells it: ORG/NAME[@REV][/FILE]."""
    return f"{repo_id}{'@' + revision if revision else ''}{'/' + file if file else ''}"


def hint(repo_id: str, file: str | None, revision: str | None = None) -> str:
    rev = f" --revision {revision}" if revision else ""
    return f"run `videogen download {repo_id}{'/' + file if file else ''}{rev}`"


def choose(repo_id: str, file: str | None, files: list[str], where: str, held: str, fix: str = "",
           revision: str | None = None) -> str:
    """The repo's one .safetensors file, or the one named; refused in one line otherwise."""
    if file is not None:
        if file not in files:
            have = f" ({held}: {', '.join(files)})" if files else ""
            raise UserError(f"{where}: LoRA '{label(repo_id, file, revision)}': no such file in "
                            f"{label(repo_id, None, revision)}{have}{fix}")
        return file
    if not files:
        raise UserError(f"{where}: LoRA '{label(repo_id, None, revision)}': {held} no .safetensors file")
    if len(files) > 1:
        raise UserError(f"{where}: LoRA '{label(repo_id, None, revision)}': {held} {len(files)} .safetensors files "
                        f"({', '.join(files)}); name one, e.g. {label(repo_id, files[0], revision)}")
    return files[0]


def from_cache(repo_id: str, file: str | None, where: str, revision: str | None = None) -> HubLora:
    folder = hub.repo_folder(repo_id)
    how = "HF_HUB_OFFLINE is set" if hub.offline() else "the Hub cannot be reached"
    fetch = f"{hint(repo_id, file, revision)} on a machine with network"
    if revision is not None and hub.COMMIT.match(revision):
        commit = revision
    else:
        ref = folder / "refs" / (revision or "main")
        if not ref.is_file():
            raise UserError(f"{where}: LoRA '{label(repo_id, file, revision)}' is not in the Hugging Face cache "
                            f"({hub.cache_dir()}) and {how}; {fetch}")
        commit = ref.read_text(encoding="utf-8").strip()
    snap = folder / "snapshots" / commit
    if not snap.is_dir():
        raise UserError(f"{where}: LoRA '{label(repo_id, file, revision)}': commit {commit[:12]} is not in the "
                        f"Hugging Face cache ({hub.cache_dir()}) and {how}; {fetch}")
    files = sorted(p.relative_to(snap).as_posix() for p in snap.rglob(f"*{SUFFIX}"))
    name = choose(repo_id, file, files, where, f"the cached snapshot {commit[:12]} holds",
                  f"; {hint(repo_id, file, revision)}", revision)
    path = snap / name
    if not path.is_file():  # a link whose blob is gone (an interrupted download, a cleaned cache)
        raise UserError(f"{where}: LoRA {path}: a link to a missing blob; {hint(repo_id, name, revision)}")
    return HubLora(repo_id, name, commit, path)


def remote_files(repo_id: str, revision: str | None = None, where: str = "videogen download"
                 ) -> tuple[str, dict[str, int]]:
    """(commit of the revision, main by default; the repo's .safetensors files there with their sizes), asked of
    the Hub."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RevisionNotFoundError
    from huggingface_hub.hf_api import RepoFile

    hub.quiet_library()
    api = HfApi()
    try:
        commit = api.repo_info(repo_id, revision=revision).sha
        assert commit is not None
        tree = [f for f in api.list_repo_tree(repo_id, recursive=True, revision=commit) if isinstance(f, RepoFile)]
    except RevisionNotFoundError:
        raise UserError(f"{where}: LoRA '{label(repo_id, None, revision)}': no branch, tag or commit '{revision}' "
                        f"in {repo_id} (an expert goes last: @high, @low or @both)") from None
    except Exception as e:  # noqa: BLE001 - sorted into the user's error by hub_errors
        raise hub.hub_errors(repo_id, revision, e) from None
    return commit, {f.path: (f.lfs.size if f.lfs is not None else f.size) for f in tree if f.path.endswith(SUFFIX)}


def download(repo_id: str, file: str | None, where: str = "videogen download", progress: bool = True,
             revision: str | None = None) -> HubLora:
    """Fetch one LoRA file of repo_id at revision (main by default) into the Hub cache; a file already cached is
    not fetched again."""
    from huggingface_hub import hf_hub_download

    from videogen.cli.progress import stderr

    commit, sizes = remote_files(repo_id, revision, where)
    name = choose(repo_id, file, sorted(sizes), where, "the repo holds", revision=revision)
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
                err = hub.hub_errors(repo_id, revision, e)
                if isinstance(err, RenderError):
                    err = RenderError(f"{err} (while fetching {name}; run the same command again to resume)")
                raise err from None
    # last: a ref only ever names a snapshot holding the file (none is written for a commit)
    hub.write_ref(repo_id, revision or "main", commit)
    return HubLora(repo_id, name, commit, path)


def resolve(repo_id: str, file: str | None, revision: str | None, where: str) -> HubLora:
    key = (repo_id, file, revision)
    if key not in _RESOLVED:
        _RESOLVED[key] = find(repo_id, file, revision, where)
    return _RESOLVED[key]


def find(repo_id: str, file: str | None, revision: str | None, where: str) -> HubLora:
    if hub.offline():
        return from_cache(repo_id, file, where, revision)
    if revision is not None and hub.COMMIT.match(revision):
        with contextlib.suppress(UserError):  # a commit already cached cannot have changed: no Hub question
            return from_cache(repo_id, file, where, revision)
    try:
        return download(repo_id, file, where, revision=revision)
    except RenderError as e:  # no network: a cached copy still serves
        try:
            return from_cache(repo_id, file, where, revision)
        except UserError:
            raise e from None
