"""Model cards: shipped for every preset, internally consistent, and shown by `videogen models --card`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import run_cli

ROOT = Path(__file__).resolve().parent.parent
CARDS = ROOT / "videogen" / "presets" / "cards"
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


def card(name: str) -> dict:
    return json.loads((CARDS / f"{name}.json").read_text(encoding="utf-8"))


def test_every_preset_has_a_card():
    presets = {p.stem for p in (ROOT / "videogen" / "presets").glob("*.yaml")}
    assert presets <= {p.stem for p in CARDS.glob("*.json")}


@pytest.mark.parametrize("name", sorted(p.stem for p in CARDS.glob("*.json")))
def test_card_is_consistent(name):
    import yaml

    c = card(name)
    preset = yaml.safe_load((ROOT / "videogen" / "presets" / f"{name}.yaml").read_text(encoding="utf-8"))
    assert c["repo"] == preset["model"]
    assert {"transformer", "vae"} <= set(c["components"])
    for comp, d in c["components"].items():
        assert d["config_source"] and d["disk_dtype_source"], comp
        w = d["weights"]
        assert w["parameters"] >= w["largest_block"] >= 0 and w["parameters"] >= w["outside_blocks"] >= 0
        for f in d["files"]:
            assert f["path"].startswith(f"{comp}/")
            assert f["estimated"] == ("basis" in f)
        if d["disk_dtype"] in DTYPE_BYTES and d["files"][0]["estimated"]:  # estimated: parameters x dtype size
            assert d["files"][0]["bytes"] == w["parameters"] * DTYPE_BYTES[d["disk_dtype"]]
    if name != "mini":
        assert c["download_bytes"] == sum(f["bytes"] for f in c["files"])


def test_card_weights_match_a_fresh_count_of_their_configs():
    """The stored counts are those of the stored configs (a card edited by hand and not recounted fails)."""
    from videogen.plan.cards import load_card
    from videogen.plan.components import weight_stats

    c = load_card("wan2.1-t2v-1.3b")
    for name in ("transformer", "vae"):
        assert weight_stats(c.component(name)) == c.stats(name)


def test_mini_card_lists_the_shipped_files_with_their_real_sizes():
    c = card("mini")
    folder = ROOT / "videogen" / "mini" / "model"
    on_disk = {str(p.relative_to(folder)): p.stat().st_size for p in folder.rglob("*") if p.is_file()}
    assert {f["path"]: f["bytes"] for f in c["files"]} == on_disk
    assert not any(f["estimated"] for f in c["files"])


def test_models_card_shows_parameters_download_and_disk():
    r = run_cli("models", "--card", "wan2.1-t2v-1.3b")
    assert r.code == 0 and r.err == ""
    c = card("wan2.1-t2v-1.3b")
    for comp, d in c["components"].items():
        line = next(x for x in r.out.splitlines() if x.startswith(comp))
        assert f"{d['weights']['parameters'] / 1e9:.2f} B" in line
    assert f"download: {c['download_bytes'] / 2**30:.2f} GiB" in r.out
    assert "disk needed:" in r.out and "(estimated)" in r.out


def test_models_card_of_an_unknown_preset_is_one_line():
    r = run_cli("models", "--card", "wan2.1-t2v-13b")
    assert r.code == 2
    assert r.err.count("\n") == 1 and "wan2.1-t2v-1.3b" in r.err  # the suggestion
