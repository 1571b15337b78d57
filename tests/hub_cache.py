"""A Hugging Face Hub cache laid out exactly as huggingface_hub lays it out, from a model folder.

HF_HOME/hub/models--org--name/ holds blobs/<hash> (git's sha1 for small files, sha256 for LFS weights),
snapshots/<commit>/<path> as relative symlinks into blobs, and refs/main naming the commit.
Standard library only: CI runs it with the installed wheel's python (`python hub_cache.py MODEL HF_HOME ORG/NAME`).
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

COMMIT = "0123456789abcdef0123456789abcdef01234567"
LFS_SUFFIXES = (".safetensors", ".bin", ".model")


def blob_id(data: bytes, lfs: bool) -> str:
    if lfs:
        return hashlib.sha256(data).hexdigest()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lay_out(model: Path, hf_home: Path, repo_id: str, commit: str = COMMIT, ref: str | None = "main") -> Path:
    """Copy model into hf_home's Hub cache as repo_id at commit; returns the snapshot folder."""
    repo = hf_home / "hub" / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    for src in sorted(p for p in Path(model).rglob("*") if p.is_file()):
        rel = src.relative_to(model)
        if any(part.startswith(".") or part == "__pycache__" for part in rel.parts):
            continue
        data = src.read_bytes()
        blob = repo / "blobs" / blob_id(data, src.suffix in LFS_SUFFIXES)
        if not blob.exists():
            blob.write_bytes(data)
        link = snapshot / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    if ref is not None:
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / ref).write_text(commit)
    return snapshot


if __name__ == "__main__":
    print(lay_out(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]))
