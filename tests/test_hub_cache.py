"""Hub ids and Hub cache folders on the user's path: a real `videogen` process configured only by HF_HOME and
HF_HUB_OFFLINE, against a cache laid out as huggingface_hub lays it out (tests/hub_cache.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hub_cache import COMMIT, lay_out

TINY = ["--frames", "5", "--height", "16", "--width", "32", "--steps", "1", "--max-sequence-length", "16"]
REPO = "org/tiny-wan"


def clean_env(hf_home: Path, **extra: str) -> dict[str, str]:
    """Only what a user's shell would set: no variable of the test process leaks in."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(hf_home.parent), "HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": str(Path(__file__).resolve().parents[1]), **extra}
    return env


def videogen(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("videogen")
    return subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


def one_error_line(r: subprocess.CompletedProcess) -> str:
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2, r.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr  # no library log lines, no traceback
    return lines[0]


@pytest.fixture
def cache(tiny_wan, tmp_path) -> tuple[Path, Path]:
    hf_home = tmp_path / "hf"
    return hf_home, lay_out(tiny_wan, hf_home, REPO)


def test_hub_id_renders_offline_from_the_cache(cache, tmp_path):
    """`-m org/name` in a fresh process (huggingface_hub 2.x imports no submodule for us) renders from HF_HOME,
    and the record names the hub id and the commit."""
    hf_home, snapshot = cache
    out = tmp_path / "clip.mp4"
    r = videogen("generate", "a red cat", "-m", REPO, *TINY, "--seed", "1", "-o", out, env=clean_env(hf_home),
                 cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    record = json.loads(Path(f"{out}.json").read_text())
    model = record["model"]
    assert model["hub_id"] == REPO and model["revision"] == COMMIT
    assert model["path"] == str(snapshot)
    assert record["spec"]["revision"] == COMMIT  # what --from re-reads: the commit, not "main"

    # --from that record, after main moved on to another commit: the recorded commit renders again.
    other = "f" * 40
    shutil.copytree(snapshot, snapshot.parent / other, symlinks=True)
    (snapshot.parent.parent / "refs" / "main").write_text(other)
    shutil.rmtree(snapshot.parent / other / "vae")  # main's new snapshot would not even load
    again = tmp_path / "again.mp4"
    r = videogen("generate", "--from", f"{out}.json", "-o", again, env=clean_env(hf_home), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(Path(f"{again}.json").read_text())["model"]["revision"] == COMMIT


def test_snapshot_folder_as_path_is_recorded_with_its_hub_id(cache, tmp_path):
    hf_home, snapshot = cache
    out = tmp_path / "clip.mp4"
    r = videogen("generate", "a red cat", "-m", snapshot, *TINY, "--seed", "1", "-o", out, env=clean_env(hf_home),
                 cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    model = json.loads(Path(f"{out}.json").read_text())["model"]
    assert (model["hub_id"], model["revision"], model["ref"]) == (REPO, COMMIT, str(snapshot))


def test_revision_of_a_cached_hub_id(cache, tmp_path):
    """--revision names a ref or a commit of the cache; an unknown one says what to run."""
    hf_home, _snapshot = cache
    out = tmp_path / "clip.mp4"
    r = videogen("generate", "a cat", "-m", REPO, "--revision", COMMIT, *TINY, "-o", out, env=clean_env(hf_home),
                 cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(Path(f"{out}.json").read_text())["model"]["revision"] == COMMIT
    r = videogen("generate", "a cat", "-m", REPO, "--revision", "v2", *TINY, "-o", tmp_path / "b.mp4",
                 env=clean_env(hf_home), cwd=tmp_path)
    line = one_error_line(r)
    assert "refs/v2" in line and f"videogen download {REPO} --revision v2" in line
    assert not (tmp_path / "b.mp4").exists()


def test_uncached_hub_id_offline_says_what_to_run(tmp_path):
    r = videogen("generate", "a cat", "-m", "someone/video-model", env=clean_env(tmp_path / "hf"), cwd=tmp_path)
    line = one_error_line(r)
    assert "videogen download someone/video-model" in line and "HF_HUB_OFFLINE" in line


def _blob(snapshot: Path, rel: str) -> Path:
    link = snapshot / rel
    return (link.parent / os.readlink(link)).resolve()


def _truncate(snapshot: Path) -> str:
    blob = _blob(snapshot, "transformer/diffusion_pytorch_model.safetensors")
    blob.write_bytes(blob.read_bytes()[: blob.stat().st_size // 2])
    return "transformer/diffusion_pytorch_model.safetensors: is truncated"


def _dangling(snapshot: Path) -> str:
    _blob(snapshot, "vae/diffusion_pytorch_model.safetensors").unlink()
    return "vae/diffusion_pytorch_model.safetensors: a link to a missing blob"


def _no_refs(snapshot: Path) -> str:
    shutil.rmtree(snapshot.parent.parent / "refs")
    return "refs/main: missing"


BROKEN = {"truncated safetensors": _truncate, "dangling blob link": _dangling, "snapshot without refs": _no_refs}


@pytest.mark.parametrize("how", sorted(BROKEN))
def test_broken_cache_is_one_line_naming_the_file_and_the_fix(cache, tmp_path, how):
    hf_home, snapshot = cache
    expected = BROKEN[how](snapshot)
    r = videogen("generate", "a cat", "-m", REPO, *TINY, "-o", tmp_path / "a.mp4", env=clean_env(hf_home),
                 cwd=tmp_path)
    line = one_error_line(r)
    assert expected in line and f"videogen download {REPO}" in line
    assert not (tmp_path / "a.mp4").exists()


def test_missing_shard_of_a_sharded_model(tiny_wan, tmp_path):
    """Sharded weights with an index render; one shard gone is named, with the command that fetches it."""
    from diffusers import WanTransformer3DModel

    model = tmp_path / "sharded"
    shutil.copytree(tiny_wan, model)
    shutil.rmtree(model / "transformer")
    WanTransformer3DModel.from_pretrained(tiny_wan / "transformer").save_pretrained(
        model / "transformer", max_shard_size="20KB")
    shards = sorted((model / "transformer").glob("*-of-*.safetensors"))
    assert len(shards) > 1 and (model / "transformer" / "diffusion_pytorch_model.safetensors.index.json").exists()
    hf_home = tmp_path / "hf"
    snapshot = lay_out(model, hf_home, REPO)
    out = tmp_path / "whole.mp4"
    r = videogen("generate", "a cat", "-m", REPO, *TINY, "--seed", "3", "-o", out, env=clean_env(hf_home),
                 cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    (snapshot / "transformer" / shards[1].name).unlink()
    r = videogen("generate", "a cat", "-m", REPO, *TINY, "-o", tmp_path / "b.mp4", env=clean_env(hf_home),
                 cwd=tmp_path)
    line = one_error_line(r)
    assert f"transformer/{shards[1].name}: missing shard" in line and f"videogen download {REPO}" in line


def test_repo_folder_given_instead_of_its_snapshot(cache, tmp_path):
    hf_home, snapshot = cache
    repo = snapshot.parent.parent
    r = videogen("generate", "a cat", "-m", repo, *TINY, env=clean_env(hf_home), cwd=tmp_path)
    line = one_error_line(r)
    assert str(repo) in line and f"-m {REPO}" in line and "snapshots" in line
