"""Video files: MP4 (H.264), WebM (VP9), GIF or a folder of PNG frames, written atomically with a run record."""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from videogen.errors import RenderError, UserError
from videogen.jsonfile import parse_object, read_object

if TYPE_CHECKING:
    import numpy as np

RECORD_NAME = "run.json"  # inside a PNG folder
STDOUT = Path("-")  # `-o -`: the video goes to stdout, as fragmented MP4 (a format that streams)
FRAME_NAME = re.compile(r"frame_\d{5}\.png")


class DiskFull(RenderError):
    """No space left while writing an output (a batch stops at the first one: the next would fail too)."""


@dataclass(frozen=True)
class Format:
    """One output format: how it is written and read, and whether the container carries the run record."""

    name: str
    suffix: str  # "" for a folder of PNG frames
    embeds_record: bool  # MP4/WebM keep the record in their comment tag; GIF and PNG only beside it


FORMATS: dict[str, Format] = {f.name: f for f in (
    Format("mp4", ".mp4", True), Format("webm", ".webm", True), Format("gif", ".gif", False),
    Format("png", "", False))}
VIDEO_SUFFIXES = tuple(f.suffix for f in FORMATS.values() if f.suffix)


def output_kind(path: Path) -> str:
    """'mp4', 'webm', 'gif' or 'png' (a folder of frames)."""
    suffix = path.suffix.lower()
    if suffix in VIDEO_SUFFIXES:
        return suffix[1:]
    if suffix == "" or path.is_dir():
        return "png"
    raise UserError(f"unsupported output type '{suffix}' for {path}: use .mp4, .webm, .gif or a folder for PNG frames")


def record_path(output: Path) -> Path:
    return output / RECORD_NAME if output_kind(output) == "png" else output.with_name(output.name + ".json")


_WORDS = re.compile(r"[a-z0-9]+")


def slug(text: str, limit: int = 60) -> str:
    """A safe file-name piece: ASCII letters and digits joined by '-', never empty, no leading dot."""
    if not text.isascii():  # accents dropped, other scripts too (a batch names 10,000 items: ASCII skips this)
        text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    words = _WORDS.findall(text.lower())
    if not words:
        return "video"
    joined = "-".join(words)
    if len(joined) <= limit:
        return joined
    cut = joined.rfind("-", 0, limit + 1)  # the whole words that fit; a first word too long is cut short
    return joined[:cut] if cut > 0 else words[0][:limit]


def default_output(prompt: str, seed: int, folder: Path = Path("outputs"), suffix: str = ".mp4") -> Path:
    base = f"{slug(prompt)}-s{seed}"
    candidate = folder / f"{base}{suffix}"
    n = 1
    while candidate.exists() or record_path(candidate).exists():
        candidate = folder / f"{base}-{n}{suffix}"
        n += 1
    return candidate


def is_png_render(folder: Path) -> bool:
    """A folder holding exactly a PNG render of ours: frame_NNNNN.png files and run.json, nothing else."""
    names = [p.name for p in folder.iterdir()]
    if RECORD_NAME not in names or not all(n == RECORD_NAME or FRAME_NAME.fullmatch(n) for n in names):
        return False
    try:
        return isinstance(json.loads((folder / RECORD_NAME).read_text(encoding="utf-8")).get("spec"), dict)
    except (OSError, ValueError, AttributeError):
        return False


def check_output(output: Path, overwrite: bool) -> None:
    """Refuse before rendering: an existing output without --overwrite, a folder holding the user's files, the
    current folder, a name the file system cannot hold, or a folder we cannot write to."""
    if output == STDOUT:
        if sys.stdout.isatty():
            raise UserError("-o -: stdout is a terminal; pipe it into a file or a player (… -o - > clip.mp4)")
        return
    output_kind(output)
    existing = output.absolute().parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent  # folders still to be created are made when the video is written
    _check_name_lengths(output, existing)
    here = Path.cwd().resolve()
    if output.resolve() == here or output.resolve() in here.parents:
        raise UserError(f"-o {output}: the current folder (or one above it) cannot be replaced by a render; "
                        "name a new folder or a file")
    if output.is_dir() and not output.is_symlink():
        if output_kind(output) != "png":
            raise UserError(f"output is a folder: {output}")
        if any(output.iterdir()):
            if not is_png_render(output):
                raise UserError(f"output folder {output} holds files that are not a videogen PNG render; PNG frames "
                                "go only into a new or empty folder, or over a previous PNG render (frames + run.json)")
            if not overwrite:
                raise UserError(f"output exists: {output} (use --overwrite to replace it, or -o for another path)")
    else:
        for p in (output, record_path(output)):
            if (p.exists() or p.is_symlink()) and not overwrite:
                raise UserError(f"output exists: {p} (use --overwrite to replace it, or -o for another path)")
    try:
        if not existing.is_dir():
            raise NotADirectoryError(20, "a file is in the way")
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".videogen-probe-"):
            pass
    except OSError as e:
        raise UserError(f"cannot write to output folder {output.parent}: {e.strerror or e}") from None


def _check_name_lengths(output: Path, existing: Path) -> None:
    """A name the file system cannot hold fails before the render, not after it."""
    try:
        limit = os.pathconf(existing, "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = 255
    names = [*output.absolute().relative_to(existing).parts, record_path(output).name]
    for name in names:
        if len(os.fsencode(name)) > limit:
            raise UserError(f"output name too long: '{name[:40]}...' is {len(os.fsencode(name))} bytes, and this "
                            f"file system takes at most {limit} per name")


def _partial_prefix(final: Path) -> str:
    """Prefix of the temporary names beside `final`: `.NAME.partial-`, shortened for long names so that a
    temporary name never passes the file system's limit when the final one fits."""
    name = final.name
    if len(os.fsencode(name)) <= 120:
        return f".{name}.partial-"
    digest = hashlib.sha256(os.fsencode(name)).hexdigest()[:12]
    return f".{os.fsencode(name)[:60].decode(errors='ignore')}~{digest}.partial-"


def clean_stale_partials(final: Path) -> None:
    """Remove temporary files beside `final` left by processes that died while writing it."""
    if not final.parent.is_dir():
        return
    for p in final.parent.glob(glob.escape(_partial_prefix(final)) + "*"):
        m = re.match(r"(\d+)", p.name[len(_partial_prefix(final)):])
        if m is None or _alive(int(m.group(1))):
            continue
        with contextlib.suppress(OSError):
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def _ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


OPUS_RATES = (8000, 12000, 16000, 24000, 48000)  # the sample rates Opus encodes


def _encode(frames: np.ndarray, path: Path | None, fps: int, kind: str, crf: int, comment: str,
            audio: tuple[np.ndarray, int] | None = None) -> None:
    """MP4 or WebM through ffmpeg; `path` None streams fragmented MP4 to stdout. `audio` (waveform
    [channels, samples] float32, rate) becomes the sound track: AAC in MP4, Opus in WebM."""
    import numpy as np

    if audio is None:
        return _run_ffmpeg(frames, path, fps, kind, crf, comment, [])
    from videogen import audio as sound

    wave, rate = audio
    track = sound.fitted(np.asarray(wave, dtype=np.float32), rate, len(frames) / fps)
    # the track goes to ffmpeg as a WAV file beside the output's temporary file (removed with it, or by the
    # next run if this one is killed), or in the system's temporary folder when streaming to stdout
    if path is None:
        with tempfile.NamedTemporaryFile(suffix=".wav", prefix="videogen-audio-") as f:
            f.write(sound.wav_bytes(track, rate))
            f.flush()
            return _run_ffmpeg(frames, None, fps, kind, crf, comment, _audio_args(f.name, kind, rate))
    wav = path.with_suffix(".wav")
    try:
        wav.write_bytes(sound.wav_bytes(track, rate))
        _run_ffmpeg(frames, path, fps, kind, crf, comment, _audio_args(str(wav), kind, rate))
    finally:
        wav.unlink(missing_ok=True)


def _audio_args(wav: str, kind: str, rate: int) -> list[str]:
    if kind == "webm":
        codec = ["-c:a", "libopus", "-b:a", "128k", *([] if rate in OPUS_RATES else ["-ar", "48000"])]
    else:
        codec = ["-c:a", "aac", "-b:a", "192k"]
    return ["-i", wav, "-map", "0:v", "-map", "1:a", *codec]


def _run_ffmpeg(frames: np.ndarray, path: Path | None, fps: int, kind: str, crf: int, comment: str,
                audio_args: list[str]) -> None:
    import numpy as np

    f, h, w, _ = frames.shape
    if kind in ("mp4", "webm") and (h % 2 or w % 2):
        raise UserError(f"{kind} (yuv420p) needs an even width and height, not {w}x{h}")
    if path is None:  # a fragmented MP4 needs no seek back to its start, so it can go down a pipe
        codec = ["-c:v", "libx264", "-preset", "medium", "-crf", str(crf), "-movflags",
                 "frag_keyframe+empty_moov+default_base_moof", "-f", "mp4"]
    elif kind == "mp4":
        codec = ["-c:v", "libx264", "-preset", "medium", "-crf", str(crf), "-movflags", "+faststart", "-f", "mp4"]
    else:
        codec = ["-c:v", "libvpx-vp9", "-crf", str(crf), "-b:v", "0", "-f", "webm"]
    cmd = [_ffmpeg(), "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
           "-s", f"{w}x{h}", "-r", str(fps), "-i", "-", *(audio_args or ["-an"]), *codec, "-pix_fmt", "yuv420p",
           "-metadata", f"comment={comment}", "pipe:1" if path is None else str(path)]
    sys.stdout.flush()
    proc = subprocess.run(cmd, input=np.ascontiguousarray(frames).tobytes(), stderr=subprocess.PIPE,
                          stdout=None if path is None else subprocess.DEVNULL)
    if proc.returncode != 0:
        message = proc.stderr.decode(errors="replace").strip()
        if "No space left" in message:
            raise OSError(errno.ENOSPC, "No space left on device")
        raise RenderError(f"ffmpeg failed writing {kind}: {message[-300:]}")


def _gif(frames: np.ndarray, path: Path, fps: int) -> None:
    from PIL import Image

    images = [Image.fromarray(fr) for fr in frames]
    images[0].save(path, format="GIF", save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0)


def _pngs(frames: np.ndarray, folder: Path) -> None:
    from PIL import Image

    folder.mkdir()
    for i, fr in enumerate(frames):
        Image.fromarray(fr).save(folder / f"frame_{i:05d}.png")


def write_video(frames: np.ndarray, output: Path, fps: int, record: dict[str, Any], *, crf: int = 18,
                overwrite: bool = False, audio: tuple[Any, int] | None = None) -> Path:
    """Write frames [F,H,W,3] uint8 and the run record; both appear only when complete, or not at all.

    `audio` (waveform [channels, samples], sample rate) is muxed into MP4 and WebM in the same write, so a video
    never appears without its sound; GIF and PNG frames have no sound track.

    `record` is completed in place with what the written record holds: `output` and `timings.write` (the time
    the frames took to write), so that the record on disk equals the one a caller prints. `output` STDOUT
    streams a fragmented MP4 to stdout and writes no record file."""
    start = time.perf_counter()
    record["output"] = str(output)
    comment = json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=str)
    if output == STDOUT:
        _encode(frames, None, fps, "mp4", crf, comment, _wave(audio))
        record.setdefault("timings", {})["write"] = round(time.perf_counter() - start, 4)
        return output
    kind = output_kind(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_partials(output)
    if kind != "png":
        clean_stale_partials(record_path(output))
    tmp = output.with_name(_partial_prefix(output) + str(os.getpid()) + (output.suffix if kind != "png" else ""))
    rec_final = record_path(output)
    rec_tmp = rec_final.with_name(_partial_prefix(rec_final) + str(os.getpid())) if kind != "png" else None
    try:
        if kind in ("mp4", "webm"):
            _encode(frames, tmp, fps, kind, crf, comment, _wave(audio))
        elif kind == "gif":
            _gif(frames, tmp, fps)
        else:
            _pngs(frames, tmp)
        record.setdefault("timings", {})["write"] = round(time.perf_counter() - start, 4)
        text = json.dumps(record, indent=2, ensure_ascii=False, default=str)
        if rec_tmp is None:
            (tmp / RECORD_NAME).write_text(text, encoding="utf-8")
        else:
            rec_tmp.write_text(text, encoding="utf-8")
            _fsync(rec_tmp)
            _fsync(tmp)
        _place(tmp, output, overwrite)
        if rec_tmp is not None:
            _place(rec_tmp, rec_final, overwrite=True)
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFull(f"cannot write {output}: no space left on the device") from None
        raise
    finally:
        for p in (tmp, rec_tmp):
            if p is not None and (p.exists() or p.is_symlink()):
                shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
    return output


def _wave(audio: tuple[Any, int] | None) -> tuple[np.ndarray, int] | None:
    """A waveform tensor or array as float32 numpy."""
    if audio is None:
        return None
    wave, rate = audio
    import numpy as np

    return (wave.numpy() if hasattr(wave, "numpy") else np.asarray(wave)).astype(np.float32), int(rate)


def _fsync(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _place(tmp: Path, final: Path, overwrite: bool) -> None:
    """Move a finished file or folder into place; without `overwrite`, never replace what is there. A folder
    replaces only an empty folder or a previous PNG render (never a folder of the user's files)."""
    if tmp.is_dir():
        if final.is_dir() and not final.is_symlink() and not any(final.iterdir()):
            os.rename(tmp, final)  # rename replaces an empty folder atomically
            return
        if not (final.exists() or final.is_symlink()):
            os.rename(tmp, final)
            return
        if not overwrite:
            raise UserError(f"output exists: {final} (use --overwrite)")
        if final.is_dir() and not final.is_symlink() and not is_png_render(final):
            raise UserError(f"output folder {final} holds files that are not a videogen PNG render; not replaced")
        old = final.with_name(_partial_prefix(final) + f"{os.getpid()}-old")
        os.rename(final, old)
        os.rename(tmp, final)
        shutil.rmtree(old) if old.is_dir() and not old.is_symlink() else old.unlink()
        return
    if overwrite:
        os.replace(tmp, final)
        return
    try:
        os.link(tmp, final)  # atomic and fails if `final` exists: no race with another writer
    except FileExistsError:
        raise UserError(f"output exists: {final} (use --overwrite)") from None
    except OSError:  # file systems without hard links
        if final.exists():
            raise UserError(f"output exists: {final} (use --overwrite)") from None
        os.rename(tmp, final)
        return
    tmp.unlink()


def read_frames(path: Path) -> tuple[np.ndarray, float]:
    """Frames [F,H,W,3] uint8 and fps of a written output (for tests, checks and resume)."""
    import numpy as np

    kind = output_kind(path)
    if kind == "png":
        from PIL import Image

        files = sorted(path.glob("frame_*.png"))
        record = json.loads((path / RECORD_NAME).read_text())
        return np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files]), float(record["fps"])
    if kind == "gif":
        from PIL import Image, ImageSequence

        im = Image.open(path)
        frames = [np.asarray(fr.convert("RGB")) for fr in ImageSequence.Iterator(im)]
        return np.stack(frames), 1000.0 / im.info.get("duration", 100)
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    w, h = meta["size"]
    frames = [np.frombuffer(fr, np.uint8).reshape(h, w, 3) for fr in reader]
    return np.stack(frames), float(meta["fps"])


def read_comment(path: Path) -> str | None:
    """The container's `comment` tag (MP4/WebM), where videogen stores the run record."""
    proc = subprocess.run([_ffmpeg(), "-hide_banner", "-loglevel", "error", "-i", str(path), "-f", "ffmetadata", "-"],
                          capture_output=True)
    if proc.returncode != 0:
        return None
    lines = proc.stdout.decode("utf-8", errors="replace").split("\n")
    out = None
    for i, line in enumerate(lines):
        if line.lower().startswith("comment="):
            value = line.split("=", 1)[1]
            # ffmetadata escapes '=', ';', '#', '\\' and newlines with a backslash
            j = i
            while value.endswith("\\") and j + 1 < len(lines):
                j += 1
                value = value[:-1] + "\n" + lines[j]
            out = re.sub(r"\\(.)", r"\1", value)
            break
    return out


def load_record(path: Path) -> dict[str, Any]:
    """A run record from a .json file, a PNG folder, a video's .json sidecar, or the comment tag of an MP4/WebM."""
    suffix = path.suffix.lower()
    if path.is_dir() or suffix in VIDEO_SUFFIXES:
        fmt = FORMATS["png" if path.is_dir() else suffix[1:]]
        rec = record_path(path)
        if rec.is_file():
            path = rec
        elif not path.exists():
            raise UserError(f"run record not found: {path}")
        elif fmt.embeds_record:
            comment = read_comment(path)
            if not comment:
                raise UserError(f"{path}: carries no run record (no comment tag) and has no {rec.name} beside it")
            return parse_object(comment, f"{path} (its comment tag)", "a videogen run record", needs=("spec", dict))
        else:
            raise UserError(f"{path}: a {fmt.name.upper()} output carries no run record; its record is the file "
                            f"{rec.name} beside it, which is missing")
    if not path.is_file():
        raise UserError(f"run record not found: {path}")
    return read_object(path, "a videogen run record", needs=("spec", dict))
