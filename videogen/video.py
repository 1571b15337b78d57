"""Video files: MP4 (H.264), WebM (VP9), GIF or a folder of PNG frames, written atomically with a run record."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np

from videogen.errors import UserError

VIDEO_SUFFIXES = (".mp4", ".webm", ".gif")
RECORD_NAME = "run.json"  # inside a PNG folder


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


def slug(text: str, limit: int = 60) -> str:
    """A safe file-name piece: ASCII letters and digits joined by '-', never empty, no leading dot."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    words = re.findall(r"[a-z0-9]+", text)
    out = ""
    for w in words:
        if len(out) + len(w) + (1 if out else 0) > limit:
            break
        out = f"{out}-{w}" if out else w
    return out or (words[0][:limit] if words else "video")


def default_output(prompt: str, seed: int, folder: Path = Path("outputs"), suffix: str = ".mp4") -> Path:
    base = f"{slug(prompt)}-s{seed}"
    candidate = folder / f"{base}{suffix}"
    n = 1
    while candidate.exists() or record_path(candidate).exists():
        candidate = folder / f"{base}-{n}{suffix}"
        n += 1
    return candidate


def check_output(output: Path, overwrite: bool) -> None:
    """Refuse before rendering: an existing output without --overwrite, or a folder we cannot write to."""
    output_kind(output)
    for p in (output, record_path(output)):
        if (p.exists() or p.is_symlink()) and not overwrite:
            raise UserError(f"output exists: {p} (use --overwrite to replace it, or -o for another path)")
    if output.is_dir() and output_kind(output) != "png":
        raise UserError(f"output is a folder: {output}")
    parent = output.absolute().parent
    existing = parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent  # folders still to be created are made when the video is written
    try:
        if not existing.is_dir():
            raise NotADirectoryError(20, "a file is in the way")
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".videogen-probe-"):
            pass
    except OSError as e:
        raise UserError(f"cannot write to output folder {output.parent}: {e.strerror or e}") from None


def _ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def _encode(frames: np.ndarray, path: Path, fps: int, kind: str, crf: int, comment: str) -> None:
    f, h, w, _ = frames.shape
    if kind in ("mp4", "webm") and (h % 2 or w % 2):
        raise UserError(f"{kind} (yuv420p) needs an even width and height, not {w}x{h}")
    if kind == "mp4":
        codec = ["-c:v", "libx264", "-preset", "medium", "-crf", str(crf), "-movflags", "+faststart", "-f", "mp4"]
    else:
        codec = ["-c:v", "libvpx-vp9", "-crf", str(crf), "-b:v", "0", "-f", "webm"]
    cmd = [_ffmpeg(), "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
           "-s", f"{w}x{h}", "-r", str(fps), "-i", "-", "-an", *codec, "-pix_fmt", "yuv420p",
           "-metadata", f"comment={comment}", str(path)]
    proc = subprocess.run(cmd, input=np.ascontiguousarray(frames).tobytes(), capture_output=True)
    if proc.returncode != 0:
        from videogen.errors import RenderError

        raise RenderError(f"ffmpeg failed writing {kind}: {proc.stderr.decode(errors='replace').strip()[-300:]}")


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
                overwrite: bool = False) -> Path:
    """Write frames [F,H,W,3] uint8 and the run record; both appear only when complete."""
    kind = output_kind(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    record = {**record, "output": str(output)}
    text = json.dumps(record, indent=2, ensure_ascii=False, default=str)
    stem = f".{output.name}.partial-{os.getpid()}"
    tmp = output.with_name(stem + (output.suffix if kind != "png" else ""))
    rec_final = record_path(output)
    rec_tmp = rec_final.with_name(f".{rec_final.name}.partial-{os.getpid()}") if kind != "png" else None
    try:
        if kind in ("mp4", "webm"):
            _encode(frames, tmp, fps, kind, crf, json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=str))
        elif kind == "gif":
            _gif(frames, tmp, fps)
        else:
            _pngs(frames, tmp)
            (tmp / RECORD_NAME).write_text(text, encoding="utf-8")
        if rec_tmp is not None:
            rec_tmp.write_text(text, encoding="utf-8")
            _fsync(rec_tmp)
        if kind != "png":
            _fsync(tmp)
        _place(tmp, output, overwrite)
        if rec_tmp is not None:
            _place(rec_tmp, rec_final, overwrite=True)
    finally:
        for p in (tmp, rec_tmp):
            if p is not None and (p.exists() or p.is_symlink()):
                shutil.rmtree(p) if p.is_dir() else p.unlink()
    return output


def _fsync(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _place(tmp: Path, final: Path, overwrite: bool) -> None:
    """Move a finished file or folder into place; without `overwrite`, never replace what is there."""
    if tmp.is_dir():
        if final.exists():
            if not overwrite:
                raise UserError(f"output exists: {final} (use --overwrite)")
            old = final.with_name(f".{final.name}.old-{os.getpid()}")
            os.rename(final, old)
            os.rename(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, final)
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
    """A run record from a .json file, a PNG folder, or the comment tag of an MP4/WebM."""
    with contextlib.suppress(UserError):
        if path.is_dir() or path.suffix.lower() in (".mp4", ".webm", ".gif"):
            rec = record_path(path)
            if rec.is_file():
                path = rec
            elif path.suffix.lower() in (".mp4", ".webm") and path.is_file():
                comment = read_comment(path)
                if comment:
                    try:
                        return json.loads(comment)
                    except ValueError:
                        raise UserError(f"{path}: its comment tag is not a videogen run record") from None
    if not path.is_file():
        raise UserError(f"run record not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not a JSON run record ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("spec"), dict):
        raise UserError(f"{path}: not a videogen run record (no 'spec')")
    return data
