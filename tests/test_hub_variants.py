"""Weights variants (fp16, bf16) on the user's path: chosen with --variant, used with a note when a folder holds
nothing else, loaded for real (other weights, other frames), and named in the run record."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from cli_helpers import run_cli
from test_hub_cache import TINY

from videogen.video import read_frames


def _add_halved_variant(folder: Path, variant: str, keep_plain: bool) -> None:
    """Beside each weights file, `name.<variant>.safetensors` holding the weights halved (other, valid weights)."""
    from safetensors.torch import load_file, save_file

    for path in sorted(folder.rglob("*.safetensors")):
        save_file({k: v / 2 for k, v in load_file(path).items()},
                  path.with_name(f"{path.stem}.{variant}.safetensors"))
        if not keep_plain:
            path.unlink()


def _render_api(tmp_path: Path, name: str, **settings: str) -> tuple[np.ndarray, dict]:
    """The same render through the Python API, in this process (no second start-up of torch and diffusers)."""
    import videogen

    flags = dict(zip(TINY[::2], TINY[1::2], strict=True))
    result = videogen.generate("a red cat runs", tmp_path / f"{name}.mp4", seed=5, **settings,
                               **{k.removeprefix("--").replace("-", "_"): int(v) for k, v in flags.items()})
    return read_frames(result.output)[0], json.loads(Path(f"{result.output}.json").read_text())


def _render(tmp_path: Path, name: str, *args: str) -> tuple[np.ndarray, dict, str]:
    out = tmp_path / f"{name}.mp4"
    r = run_cli("generate", "a red cat runs", *TINY, "--seed", "5", "-o", out, *args, cwd=tmp_path)
    assert r.code == 0, r.err
    return read_frames(out)[0], json.loads(Path(f"{out}.json").read_text()), r.err


def test_variants_are_chosen_loaded_and_recorded(tiny_wan, tmp_path):
    mixed, only = tmp_path / "mixed", tmp_path / "only-fp16"
    shutil.copytree(tiny_wan, mixed)
    _add_halved_variant(mixed, "fp16", keep_plain=True)
    shutil.copytree(tiny_wan, only)
    _add_halved_variant(only, "fp16", keep_plain=False)

    plain, rec_plain = _render_api(tmp_path, "plain", model=str(mixed))
    fp16, rec_fp16 = _render_api(tmp_path, "fp16", model=str(mixed), variant="fp16")
    auto, rec_auto, err = _render(tmp_path, "auto", "-m", str(only))  # the command, with its note on stderr
    assert rec_plain["model"]["variant"] is None
    assert rec_fp16["model"]["variant"] == rec_auto["model"]["variant"] == "fp16"
    assert rec_fp16["spec"]["variant"] == "fp16" and rec_plain["spec"]["variant"] is None  # what --from re-reads
    assert "has only fp16 weights: using variant fp16" in err  # the note, on stderr
    assert np.abs(plain.astype(int) - fp16.astype(int)).max() > 10  # the variant's weights were loaded
    assert np.array_equal(fp16, auto)  # the same weights, asked for or found alone


def test_a_variant_the_folder_lacks_is_refused_before_loading(tiny_wan, tmp_path):
    r = run_cli("generate", "a cat", "-m", tiny_wan, *TINY, "--variant", "bf16", "-o", tmp_path / "a.mp4")
    lines = r.err.strip().splitlines()
    assert r.code == 2 and len(lines) == 1 and "no component has bf16 weights" in lines[0], r.err
    r = run_cli("generate", "a cat", "-m", tiny_wan, *TINY, "--variant", "int4", "-o", tmp_path / "a.mp4")
    assert r.code == 2 and "--variant int4: unknown weights variant" in r.err
    assert not (tmp_path / "a.mp4").exists()
