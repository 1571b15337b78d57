"""Sound tracks of models that make sound (LTX-2): the float32 WAV of `--audio`, and the track muxed into videos."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from videogen.errors import UserError

FLOAT = 3  # WAVE_FORMAT_IEEE_FLOAT


def wav_bytes(wave: np.ndarray, rate: int) -> bytes:
    """A float32 WAV (IEEE float, interleaved) of `wave` [channels, samples], values as they are."""
    channels, samples = wave.shape
    data = np.ascontiguousarray(wave.T, dtype="<f4").tobytes()
    block = 4 * channels
    # fmt with cbSize 0 and a fact chunk: what the WAVE spec asks of non-PCM formats
    fmt = struct.pack("<HHIIHHH", FLOAT, channels, rate, rate * block, block, 32, 0)
    chunks = (b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"fact" + struct.pack("<II", 4, samples)
              + b"data" + struct.pack("<I", len(data)) + data)
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks


def fitted(wave: np.ndarray, rate: int, seconds: float) -> np.ndarray:
    """The track cut or padded with silence to the video's duration, so that both streams end together (the
    vocoder's output is a few milliseconds off the frames' duration)."""
    n = round(seconds * rate)
    if wave.shape[1] >= n:
        return wave[:, :n]
    return np.pad(wave, ((0, 0), (0, n - wave.shape[1])))


def check_wav_path(path: Path, output: Path | None, overwrite: bool) -> None:
    """--audio PATH.wav, refused before loading: wrong type, missing folder, taken, the same as -o."""
    from videogen.preview import check_image_path

    check_image_path(path, "--audio", (".wav",), overwrite)
    if output is not None and path.absolute() == output.absolute():
        raise UserError(f"--audio {path} is also the -o/--output path: give each its own file")


def write_wav(path: Path, wave: np.ndarray, rate: int, overwrite: bool) -> None:
    """Written under a temporary name and moved into place (never over a file without `overwrite`)."""
    import os

    from videogen.video import _fsync, _partial_prefix, _place, clean_stale_partials

    clean_stale_partials(path)
    tmp = path.with_name(_partial_prefix(path) + str(os.getpid()))
    try:
        tmp.write_bytes(wav_bytes(wave, rate))
        _fsync(tmp)
        _place(tmp, path, overwrite)
    finally:
        if tmp.exists():
            tmp.unlink()
