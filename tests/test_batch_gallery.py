"""The batch gallery (`index.html` in the output folder), opened from file:// in headless Chromium as a user opens
it: it loads with no console error, shows every item with its state, and its videos play."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from urllib.parse import unquote

import pytest
from browser import Browser, chromium, file_url
from cli_helpers import run_cli

ENV = {"OMP_NUM_THREADS": "1"}


@pytest.fixture
def broken_model(tiny_wan, tmp_path) -> Path:
    """A copy of the tiny model whose transformer weights are all NaN: every check before loading passes (the
    files are whole), and the render fails at run time."""
    import torch
    from safetensors.torch import load_file, save_file

    copy = tmp_path / "broken-model"
    shutil.copytree(tiny_wan, copy)
    for weights in (copy / "transformer").glob("*.safetensors"):
        tensors = {k: torch.full_like(v, float("nan")) for k, v in load_file(weights).items()}
        save_file(tensors, weights)
    return copy


@pytest.fixture
def rendered(tiny_wan, broken_model, tmp_path) -> Path:
    lines = [{"prompt": "a red cat <b>runs</b> & jumps"}, {"prompt": "a blue dog", "seed": 3, "steps": 2},
             {"prompt": "a broken model", "model": str(broken_model)}]
    (tmp_path / "p.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    res = run_cli("batch", "p.jsonl", "-o", "out", "-q", "-m", tiny_wan, "--frames", "9", "--height", "16",
                  "--width", "16", "--steps", "1", cwd=tmp_path, env=ENV, timeout=300)
    assert res.code == 1, res.err  # the item of the broken model failed; the others are done
    return tmp_path / "out"


def test_gallery_in_chromium(rendered):
    exe = chromium()
    if exe is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium); .ci/run installs it")
    index = rendered / "index.html"
    assert index.is_file()
    browser = Browser(exe)
    try:
        browser.open(file_url(index))
        cards = browser.evaluate("""[...document.querySelectorAll("figure.item")].map(f => ({
            state: f.dataset.state, prompt: f.querySelector(".prompt").textContent,
            error: (f.querySelector(".error") || {}).textContent || "",
            settings: f.querySelector("dl").textContent,
            links: [...f.querySelectorAll("a")].map(a => [a.className, a.href]),
            poster: (f.querySelector("video") || {}).poster || ""}))""")
        assert [(c["state"], c["prompt"]) for c in cards] == [
            ("done", "a red cat <b>runs</b> & jumps"), ("done", "a blue dog"), ("failed", "a broken model")]
        assert "NaN" in cards[2]["error"] and not cards[2]["links"]
        assert "seed3" in cards[1]["settings"].replace(" ", "") and "steps2" in cards[1]["settings"]
        for card in cards[:2]:
            kinds = dict(card["links"])
            video, rec = (Path(unquote(kinds[k].removeprefix("file://"))) for k in ("video", "record"))
            assert video.is_file() and video.suffix == ".mp4" and json.loads(rec.read_text())["prompt"] == card["prompt"]
            assert Path(unquote(card["poster"].removeprefix("file://"))).is_file()
        # A thumbnail plays on hover; a video really plays (Debian's Chromium decodes H.264).
        played = browser.evaluate("""(async () => {
            const v = document.querySelector("video");
            v.dispatchEvent(new MouseEvent("mouseenter"));
            const start = performance.now();
            while (v.currentTime === 0 && performance.now() - start < 20000) {
                await new Promise(r => setTimeout(r, 50));
            }
            return {time: v.currentTime, paused: v.paused, width: v.videoWidth, height: v.videoHeight,
                    error: v.error && v.error.code, h264: v.canPlayType('video/mp4; codecs="avc1.42E01E"')};
        })()""")
        assert played["time"] > 0 and not played["paused"] and played["error"] is None, played
        assert (played["width"], played["height"]) == (16, 16) and played["h264"] == "probably"
        assert browser.problems() == []
    finally:
        browser.close()


def test_gallery_shows_pending_items_and_every_state(tmp_path):
    """In-process, in addition: an item with no manifest line yet is pending; the page names its lines."""
    from videogen.batch import Entry, build_plan
    from videogen.batch.gallery import Gallery
    from videogen.spec import RenderSpec

    items = build_plan([Entry("p.txt:1", "a red cat", {}), Entry("p.txt:2", "a dog", {})],
                       lambda prompt, fields: RenderSpec(prompt=prompt, **fields), tmp_path)
    page = Gallery(tmp_path, items, "p.txt").render()
    assert page.count('data-state="pending"') == 2 and "p.txt:2" in page and "0 done, 0 failed, 2 pending" in page
