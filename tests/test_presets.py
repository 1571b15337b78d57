"""Presets: built-in ones are valid, user ones are found, and the merge order is defaults < preset < flags."""

from __future__ import annotations

import pytest

from videogen import presets
from videogen.cli.options import merge
from videogen.errors import UserError


def test_every_builtin_preset_is_valid():
    names = presets.builtin_names()
    assert "wan2.1-t2v-1.3b" in names and "mini" in names
    for name in names:
        p = presets.load_preset(name)
        assert p.family, name
        assert p.model, name


def test_official_wan_values():
    p = presets.load_preset("wan2.1-t2v-1.3b").values
    assert (p["frames"], p["height"], p["width"], p["fps"], p["flow_shift"]) == (81, 480, 832, 16, 3.0)
    assert presets.load_preset("wan2.1-t2v-14b-720p").values["flow_shift"] == 5.0


def test_user_presets_shadow_and_extend(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    d = tmp_path / "videogen" / "presets"
    d.mkdir(parents=True)
    (d / "mine.yaml").write_text("model: some/model\nsteps: 7\n")
    assert presets.load_preset("mine").values == {"model": "some/model", "steps": 7}
    assert "mine" in presets.all_presets()


def test_merge_order(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("model: org/m\nsteps: 7\nguidance: 2\n")
    spec = merge("a cat", {"steps": 3}, str(f))
    assert (spec.model, spec.steps, spec.guidance) == ("org/m", 3, 2.0)
    record = {"prompt": "old", "spec": {"model": "org/old", "steps": 9, "seed": 5, "frames": 9}}
    spec = merge(None, {}, str(f), record)
    assert (spec.prompt, spec.model, spec.steps, spec.seed, spec.frames) == ("old", "org/m", 7, 5, 9)
    # -m with a preset name means that preset; no model at all means the built-in model's preset
    assert merge("x", {"model": "wan2.1-t2v-1.3b"}, None).frames == 81
    assert merge("x", {}, None).model == "builtin:mini"
    # naming the built-in model brings its defaults too, as leaving it out does; flags still win
    assert merge("x", {"model": "builtin:mini"}, None) == merge("x", {}, None)
    assert merge("x", {"model": "builtin:mini", "steps": 4}, None).steps == 4


@pytest.mark.parametrize("text,message", [
    ("- a\n- b\n", "must be a mapping"),
    ("frames: 1.5\n", "'frames' must be an integer"),
    ("vae_tiling: 1\n", "'vae_tiling' must be true or false"),
    ("offload: cpu\n", "'offload' must be one of"),
    ("prompt: hi\n", "unknown key 'prompt'"),
    ("guidnace: 3\n", "did you mean 'guidance'"),
    ("steps: [\n", "invalid YAML"),
    ("x: &a 1\ny: *a\n", "aliases"),
])
def test_preset_errors_name_file_and_key(tmp_path, text, message):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(UserError) as e:
        presets.load_preset(str(f))
    assert message in str(e.value) and str(f) in str(e.value)
