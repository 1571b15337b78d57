"""The command line: real renders reopened and checked, reproducible reruns, and every bad input refused cleanly."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import files_under, run_cli, run_inprocess

from videogen.video import read_comment, read_frames

TINY = ["--frames", "9", "--height", "16", "--width", "32", "--steps", "2", "--max-sequence-length", "16"]


def test_mp4_render_in_a_real_process(tiny_wan, tmp_path):
    out = tmp_path / "clip.mp4"
    r = run_cli("generate", "a red cat runs on the beach", "-m", tiny_wan, *TINY, "--seed", "4", "--fps", "12",
                "--guidance", "3", "-o", out)
    assert r.code == 0, r.err
    assert r.out.strip() == str(out)  # stdout carries only the result
    frames, fps = read_frames(out)
    assert frames.shape == (9, 16, 32, 3)
    assert fps == 12
    record = json.loads(Path(str(out) + ".json").read_text())
    embedded = json.loads(read_comment(out))
    assert embedded["seed"] == record["seed"] == 4
    assert embedded["prompt"] == "a red cat runs on the beach"
    for key in ("negative_prompt", "steps", "guidance", "frames", "height", "width", "fps", "model", "family",
                "scheduler", "dtype", "device", "versions", "timings"):
        assert key in record, key
    assert record["model"]["fingerprint"].startswith("sha256")
    assert record["scheduler"]["class"] == "UniPCMultistepScheduler"
    assert set(record["timings"]) >= {"load", "encode", "denoise", "decode"}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left behind


def test_from_record_reproduces_bit_for_bit(tiny_wan, tmp_path, capsys):
    first = tmp_path / "first"
    r = run_inprocess(capsys, "generate", "a blue dog", "-m", tiny_wan, *TINY, "--guidance", "4", "-o", first,
                      "-q")
    assert r.code == 0, r.err
    record = json.loads((first / "run.json").read_text())
    again = tmp_path / "again"
    r2 = run_inprocess(capsys, "generate", "--from", first / "run.json", "-o", again, "-q")
    assert r2.code == 0, r2.err
    a, _ = read_frames(first)
    b, _ = read_frames(again)
    assert a.std() > 0 and np.array_equal(a, b)
    assert json.loads((again / "run.json").read_text())["seed"] == record["seed"]
    # a flag given with --from overrides the record
    other = tmp_path / "other"
    assert run_inprocess(capsys, "generate", "--from", first / "run.json", "--seed",
                         str(record["seed"] + 1), "-o", other, "-q").code == 0
    assert not np.array_equal(a, read_frames(other)[0])


def test_from_an_mp4_reads_its_embedded_record(tiny_wan, tmp_path, capsys):
    mp4 = tmp_path / "a.mp4"
    assert run_inprocess(capsys, "generate", "a cat", "-m", tiny_wan, *TINY, "-o", mp4, "-q").code == 0
    Path(str(mp4) + ".json").unlink()
    r = run_inprocess(capsys, "generate", "--from", mp4, "-o", tmp_path / "b.mp4", "-q", "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["prompt"] == "a cat"
    assert np.array_equal(read_frames(mp4)[0], read_frames(tmp_path / "b.mp4")[0])


@pytest.mark.parametrize("suffix", [".webm", ".gif"])
def test_other_formats(tiny_wan, tmp_path, capsys, suffix):
    out = tmp_path / f"v{suffix}"
    assert run_inprocess(capsys, "generate", "a cat", "-m", tiny_wan, *TINY, "-o", out, "-q").code == 0
    frames, _ = read_frames(out)
    assert frames.shape == (9, 16, 32, 3)
    assert Path(str(out) + ".json").is_file()


def test_default_output_never_overwrites(tiny_wan, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["generate", "A Red/Cat: ../on the beach!", "-m", tiny_wan, *TINY, "--seed", "3", "-q"]
    first = run_inprocess(capsys, *args)
    second = run_inprocess(capsys, *args)
    assert first.code == second.code == 0
    assert first.out.strip() == "outputs/a-red-cat-on-the-beach-s3.mp4"
    assert second.out.strip() == "outputs/a-red-cat-on-the-beach-s3-1.mp4"


def test_existing_output_is_kept_without_overwrite(tiny_wan, tmp_path, capsys):
    out = tmp_path / "keep.mp4"
    out.write_bytes(b"precious")
    r = run_inprocess(capsys, "generate", "a cat", "-m", tiny_wan, *TINY, "-o", out)
    assert r.code == 2 and "--overwrite" in r.err
    assert out.read_bytes() == b"precious"
    r = run_inprocess(capsys, "generate", "a cat", "-m", tiny_wan, *TINY, "-o", out, "--overwrite", "-q")
    assert r.code == 0
    assert read_frames(out)[0].shape[0] == 9


def _bad_models(tmp_path: Path, tiny_wan: Path) -> dict[str, Path]:
    not_diffusers = tmp_path / "not-diffusers"
    not_diffusers.mkdir()
    (not_diffusers / "weights.safetensors").write_bytes(b"")
    pickled = tmp_path / "pickled"
    shutil.copytree(tiny_wan, pickled)
    for f in (pickled / "transformer").glob("*.safetensors"):
        f.rename(f.with_name("diffusion_pytorch_model.bin"))
    custom = tmp_path / "custom"
    shutil.copytree(tiny_wan, custom)
    index = json.loads((custom / "model_index.json").read_text())
    index["transformer"] = ["my_remote_module", "EvilTransformer"]
    (custom / "model_index.json").write_text(json.dumps(index))
    unsupported = tmp_path / "unsupported"
    shutil.copytree(tiny_wan, unsupported)
    index = json.loads((unsupported / "model_index.json").read_text())
    index["_class_name"] = "StableDiffusionPipeline"
    (unsupported / "model_index.json").write_text(json.dumps(index))
    return {"not-diffusers": not_diffusers, "pickled": pickled, "custom": custom, "unsupported": unsupported}


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def bad_inputs(tmp_path: Path, tiny_wan: Path) -> list[tuple[list[str], str]]:
    models = _bad_models(tmp_path, tiny_wan)
    typo = _write(tmp_path / "typo.yaml", f"model: {tiny_wan}\nstesp: 4\n")
    wrong_type = _write(tmp_path / "type.yaml", f"model: {tiny_wan}\nsteps: many\n")
    out_of_range = _write(tmp_path / "range.yaml", f"model: {tiny_wan}\nguidance: -3\n")
    alias = _write(tmp_path / "alias.yaml", "a: &x [1, 2]\nb: *x\n")
    not_file = tmp_path / "a-file"
    not_file.write_text("x")
    m = ["-m", str(tiny_wan)]
    return [
        (["-p", "wan2.1-t2v-1.3", *m], "did you mean 'wan2.1-t2v-1.3b'"),
        (["-p", str(typo)], "unknown key 'stesp' (did you mean 'steps'?)"),
        (["-p", str(wrong_type)], "'steps' must be an integer"),
        (["-p", str(out_of_range)], "'guidance' must be between"),
        (["-p", str(alias)], "aliases"),
        ([*m, *TINY[:2], "--frames", "8"], "use 5 or 9"),
        ([*m, "--frames", "9", "--height", "20", "--width", "16"], "--height 20 is not a multiple of 16: use 16 or 32"),
        (["-m", str(tmp_path / "missing")], "model folder not found"),
        (["-m", str(models["not-diffusers"])], "no model_index.json"),
        (["-m", str(models["pickled"])], "only in pickle format"),
        (["-m", str(models["custom"])], "no remote code"),
        (["-m", str(models["unsupported"])], "supported: wan"),
        ([*m, *TINY, "-o", str(not_file / "x.mp4")], "cannot write to output folder"),
        ([*m, *TINY, "-o", str(tmp_path / "x.avi")], "unsupported output type"),
        ([*m, *TINY, "--steps", "0"], "'steps' must be between"),
        ([*m, *TINY, "--image", str(tmp_path / "none.png")], "text-to-video only"),
        ([*m, *TINY, "--scheduler", "ddim"], "unknown scheduler"),
        ([*m, *TINY, "--device", "cuda"], "no CUDA GPU"),
        ([*m, "--frames", "x"], "--frames: must be an integer, not 'x'"),
        ([*m, "--guidance", "1.x"], "--guidance: must be a number, not '1.x'"),
        ([*m, "--dtype", "float8"], "--dtype: 'float8' is not one of 'auto', 'float32', 'bfloat16', 'float16'"),
        ([*m, "--seed", "-1"], "'seed' must be between 0 and 9223372036854775807, not -1"),
    ]


def test_bad_input_is_one_line_exit_2_and_writes_nothing(tiny_wan, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cases = bad_inputs(tmp_path, tiny_wan)
    before = files_under(tmp_path)
    for args, expected in cases:
        r = run_inprocess(capsys, "generate", "a cat", *args)
        lines = r.err.strip().splitlines()
        assert r.code == 2, (args, r.err)
        assert len(lines) == 1 and lines[0].startswith("error: "), (args, r.err)
        assert expected in lines[0], (args, lines[0])
        assert "Traceback" not in r.err and r.out == ""
    assert files_under(tmp_path) == before


def test_bad_input_in_a_real_process(tmp_path):
    r = run_cli("generate", "a cat", "--frames", "x", cwd=tmp_path)
    assert r.code == 2 and r.err == "error: --frames: must be an integer, not 'x'\n", r.err
    assert files_under(tmp_path) == set()


def test_uncached_hub_id_offline_says_how_to_fetch(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    r = run_inprocess(capsys, "generate", "a cat", "-m", "someone/some-video-model")
    assert r.code == 2
    assert "videogen download someone/some-video-model" in r.err and len(r.err.strip().splitlines()) == 1


def test_hub_id_resolves_from_the_local_cache(tiny_wan, tmp_path, monkeypatch):
    """A Hub id found in HF_HOME's cache loads offline, and the record names its revision."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hf" / "hub" / "models--org--tiny-wan"
    shutil.copytree(tiny_wan, repo / "snapshots" / commit)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    from videogen.loading import resolve_model

    src = resolve_model("org/tiny-wan")
    assert src.revision == commit and src.hub_id == "org/tiny-wan"
    assert src.fingerprint == resolve_model(str(tiny_wan)).fingerprint


def test_help_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys; from videogen.cli.main import app; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
    r = run_cli("--help")
    assert r.code == 0 and "generate" in r.out


def test_presets_and_models_commands(capsys):
    r = run_inprocess(capsys, "presets", "list")
    assert r.code == 0 and "wan2.1-t2v-1.3b" in r.out and "Wan-AI/Wan2.1-T2V-1.3B-Diffusers" in r.out
    r = run_inprocess(capsys, "presets", "show", "wan2.1-t2v-14b-720p")
    assert r.code == 0 and "height: 720" in r.out
    r = run_inprocess(capsys, "models")
    assert r.code == 0 and "wan" in r.out and "wan2.1-t2v-1.3b" in r.out


def test_every_spec_field_is_declared_once_and_every_place_agrees():
    """spec.py declares each field (type, range, help, kind); the CLI options, the engine key and the batch
    command are built from it, so that a new field cannot be half-added."""
    import inspect
    import typing

    from videogen import engine, spec
    from videogen.cli.batch import NOT_RENDER, OutputFormat
    from videogen.cli.main import generate
    from videogen.video import FORMATS

    decl = spec.declarations()
    params = inspect.signature(generate, eval_str=True).parameters
    cli_fields = {n for n in params if n not in NOT_RENDER}
    assert cli_fields == {n for n, d in decl.items() if d["flag"]}
    for name in cli_fields:
        option = typing.get_args(params[name].annotation)[1]
        assert option.help == decl[name]["help"], name
        choices = spec.spec_field_types()[name]
        if isinstance(choices, tuple):  # a Literal: the CLI's choices are the same strings
            assert tuple(e.value for e in typing.get_args(typing.get_args(params[name].annotation)[0])[0]) == choices
    assert tuple(n for n, d in decl.items() if d["kind"] == "engine") == engine.ENGINE_FIELDS
    base = spec.RenderSpec(prompt="x")
    for name in engine.ENGINE_FIELDS:  # a change in any engine field needs another engine
        other = {"model": "elsewhere", "device": "cpu", "attention": "sdpa"}.get(name)
        value = getattr(base, name)
        if other is None:
            kinds = spec.spec_field_types()[name]
            other = ((not value) if kinds is bool else 1.0 if kinds is float else "other" if kinds is str
                     else [c for c in kinds if c != value][0])
        assert engine.engine_key(base) != engine.engine_key(base.replace(**{name: other})), name
    for name, (lo, hi) in spec.RANGES.items():
        assert decl[name]["range"] == (lo, hi)
    assert [f.value for f in OutputFormat] == list(FORMATS)


def test_settings_merge_labels_where_each_value_came_from(tmp_path):
    from videogen.settings import merge

    preset = tmp_path / "p.yaml"
    preset.write_text("steps: 3\nguidance: 4\n")
    record = {"prompt": "a", "spec": {"prompt": "a", "steps": 9, "frames": 17, "seed": 1}}
    spec = merge(None, {"guidance": 5.0}, str(preset), record, where="r.json",
                 labels={"guidance": "prompts.jsonl line 3"})
    assert (spec.steps, spec.guidance, spec.frames, spec.seed) == (3, 5.0, 17, 1)
    where = spec.extras["where"]
    assert where["guidance"] == "prompts.jsonl line 3" and where["frames"] == "run record r.json"
    assert where["steps"] == f"preset {preset}, key 'steps'"


def test_relabel_names_a_records_value_but_leaves_advice_alone():
    from videogen.engine import relabel
    from videogen.settings import merge

    spec = merge("x", {"height": 20}, None, {"spec": {"prompt": "x", "device": "cuda", "frames": 8}}, where="r.json")
    assert relabel("--device cuda: no GPU; use --device cpu", spec) == \
        "device cuda (run record r.json): no GPU; use --device cpu"
    assert relabel("wan: --frames 8 is odd; --height 20 too", spec) == \
        "wan: frames 8 (run record r.json) is odd; --height 20 too"
