"""A small Hugging Face Hub on 127.0.0.1 (stdlib http.server in a thread), enough for huggingface_hub's own client:

- GET /api/models/{repo}/revision/{rev}: the commit (`sha`) and file list (`siblings`)
- GET /api/models/{repo}/tree/{rev}?recursive=...: files with size, git oid and LFS sha256/size
- HEAD and GET /{repo}/resolve/{rev}/{path}: ETag, X-Repo-Commit, X-Linked-Etag, X-Linked-Size; Range requests
- errors as the Hub sends them (404 with X-Error-Code RepoNotFound, RevisionNotFound, EntryNotFound)

A repo added with `add` is at `commit` on main; `add_revision` gives it another commit, reachable by that commit and
by the branches or tags named (naming "main" moves main there; the earlier commits stay reachable).

Faults for tests: `drop[path] = n` sends the first n bytes of the next full GET of path and then drops the
connection; `advertise[path] = size` lies about a file's size in the listing; `delay` slows every body chunk.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

COMMIT = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"
LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".model")


@dataclass
class HubFile:
    data: bytes
    lfs: bool

    @property
    def git_oid(self) -> str:
        return hashlib.sha1(b"blob %d\0" % len(self.data) + self.data).hexdigest()

    @property
    def etag(self) -> str:  # the Hub's ETag: the LFS sha256 for LFS files, the git blob id for the others
        return hashlib.sha256(self.data).hexdigest() if self.lfs else self.git_oid


@dataclass
class Hub:
    repos: dict[str, dict[str, HubFile]] = field(default_factory=dict)
    commit: str = COMMIT
    drop: dict[str, int] = field(default_factory=dict)
    advertise: dict[str, int] = field(default_factory=dict)
    delay: float = 0.0
    log: list[tuple[str, str, str | None]] = field(default_factory=list)  # (method, path, Range header)
    started: threading.Event = field(default_factory=threading.Event)  # set when a weights body starts
    url: str = ""
    commits: dict[str, dict[str, dict[str, HubFile]]] = field(default_factory=dict)  # repo -> commit -> files
    refs: dict[str, dict[str, str]] = field(default_factory=dict)  # repo -> branch or tag -> commit

    @staticmethod
    def read(folder: Path, extra: dict[str, bytes] | None = None) -> dict[str, HubFile]:
        files = {p.relative_to(folder).as_posix(): HubFile(p.read_bytes(), p.suffix in LFS_SUFFIXES)
                 for p in sorted(folder.rglob("*")) if p.is_file()}
        for name, data in (extra or {}).items():
            files[name] = HubFile(data, Path(name).suffix in LFS_SUFFIXES)
        return files

    def add(self, repo_id: str, folder: Path, extra: dict[str, bytes] | None = None) -> None:
        self.repos[repo_id] = self.read(folder, extra)

    def add_revision(self, repo_id: str, folder: Path, commit: str, refs: tuple[str, ...] = ()) -> None:
        files = self.read(folder)
        self.commits.setdefault(repo_id, {}).setdefault(self.commit, self.repos[repo_id])
        self.commits[repo_id][commit] = files
        self.refs.setdefault(repo_id, {"main": self.commit}).update(dict.fromkeys(refs, commit))
        if "main" in refs:
            self.repos[repo_id] = files

    def at(self, repo_id: str, rev: str) -> tuple[str, dict[str, HubFile]] | None:
        """(commit, files) of repo_id at a branch, tag or commit; None for a revision it does not have."""
        if repo_id not in self.commits:
            return (self.commit, self.repos[repo_id]) if rev in ("main", self.commit) else None
        commit = self.refs[repo_id].get(rev, rev)
        files = self.commits[repo_id].get(commit)
        return None if files is None else (commit, files)

    def gets(self, path_suffix: str) -> list[str | None]:
        """Range headers of every GET of a file (None for a request of the whole file)."""
        return [r for m, p, r in self.log if m == "GET" and "/resolve/" in p and p.endswith(path_suffix)]


class _Handler(BaseHTTPRequestHandler):
    hub: Hub
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:  # quiet: the test's output is the client's
        pass

    def do_HEAD(self) -> None:  # noqa: N802
        self._serve(body=False)

    def do_GET(self) -> None:  # noqa: N802
        self._serve(body=True)

    def _error(self, status: int, code: str) -> None:
        payload = json.dumps({"error": code}).encode()
        self.send_response(status)
        self.send_header("X-Error-Code", code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _json(self, data: object) -> None:
        payload = json.dumps(data).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _repo(self, parts: list[str]) -> tuple[str, dict[str, HubFile]] | None:
        repo_id = "/".join(parts[:2])
        files = self.hub.repos.get(repo_id)
        if files is None:
            self._error(404, "RepoNotFound")
            return None
        return repo_id, files

    def _at(self, repo_id: str, rev: str) -> tuple[str, dict[str, HubFile]] | None:
        found = self.hub.at(repo_id, rev)
        if found is None:
            self._error(404, "RevisionNotFound")
        return found

    def _serve(self, body: bool) -> None:
        path = unquote(urlsplit(self.path).path)
        self.hub.log.append((self.command, path, self.headers.get("Range")))
        parts = [p for p in path.split("/") if p]
        if parts[:2] == ["api", "models"] and (len(parts) == 4 or len(parts) > 5 and parts[4] in ("revision", "tree")):
            found = self._repo(parts[2:4])
            at = found and self._at(found[0], parts[5] if len(parts) > 5 else "main")
            if not found or not at:
                return
            repo_id, (commit, files) = found[0], at
            if len(parts) == 4 or parts[4] == "revision":
                self._json({"id": repo_id, "sha": commit, "private": False,
                            "siblings": [{"rfilename": name} for name in files]})
            else:
                self._json(self._tree(files))
            return
        if len(parts) >= 5 and parts[2] == "resolve":
            found = self._repo(parts[:2])
            at = found and self._at(found[0], parts[3])
            if not found or not at:
                return
            name = "/".join(parts[4:])
            f = at[1].get(name)
            if f is None:
                self._error(404, "EntryNotFound")
                return
            self._file(name, f, body, at[0])
            return
        self._error(404, "NotFound")

    def _tree(self, files: dict[str, HubFile]) -> list[dict[str, object]]:
        out: list[dict[str, object]] = []
        folders = sorted({"/".join(n.split("/")[:i]) for n in files for i in range(1, n.count("/") + 1)})
        out += [{"type": "directory", "path": d, "oid": hashlib.sha1(d.encode()).hexdigest(), "size": 0}
                for d in folders]
        for name, f in files.items():
            size = self.hub.advertise.get(name, len(f.data))
            entry: dict[str, object] = {"type": "file", "path": name, "oid": f.git_oid, "size": size}
            if f.lfs:
                entry["size"] = 134  # a git LFS pointer's size; the real one is under "lfs"
                entry["lfs"] = {"oid": f.etag, "size": size, "pointerSize": 134}
            out.append(entry)
        return out

    def _file(self, name: str, f: HubFile, body: bool, commit: str) -> None:
        start = 0
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes="):
            start = int(rng[len("bytes="):].split("-")[0] or 0)
        data = f.data[start:]
        self.send_response(206 if start else 200)
        self.send_header("ETag", f'"{f.git_oid}"')
        self.send_header("X-Repo-Commit", commit)
        if f.lfs:
            self.send_header("X-Linked-Etag", f'"{f.etag}"')
            self.send_header("X-Linked-Size", str(len(f.data)))
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(f.data) - 1}/{len(f.data)}")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if not body:
            return
        if f.lfs:
            self.hub.started.set()
        cut = self.hub.drop.pop(name, None) if start == 0 else None
        chunk = 4096
        for i in range(0, len(data) if cut is None else cut, chunk):
            self.wfile.write(data[i: i + chunk if cut is None else min(i + chunk, cut)])
            self.wfile.flush()
            if self.hub.delay:
                time.sleep(self.hub.delay)
        if cut is not None:
            self.close_connection = True
            self.connection.shutdown(2)  # mid-file, as a flaky network does


def serve(hub: Hub) -> ThreadingHTTPServer:
    """Start hub on 127.0.0.1 on a free port (hub.url); stop with .shutdown()."""
    handler = type("Handler", (_Handler,), {"hub": hub})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    hub.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
