"""The user's paths, walked as a user walks them: `videogen` in a subprocess, configured only by environment
variables (HOME, XDG_CONFIG_HOME, HF_HOME, HF_HUB_OFFLINE) and files. No library internals are patched."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import files_under, one_error_line, run_cli, user_env

from videogen.video import read_frames

PROMPT = "a red circle moving left on a black background"
FAST = ["--steps", "1", "-q"]
BUILTIN = Path(__file__).resolve().parents[1] / "videogen" / "mini" / "model"


def hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    """One render made as a user would: prompt from stdin, a model folder given by a relative path, --json."""
    root = tmp_path_factory.mktemp("user")
    work = root / "work"
    work.mkdir()
    shutil.copytree(BUILTIN, work / "mymodel")
    env = user_env(root)
    r = run_cli("generate", "-", "-m", "mymodel", *FAST, "--seed", "5", "-o", "clip.mp4", "--json", cwd=work,
                env=env, input=PROMPT + "\n", timeout=300)
    assert r.code == 0, r.err
    return root, work, env, json.loads(r.out)


def test_prompt_from_stdin_and_the_record_on_disk_equals_json(first_run):
    _root, work, _env, printed = first_run
    assert printed["prompt"] == PROMPT
    on_disk = json.loads((work / "clip.mp4.json").read_text())
    assert "write" in on_disk["timings"]
    assert on_disk == printed


def test_from_with_a_relative_model_works_from_another_folder_and_checks_the_model(first_run):
    """The model given by a relative path is recorded by its absolute one too: a rerun from another folder finds
    it. A model whose files changed since is refused, saying what differs, before loading, unless the user says to
    go on (the weights are the same here, so the frames are too)."""
    root, work, env, printed = first_run
    assert printed["spec"]["model"] == "mymodel" and printed["model"]["path"] == str(work / "mymodel")
    changed = root / "changed"
    shutil.copytree(work, changed, ignore=shutil.ignore_patterns("*.mp4"))
    index = changed / "mymodel" / "model_index.json"
    index.write_text(json.dumps({**json.loads(index.read_text()), "_note": "edited"}))
    record = json.loads((changed / "clip.mp4.json").read_text())
    record["model"]["path"] = str(changed / "mymodel")  # the record of a render made with the folder before the edit
    (changed / "clip.mp4.json").write_text(json.dumps(record))
    other = root / "other"
    other.mkdir(exist_ok=True)
    line = one_error_line(run_cli("generate", "--from", "../changed/clip.mp4.json", "-o", "x.mp4", cwd=other,
                                  env=env))
    assert "fingerprint" in line and record["model"]["fingerprint"] in line and "--allow-different-model" in line
    assert str(changed / "mymodel") in line
    assert not (other / "x.mp4").exists()
    r = run_cli("generate", "--from", "../changed/clip.mp4.json", "-o", "again.mp4", "--allow-different-model", "-q",
                cwd=other, env=env, timeout=300)
    assert r.code == 0, r.err
    assert "fingerprint" in r.err
    assert np.array_equal(read_frames(work / "clip.mp4")[0], read_frames(other / "again.mp4")[0])


def test_hand_edited_record_top_level_disagreeing_with_spec_is_refused(first_run):
    root, work, env, printed = first_run
    record = json.loads((work / "clip.mp4.json").read_text())
    record["prompt"] = "a blue square moving up on a white background"  # spec.prompt says otherwise
    edited = root / "edited.json"
    edited.write_text(json.dumps(record))
    line = one_error_line(run_cli("generate", "--from", edited, "-o", root / "e.mp4", env=env))
    assert "'prompt'" in line and "spec" in line
    assert not (root / "e.mp4").exists()


def test_record_without_spec_model_keeps_its_own_settings(first_run):
    root, work, env, printed = first_run
    record = json.loads((work / "clip.mp4.json").read_text())
    del record["spec"]["model"]
    record["spec"]["steps"] = record["steps"] = 1
    (root / "nomodel.json").write_text(json.dumps(record))
    r = run_cli("generate", "--from", root / "nomodel.json", "-o", root / "n.mp4", "-q", "--json", env=env,
                timeout=300)
    assert r.code == 0, r.err
    out = json.loads(r.out)
    assert out["spec"]["steps"] == 1 and out["spec"]["model"] == "builtin:mini"


def test_gif_without_its_record_is_one_clear_line(tmp_path):
    from PIL import Image

    gif = tmp_path / "x.gif"
    Image.new("RGB", (8, 8)).save(gif)
    line = one_error_line(run_cli("generate", "--from", gif, env=user_env(tmp_path)))
    assert "GIF" in line and "x.gif.json" in line and "UTF-8" not in line


def test_python_api_matches_the_cli(first_run, tmp_path):
    """videogen.generate, videogen.load(...).generate and Engine.render(RenderSpec(prompt)) use the CLI's
    defaults: same frames as the command line's render, same output file and record."""
    _root, work, env, printed = first_run
    script = f"""
import json, sys, numpy as np
import videogen
from videogen.engine import Engine
from videogen.spec import RenderSpec
from videogen.errors import UserError
r = videogen.generate({PROMPT!r}, "api.mp4", seed=5, steps=1)
engine = videogen.load()
s = engine.generate({PROMPT!r}, "session.mp4", seed=5, steps=1)
e = Engine.load(RenderSpec(prompt="x")).render(RenderSpec(prompt={PROMPT!r}, seed=5, steps=1))
try:
    videogen.generate("x", frames=0)
    bad = None
except UserError as err:
    bad = str(err)
np.save("frames.npy", np.stack([r.frames, s.frames, e.frames]))
json.dump({{"record": r.record, "output": str(r.output), "bad": bad}}, sys.stdout)
"""
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    cli = read_frames(work / "clip.mp4")[0]
    frames = np.load(tmp_path / "frames.npy")
    assert np.array_equal(frames[0], frames[1]) and np.array_equal(frames[0], frames[2])
    assert np.array_equal(read_frames(tmp_path / "api.mp4")[0], cli)  # same settings, same encoded file
    assert out["record"] == json.loads((tmp_path / "api.mp4.json").read_text())
    assert out["record"]["spec"]["guidance"] == printed["spec"]["guidance"]
    assert "--frames" in out["bad"] and "between" in out["bad"]


def test_png_output_never_replaces_a_folder_of_user_files(tmp_path):
    env = user_env(tmp_path)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.txt").write_text("precious")
    (mine / "frame_00000.png").write_bytes(b"not ours")
    before = files_under(mine)
    line = one_error_line(run_cli("generate", PROMPT, "-o", mine, "--overwrite", *FAST, env=env))
    assert "not a videogen PNG render" in line
    assert files_under(mine) == before and (mine / "thesis.txt").read_text() == "precious"
    # The current folder (or one above it) is refused before anything loads.
    line = one_error_line(run_cli("generate", PROMPT, "-o", ".", "--overwrite", *FAST, cwd=mine, env=env))
    assert "current folder" in line and files_under(mine) == before
    line = one_error_line(run_cli("generate", PROMPT, "-o", "..", "--overwrite", *FAST, cwd=mine, env=env))
    assert "current folder" in line and files_under(mine) == before


def test_png_output_over_a_file_named_with_overwrite_leaves_nothing_hidden(tmp_path):
    env = user_env(tmp_path)
    afile = tmp_path / "afile"
    afile.write_text("named with --overwrite")
    r = run_cli("generate", PROMPT, "-o", afile, "--overwrite", *FAST, "--seed", "1", env=env, timeout=300)
    assert r.code == 0, r.err
    assert afile.is_dir() and read_frames(afile)[0].shape == (17, 32, 32, 3)
    assert hidden(tmp_path) == []


def test_output_to_stdout_is_a_streamable_mp4_and_stdout_holds_only_it(tmp_path):
    env = {**os.environ, **user_env(tmp_path)}
    out = tmp_path / "piped.mp4"
    with out.open("wb") as f:
        proc = subprocess.run([Path(sys.executable).with_name("videogen"), "generate", PROMPT, "-o", "-", *FAST,
                               "--seed", "2"], stdout=f, stderr=subprocess.PIPE, env=env, cwd=tmp_path,
                              timeout=300)
    assert proc.returncode == 0, proc.stderr
    data = out.read_bytes()
    assert data[4:8] == b"ftyp" and b"moof" in data  # an MP4, fragmented
    assert read_frames(out)[0].shape == (17, 32, 32, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "piped.mp4"]  # no folder named '-'
    line = one_error_line(run_cli("generate", PROMPT, "-o", "-", "--json", env=env, cwd=tmp_path))
    assert "--json" in line


def test_long_output_name_works_or_is_refused_before_rendering(tmp_path):
    env = user_env(tmp_path)
    longest = "x" * 246 + ".mp4"  # 250 bytes; its record, 255 bytes, is the longest name the folder takes
    dead = tmp_path / ".short.mp4.partial-999999999.mp4"  # left by a process that died while writing
    dead.write_bytes(b"partial")
    r = run_cli("generate", PROMPT, "-o", tmp_path / longest, *FAST, env=env, timeout=300)
    assert r.code == 0, r.err
    assert (tmp_path / longest).is_file() and (tmp_path / (longest + ".json")).is_file()
    too_long = "y" * 248 + ".mp4"  # fits, but its record's name (257 bytes) would not
    line = one_error_line(run_cli("generate", PROMPT, "-o", tmp_path / too_long, *FAST, env=env))
    assert "too long" in line
    import videogen  # the writer is the same for the Python API: no second start-up of torch here

    videogen.generate(PROMPT, tmp_path / "short.mp4", steps=1)
    assert hidden(tmp_path) == []  # the dead process's partial file is gone too


def test_sighup_while_writing_leaves_no_partial_file(tmp_path):
    env = {**os.environ, **user_env(tmp_path)}
    out = tmp_path / "frames"
    proc = subprocess.Popen([Path(sys.executable).with_name("videogen"), "generate", PROMPT, "-o", out, *FAST], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        if any(".partial-" in n for n in hidden(tmp_path)):  # the partial folder exists: frames being written
            proc.send_signal(signal.SIGHUP)
            break
        time.sleep(0.0005)
    _out, err = proc.communicate(timeout=60)
    if proc.returncode == 0:
        pytest.fail("the render finished before the test could interrupt its write; make the output slower")
    assert proc.returncode == 130, err
    assert hidden(tmp_path) == [] and not out.exists()


def _can_mount_tmpfs(where: Path) -> str | None:
    where.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(where)], capture_output=True)
    return None if r.returncode == 0 else (r.stderr.decode(errors="replace").strip() or "mount failed")


def test_disk_full_is_one_line_exit_1_and_no_partial_file(tmp_path):
    small = tmp_path / "small"
    why = _can_mount_tmpfs(small) if shutil.which("mount") else "no mount command"
    if why is not None:
        pytest.skip(f"cannot mount a small tmpfs here to fill it ({why})")
    try:
        fd = os.open(small / "filler", os.O_WRONLY | os.O_CREAT)
        try:  # fill the disk, then free one page: room for the probe, not for the video
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError:
            pass
        os.ftruncate(fd, os.fstat(fd).st_size - 4096)
        os.close(fd)
        before = files_under(small)
        r = run_cli("generate", PROMPT, "-o", small / "clip.gif", *FAST, env=user_env(tmp_path), timeout=300)
        line = one_error_line(r, code=1)
        assert "no space left" in line and "clip.gif" in line
        assert files_under(small) == before
    finally:
        subprocess.run(["umount", str(small)], check=False)


def test_user_presets_do_not_break_the_defaults_and_broken_ones_do_not_break_listing(tmp_path):
    env = user_env(tmp_path)
    presets = Path(env["XDG_CONFIG_HOME"]) / "videogen" / "presets"
    presets.mkdir(parents=True)
    (presets / "mini.yaml").write_text("model: someone/elses-model\nframes: 81\n")  # shadows the built-in preset
    (presets / "fast.yml").write_text("description: one step\nsteps: 1\n")  # .yml, and no model
    (presets / "broken.yaml").write_text("steps: [unclosed\n")
    # No model named: the built-in one with its own defaults (17 frames), not the user's preset called mini.
    r = run_cli("generate", PROMPT, "-p", "fast", "-q", "-o", tmp_path / "b.mp4", "--json", env=env, timeout=300)
    assert r.code == 0, r.err
    spec = json.loads(r.out)["spec"]
    assert spec["steps"] == 1 and spec["frames"] == 17 and spec["model"] == "builtin:mini"
    for command in (["presets", "list"], ["models"]):
        r = run_cli(*command, env=env)
        assert r.code == 0, r.err
        assert "fast" in r.out and "wan2.1-t2v-1.3b" in r.out and "broken" in r.out
        assert "broken.yaml" in r.err and "invalid YAML" in r.err


def test_a_presets_relative_model_is_beside_the_preset_and_errors_name_it(tmp_path):
    env = user_env(tmp_path)
    folder = tmp_path / "project"
    folder.mkdir()
    preset = folder / "p.yaml"
    preset.write_text("model: ./models/missing\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    line = one_error_line(run_cli("generate", PROMPT, "-p", preset, "-o", "x.mp4", cwd=elsewhere, env=env))
    assert str(preset) in line and "key 'model'" in line and str(folder / "models" / "missing") in line


def test_errors_name_where_a_value_came_from(tmp_path, tiny_wan_tubelet):
    env = user_env(tmp_path)
    # The family's default of 81 frames does not suit this model: not reported as a flag the user typed.
    line = one_error_line(run_cli("generate", "a cat", "-m", tiny_wan_tubelet, "--height", "16", "--width", "32",
                                  env=env, cwd=tmp_path))
    assert "frames 81 (the model's default)" in line and "--frames 81" not in line
    preset = tmp_path / "tall.yaml"
    preset.write_text(f"model: {tiny_wan_tubelet}\nheight: 20\nframes: 9\n")
    line = one_error_line(run_cli("generate", "a cat", "-p", preset, env=env, cwd=tmp_path))
    assert f"height 20 (preset {preset}, key 'height')" in line and "--height" not in line
    line = one_error_line(run_cli("generate", "a cat", "-p", preset, "--height", "24", env=env, cwd=tmp_path))
    assert "--height 24" in line


def without_tensor(folder: Path, into: Path, component: str, key: str, rename: str | None = None) -> Path:
    """A copy of a model folder whose `component` weight file lacks the tensor `key` (or holds it as `rename`)."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(folder, into)
    (weights,) = (into / component).glob("*.safetensors")
    tensors = load_file(weights)
    tensor = tensors.pop(key)
    if rename is not None:
        tensors[rename] = tensor
    save_file(tensors, weights, metadata={"format": "pt"})
    return into


@pytest.mark.parametrize("component, key", [
    ("text_encoder", "encoder.block.1.layer.1.DenseReluDense.wo.weight"),  # transformers: filled at random
    ("transformer", "blocks.1.ffn.net.2.bias"),  # diffusers: left on the meta device
])
def test_a_weight_file_without_one_tensor_is_one_line_naming_the_component_and_tensor(tmp_path, tiny_wan,
                                                                                      component, key):
    """A weight file that lacks one of its model's tensors (an incomplete or mismatched download): one line
    naming the component and the tensor, exit 2, no output. Neither library fails on it by itself: diffusers
    leaves the tensor without data (a meta-tensor error much later), transformers fills it with random values."""
    broken = without_tensor(tiny_wan, tmp_path / "model", component, key)
    out = tmp_path / "x.mp4"
    r = run_cli("generate", "a cat", "-m", broken, "--frames", "5", "--height", "16", "--width", "16", "--steps", "1",
                "-q", "-o", out, env=user_env(tmp_path), cwd=tmp_path)
    line = one_error_line(r)
    assert r.code == 2
    assert line == (f"error: {broken}: component '{component}': its weight files lack 1 of its tensors (first: "
                    f"{key}); an incomplete download or the files of another model?"), line
    assert not [name for name in files_under(tmp_path) if "x.mp4" in name]  # no output, no partial file


def _tied_name(t: dict) -> dict:  # T5: the embedding under encoder.embed_tokens (one tensor with shared)
    return {("encoder.embed_tokens.weight" if k == "shared.weight" else k): v for k, v in t.items()}


def _causal_lm(t: dict) -> dict:  # Llama saved from LlamaForCausalLM: "model." prefix, lm_head beside
    return {**{f"model.{k}": v for k, v in t.items()}, "lm_head.weight": t["embed_tokens.weight"].clone()}


def _old_clip(t: dict) -> dict:  # CLIP text encoders as long published: "text_model." prefix, position_ids
    import torch

    ids = torch.arange(t["embeddings.position_embedding.weight"].shape[0])[None]
    return {**{f"text_model.{k}": v for k, v in t.items()}, "text_model.embeddings.position_ids": ids}


@pytest.mark.parametrize("model, component, cls, layout", [
    ("tiny_wan", "text_encoder", "UMT5EncoderModel", _tied_name),
    ("tiny_hunyuan", "text_encoder", "LlamaModel", _causal_lm),
    ("tiny_hunyuan", "text_encoder_2", "CLIPTextModel", _old_clip),
])
def test_text_encoders_in_published_layouts_load_every_tensor(tmp_path, request, model, component, cls, layout):
    """The check above must not refuse a real model: text encoder files laid out as real checkpoints are (tied
    embeddings stored under the other name, a task model's prefix and head, old extra buffers) load, every tensor
    of the model from the file."""
    from safetensors.torch import load_file, save_file

    from videogen.loading import load_component

    folder = tmp_path / "model"
    shutil.copytree(request.getfixturevalue(model), folder)
    (weights,) = (folder / component).glob("*.safetensors")
    tensors = load_file(weights)
    save_file(layout(tensors), weights, metadata={"format": "pt"})
    state = load_component(folder, component, "transformers", cls).state_dict()
    assert set(tensors) <= set(state)
    assert all(bool((state[k] == v).all()) for k, v in tensors.items())
