"""LTX-2's sound out: muxed into MP4 (AAC) and WebM (Opus) in sync with the frames, `--audio` WAV, `--no-audio`."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import one_error_line, run_cli, run_inprocess

from videogen.errors import RenderError
from videogen.video import read_comment, read_frames, write_video

PROMPT = "a red cat runs on the beach"


def ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def streams(path: Path) -> list[str]:
    """The `Stream #...` lines of `ffmpeg -i` (codec, sample rate, channels)."""
    err = subprocess.run([ffmpeg(), "-hide_banner", "-i", str(path)], capture_output=True, text=True).stderr
    return [line.strip() for line in err.splitlines() if line.strip().startswith("Stream #")]


def decoded_audio(path: Path, channels: int) -> np.ndarray:
    """The sound track as ffmpeg decodes it (encoder delay trimmed), float32 [channels, samples]."""
    raw = subprocess.run([ffmpeg(), "-hide_banner", "-loglevel", "error", "-i", str(path), "-map", "0:a",
                          "-f", "f32le", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, "<f4").reshape(-1, channels).T


def sine(rate: int, seconds: float, channels: int = 2) -> np.ndarray:
    t = np.arange(round(rate * seconds)) / rate
    return np.stack([0.5 * np.sin(2 * np.pi * 440 * (c + 1) * t) for c in range(channels)]).astype(np.float32)


@pytest.mark.parametrize(("suffix", "codec", "rate", "seconds"), [
    (".mp4", "aac", 24000, 1.3), (".webm", "opus", 48000, 0.8), (".mp4", "aac", 16000, 1.0)])
def test_writer_muxes_the_track_in_sync(tmp_path, suffix, codec, rate, seconds):
    """Frames and track end together (the track fitted to the frames), at the vocoder's rate."""
    fps, frames = 24, np.random.default_rng(0).integers(0, 255, (25, 32, 64, 3), dtype=np.uint8)
    out = tmp_path / f"clip{suffix}"
    write_video(frames, out, fps, {"spec": {}}, audio=(sine(rate, seconds), rate))  # the frames last 1.04 s
    video, audio = streams(out)
    assert ("h264" if suffix == ".mp4" else "vp9") in video
    assert codec in audio and f"{rate} Hz" in audio and "stereo" in audio
    got = decoded_audio(out, 2)
    assert abs(got.shape[1] / rate - len(read_frames(out)[0]) / fps) <= 1 / fps
    assert json.loads(read_comment(out))["spec"] == {}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary WAV or video left


def test_a_killed_mux_leaves_no_video(tmp_path, monkeypatch):
    """The sound is muxed in the write that makes the video: an encoder killed half-way (here a stand-in that
    writes part of its output and dies) leaves no video, with or without sound, and no temporary files."""
    fake = tmp_path / "bin" / "ffmpeg"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\nfor last; do :; done\nprintf partial > "$last"\nexit 137\n')
    fake.chmod(0o755)
    monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", str(fake))
    out = tmp_path / "out" / "clip.mp4"
    with pytest.raises(RenderError, match="ffmpeg failed"):
        write_video(np.zeros((9, 32, 32, 3), np.uint8), out, 24, {"spec": {}}, audio=(sine(16000, 0.4), 16000))
    assert list(out.parent.iterdir()) == []


def test_render_with_sound_from_the_command_line(tiny_ltx2, tmp_path):
    """The user's path: an MP4 with H.264 and AAC streams whose durations agree within a frame, the run record's
    sound facts, and the --audio WAV equal to LTX2Pipeline's waveform."""
    from diffusers import LTX2Pipeline

    out, wav = tmp_path / "cat.mp4", tmp_path / "cat.wav"
    r = run_cli("generate", PROMPT, "-m", str(tiny_ltx2), "--frames", "17", "--height", "32", "--width", "64",
                "--steps", "2", "--seed", "3", "--max-sequence-length", "32", "--guidance", "1", "--audio-guidance",
                "1", "--stg", "0", "--modality-guidance", "1", "-o", str(out), "--audio", str(wav), cwd=tmp_path,
                env={"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
    assert r.code == 0, r.err
    video, audio = streams(out)
    assert "h264" in video and "aac" in audio and "16000 Hz" in audio and "stereo" in audio
    frames, fps = read_frames(out)
    track = decoded_audio(out, 2)
    assert frames.shape[0] == 17 and abs(track.shape[1] / 16000 - 17 / fps) <= 1 / fps
    record = json.loads(Path(str(out) + ".json").read_text())
    assert record["audio"] == {"sample_rate": 16000, "channels": 2, "duration": record["audio"]["duration"]}
    assert json.loads(read_comment(out))["audio"] == record["audio"]
    # the WAV, read back by ffmpeg: float32 at the vocoder's rate and channels, the pipeline's waveform
    assert "pcm_f32le" in streams(wav)[0] and "16000 Hz" in streams(wav)[0]
    ours = decoded_audio(wav, 2)
    assert abs(ours.shape[1] / 16000 - record["audio"]["duration"]) < 1e-6
    torch.set_num_threads(1)
    pipe = LTX2Pipeline.from_pretrained(tiny_ltx2)
    pipe.set_progress_bar_config(disable=True)
    _, ref = pipe(prompt=PROMPT, num_frames=17, height=32, width=64, frame_rate=24.0, num_inference_steps=2,
                  guidance_scale=1.0, audio_guidance_scale=1.0, stg_scale=0.0, modality_scale=1.0, audio_stg_scale=None, audio_modality_scale=None,
                  generator=torch.Generator("cpu").manual_seed(3), max_sequence_length=32, output_type="np",
                  return_dict=False)
    assert ours.shape == tuple(ref[0].shape) and np.abs(ours - ref[0].float().numpy()).max() <= 1e-4
    plays_with_sound_in_chromium(out, 17 / fps)


def plays_with_sound_in_chromium(video: Path, duration: float) -> None:
    """A browser plays the MP4 to its end: its media element reports the duration, and decodes sound as well as
    frames (Chromium counts the bytes each decoder consumed)."""
    from browser import Browser, chromium, file_url

    exe = chromium()
    if exe is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium); .ci/run installs it")
    page = video.with_name("play.html")
    page.write_text(f'<!doctype html><video src="{video.name}" preload="auto" muted></video>')
    browser = Browser(exe)
    try:
        browser.open(file_url(page))
        played = browser.evaluate("""(async () => {
            const v = document.querySelector("video");
            await v.play();
            const start = performance.now();
            while (!v.ended && performance.now() - start < 20000) await new Promise(r => setTimeout(r, 50));
            return {ended: v.ended, duration: v.duration, error: v.error && v.error.code,
                    audio: v.webkitAudioDecodedByteCount, frames: v.webkitVideoDecodedByteCount,
                    aac: v.canPlayType('audio/mp4; codecs="mp4a.40.2"')};
        })()""")
        assert played["ended"] and played["error"] is None and played["aac"] == "probably", played
        assert abs(played["duration"] - duration) <= 1 / 24 and played["audio"] > 0 and played["frames"] > 0, played
        assert browser.problems() == []
    finally:
        browser.close()


def test_no_audio_writes_a_silent_video(tiny_ltx2, tmp_path):
    import videogen

    out = tmp_path / "quiet.webm"
    result = videogen.generate(PROMPT, out, model=str(tiny_ltx2), frames=9, height=32, width=32, steps=2, seed=1,
                               guidance=1.0, audio_guidance=1.0, stg=0.0, modality_guidance=1.0,
                               max_sequence_length=32, no_audio=True)
    assert result.audio is None and "audio" not in result.record
    assert len(streams(out)) == 1 and "vp9" in streams(out)[0]


@pytest.mark.parametrize(("args", "expected"), [
    (["--audio", "{tmp}/a.mp3"], "--audio {tmp}/a.mp3: the file must end in .wav"),
    (["--audio", "{tmp}/taken.wav"], "--audio {tmp}/taken.wav: file exists (use --overwrite to replace it)"),
    (["--audio", "{tmp}/a.wav", "--no-audio"], "--audio writes the sound track and --no-audio leaves it out"),
])
def test_audio_flags_refused(tiny_ltx2, tmp_path, capsys, monkeypatch, args, expected):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "taken.wav").write_bytes(b"mine")
    r = run_inprocess(capsys, "generate", PROMPT, "-m", str(tiny_ltx2), "-o", str(tmp_path / "x.mp4"),
                      *[a.format(tmp=tmp_path) for a in args])
    assert expected.format(tmp=tmp_path) in one_error_line(r)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken.wav"]
    assert (tmp_path / "taken.wav").read_bytes() == b"mine"


@pytest.mark.parametrize(("flag", "expected"), [
    (["--audio", "{tmp}/a.wav"], "--audio: this wan model makes no sound"),
    (["--no-audio"], "--no-audio is for models that make sound (LTX-2); this wan model does not take it"),
])
def test_silent_family_refuses_sound_flags(tiny_wan, tmp_path, capsys, monkeypatch, flag, expected):
    monkeypatch.chdir(tmp_path)
    r = run_inprocess(capsys, "generate", PROMPT, "-m", str(tiny_wan), "-o", str(tmp_path / "x.mp4"),
                      *[a.format(tmp=tmp_path) for a in flag])
    assert re.search(re.escape(expected), one_error_line(r))
    assert list(tmp_path.iterdir()) == []
