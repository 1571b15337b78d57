"""--preview, --trace, --trace-fast and the end-of-render summary, walked as a user walks them."""

from __future__ import annotations

import base64
import hashlib
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import run_cli
from PIL import Image

from videogen.engine import Engine
from videogen.preview_factors import WAN21
from videogen.sampling import sample
from videogen.spec import BUILTIN_MODEL, RenderSpec

TINY = ["--frames", "9", "--height", "16", "--width", "16"]  # tiny Wan: 3 latent frames of 2x2
PROMPT = "a red cat runs on the beach"
RENDER_TIMEOUT = 400  # a render takes seconds, but minutes on a CPU shared with other jobs


@pytest.fixture(autouse=True)
def _denormals_back():
    """Engine.load flushes denormals process-wide (for speed); put that back, so that tests after these
    (hypothesis draws subnormal floats) do not depend on the order they run in."""
    yield
    torch.set_flush_denormal(False)


def expected_image(latents: torch.Tensor, matrix: list[list[float]], bias: list[float]) -> np.ndarray:
    """The preview, computed here from scratch: RGB = z . M + b in [-1, 1], tiles scaled up to >= 64 px,
    frames in a grid of ceil(sqrt(F)) columns."""
    z = latents[0].double().numpy()  # [C,F,h,w]
    rgb = np.einsum("cfhw,ck->fhwk", z, np.array(matrix)) + np.array(bias)
    frames = np.clip(np.round((rgb + 1) * 127.5), 0, 255).astype(np.uint8)
    f, h, w, _ = frames.shape
    k = max(1, math.ceil(64 / min(h, w)))
    frames = frames.repeat(k, 1).repeat(k, 2)
    cols = math.ceil(math.sqrt(f))
    out = np.zeros((math.ceil(f / cols) * h * k, cols * w * k, 3), np.uint8)
    for i, fr in enumerate(frames):
        r, c = divmod(i, cols)
        out[r * h * k:(r + 1) * h * k, c * w * k:(c + 1) * w * k] = fr
    return out


def final_latents(record: dict) -> torch.Tensor:
    """The render's final latents, sampled again in-process from the run record's resolved spec."""
    spec = RenderSpec(**record["spec"])
    engine = Engine.load(spec)
    cond, uncond = engine.model.encode(spec)
    with torch.inference_mode():
        return sample(engine.model.plan(spec, cond, uncond))


def read_video(path: Path) -> np.ndarray:
    import imageio.v3 as iio

    return np.stack(list(iio.imiter(path, plugin="FFMPEG")))


def test_tiny_model_preview_is_the_last_estimate_and_trace_has_a_frame_per_step(tiny_wan_euler, tmp_path):
    steps = 3
    for name in ("p.png", "t.mp4", "t-sheet.png"):  # a previous run's, replaced because --overwrite is given
        (tmp_path / name).write_bytes(b"old")
    r = run_cli("generate", PROMPT, "-m", tiny_wan_euler, *TINY, "--steps", str(steps), "--seed", "4",
                "-o", tmp_path / "v.mp4", "--preview", tmp_path / "p.png", "--trace", tmp_path / "t.mp4",
                "--trace-fast", "--json", "--overwrite", cwd=tmp_path, timeout=RENDER_TIMEOUT,
                env={"TERM": "xterm-kitty"})
    assert r.code == 0, r.err
    assert "\x1b_G" not in r.err  # stderr is a pipe here: no terminal pictures in logs, whatever TERM says
    record = json.loads(r.out)
    preview = np.asarray(Image.open(tmp_path / "p.png").convert("RGB"))
    assert preview.shape == (128, 128, 3)  # 3 latent frames of 2x2, tiles of 64: a 2x2 grid
    # Euler's last step lands on its own x0 estimate, so the last preview is the final latents through the factors
    want = expected_image(final_latents(record), WAN21[1], WAN21[2])
    assert np.abs(preview.astype(int) - want).max() <= 1
    assert preview.std() > 0  # not a blank picture
    trace = read_video(tmp_path / "t.mp4")
    assert trace.shape[:3] == (steps, 128, 128)
    assert np.abs(trace[-1].astype(int) - want).mean() < 12  # H.264 at crf 20: close, not exact
    sheet = Image.open(tmp_path / "t-sheet.png")
    assert sheet.size == (3 * 66 - 2, steps * 66 - 2)  # frames across, steps down, 2 px between tiles
    last_row = np.asarray(sheet.convert("RGB"))[-64:]
    assert np.array_equal(last_row[:, :64], want[:64, :64])  # the last step's first frame
    assert record["watch"]["trace"]["steps"] == steps
    assert f"{steps} steps in" in r.err and "s/step" in r.err
    assert "preview: " in r.err and "p.png" in r.err and "t.mp4" in r.err and "t-sheet.png" in r.err


def test_builtin_model_trace_is_decoded_by_its_vae(tmp_path):
    steps = 2
    r = run_cli("generate", "a red circle moving left on a black background", "--steps", str(steps), "--seed", "3",
                "-o", tmp_path / "v.mp4", "--preview", tmp_path / "p.png", "--trace", tmp_path / "t.mp4",
                "--json", "-q", cwd=tmp_path, timeout=RENDER_TIMEOUT)
    assert r.code == 0, r.err
    assert "done:" not in r.err  # --quiet: no summary either
    record = json.loads(r.out)
    assert record["model"] and record["spec"]["model"] == BUILTIN_MODEL
    preview = Image.open(tmp_path / "p.png")
    assert preview.size == (5 * 64, 4 * 64)  # 17 latent frames of 8x8, tiles of 64: 5 columns, 4 rows
    fitted = json.loads((Path(__file__).parents[1] / "videogen/mini/latent_rgb.json").read_text())
    want = expected_image(final_latents(record), fitted["factors"], fitted["bias"])
    # UniPC's last (first-order) step is its x0 estimate too
    assert np.abs(np.asarray(preview.convert("RGB")).astype(int) - want).max() <= 1
    trace = read_video(tmp_path / "t.mp4")
    assert trace.shape[:3] == (steps, 4 * 64, 5 * 64)
    sheet = Image.open(tmp_path / "t-sheet.png")
    assert sheet.size == (17 * 66 - 2, steps * 66 - 2)
    # the last step's estimate decoded by the VAE is the video itself: compare the sheet with the written video
    from videogen.video import read_frames

    video, _ = read_frames(tmp_path / "v.mp4")
    tile = np.asarray(sheet.convert("RGB"))[-64:, :64].astype(int)
    first = np.asarray(Image.fromarray(video[0]).resize((64, 64), Image.NEAREST)).astype(int)
    assert np.abs(tile - first).mean() < 12  # the MP4 is lossy; a wrong frame differs by far more


@pytest.fixture()
def broken_model(tiny_wan, tmp_path) -> Path:
    """The tiny model with garbage weights: a refusal that comes first proves it came before loading."""
    folder = tmp_path / "broken"
    shutil.copytree(tiny_wan, folder)
    for f in folder.rglob("*.safetensors"):
        f.write_bytes(b"not a safetensors file")
    return folder


@pytest.mark.parametrize("extra,needle", [
    (["--preview", "missing/p.png"], "--preview missing/p.png: folder not found"),
    (["--preview", "taken.png"], "--preview taken.png: file exists"),
    (["--trace", "taken.png"], "--trace taken.png: the file must end in .mp4"),
    (["--trace-fast"], "--trace-fast needs --trace"),
    (["--trace", "v.mp4"], "is also the -o/--output path"),
    (["--trace", "x.mp4"], "contact sheet x-sheet.png exists"),
])
def test_bad_preview_and_trace_paths_are_refused_before_loading(broken_model, tmp_path, extra, needle):
    (tmp_path / "taken.png").write_bytes(b"mine")
    (tmp_path / "taken.mp4").write_bytes(b"mine too")
    (tmp_path / "x-sheet.png").write_bytes(b"and mine")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    r = run_cli("generate", PROMPT, "-m", broken_model, *TINY, "-o", "v.mp4", *extra, cwd=tmp_path)
    assert r.code == 2, r.err
    assert needle in r.err and "Traceback" not in r.err and "cannot load" not in r.err
    assert len(r.err.strip().splitlines()) == 1
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before


def test_preview_file_is_rewritten_after_every_step(tiny_wan_euler, tmp_path):
    """In-process, in addition to the CLI tests: what the file holds after each step."""
    from videogen.preview import Preview, factors_for

    spec = RenderSpec(prompt=PROMPT, model=str(tiny_wan_euler), frames=9, height=16, width=16, steps=4, seed=1)
    engine = Engine.load(spec)
    spec = engine.resolve(spec)
    writer = Preview(tmp_path / "p.png", factors_for(engine.info), engine.model, spec)
    seen: list[tuple[int, str, np.ndarray]] = []

    def watch(i: int, total: int, latents: torch.Tensor, x0: torch.Tensor) -> None:
        writer(i, total, x0)
        data = (tmp_path / "p.png").read_bytes()
        seen.append((i, hashlib.sha256(data).hexdigest(), expected_image(x0, WAN21[1], WAN21[2])))
        assert np.abs(np.asarray(Image.open(tmp_path / "p.png")).astype(int) - seen[-1][2]).max() <= 1

    engine.render(spec, on_step=watch)
    assert [i for i, _, _ in seen] == [0, 1, 2, 3]
    assert len({h for _, h, _ in seen}) == 4  # a new picture each step
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left behind


def test_x0_estimate_matches_the_schedulers_own():
    """Flow matching: Euler's step to sigma 0 is its x0; DDIM v-prediction: diffusers' pred_original_sample."""
    from diffusers import DDIMScheduler, FlowMatchEulerDiscreteScheduler

    from videogen.families.base import Family
    from videogen.families.cogvideox import CogVideoX

    g = torch.Generator().manual_seed(0)
    x, out = torch.randn(1, 4, 2, 3, 3, generator=g), torch.randn(1, 4, 2, 3, 3, generator=g)
    flow = FlowMatchEulerDiscreteScheduler()
    flow.set_timesteps(sigmas=[0.7], device="cpu")
    t = flow.timesteps[0]
    torch.testing.assert_close(Family.flow_x0(None, flow)(out, t, x, 0), flow.step(out, t, x, return_dict=False)[0])
    ddim = DDIMScheduler(prediction_type="v_prediction", clip_sample=False)
    ddim.set_timesteps(10)
    t = ddim.timesteps[3]
    torch.testing.assert_close(CogVideoX.v_x0(ddim)(out, t, x, 3), ddim.step(out, t, x).pred_original_sample)


@pytest.mark.parametrize("env,tty,want", [
    ({"TERM": "xterm-kitty"}, True, "kitty"),
    ({"TERM": "xterm-256color", "KITTY_WINDOW_ID": "1"}, True, "kitty"),
    ({"TERM": "xterm-256color", "TERM_PROGRAM": "iTerm.app"}, True, "iterm2"),
    ({"TERM": "xterm-256color", "TERM_PROGRAM": "WezTerm"}, True, "iterm2"),
    ({"TERM": "foot"}, True, "sixel"),
    ({"TERM": "xterm-256color"}, True, None),
    ({"TERM": "xterm-kitty"}, False, None),  # stderr redirected: never write pictures into a log
])
def test_terminal_image_protocol_is_told_from_the_environment(env, tty, want):
    from videogen.termimage import protocol

    assert protocol(env, tty) == want


def test_terminal_image_payloads_carry_the_picture():
    from io import BytesIO

    from videogen.termimage import iterm2, kitty, sixel

    image = np.random.default_rng(0).integers(0, 256, (40, 30, 3), dtype=np.uint8)
    seq = kitty(image)
    chunks = seq.split("\x1b\\")[:-1]
    assert chunks[0].startswith("\x1b_Ga=T,f=100,") and all(c.startswith("\x1b_G") for c in chunks)
    payload = "".join(c.split(";", 1)[1] for c in chunks)
    assert np.array_equal(np.asarray(Image.open(BytesIO(base64.b64decode(payload)))), image)
    body = iterm2(image).removeprefix("\x1b]1337;File=").removesuffix("\x07").split(":", 1)[1]
    assert np.array_equal(np.asarray(Image.open(BytesIO(base64.b64decode(body)))), image)
    six = sixel(image)
    assert six.startswith("\x1bPq") and six.endswith("\x1b\\") and six.count("-") == math.ceil(40 / 6)


def test_kitty_terminal_gets_the_preview_picture_on_stderr(tiny_wan_euler, tmp_path):
    """stderr on a pseudo-terminal, TERM=xterm-kitty: the preview is drawn there (on a pipe it is not: see the
    first test, which runs under the same TERM)."""
    import os
    import pty
    import subprocess
    import sys

    master, slave = pty.openpty()
    exe = Path(sys.executable).with_name("videogen")
    proc = subprocess.Popen([str(exe), "generate", PROMPT, "-m", str(tiny_wan_euler), *TINY, "--steps", "2",
                             "-o", "v.mp4"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=slave,
                            env={**os.environ, "TERM": "xterm-kitty", "COLUMNS": "100"})
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    assert proc.wait(timeout=RENDER_TIMEOUT) == 0
    os.close(master)
    err = b"".join(chunks).decode(errors="replace")
    start = err.index("\x1b_Ga=T,f=100,")
    payload = []
    for piece in err[start:].split("\x1b_G")[1:]:
        keys, rest = piece.split(";", 1)
        payload.append(rest.split("\x1b\\", 1)[0])
        if "m=0" in keys:
            break
    picture = np.asarray(Image.open(__import__("io").BytesIO(base64.b64decode("".join(payload)))))
    assert picture.shape == (128, 128, 3)  # the preview grid of the tiny model
