"""Input clips (--video, --mask) and still inputs (--reference-image): read, checked, fitted, recorded.

A clip is checked against the model's geometry before any weight is read: its frame count and size must be
ones the model takes and, when --frames/--height/--width are given, equal to them. Otherwise it is refused
with the nearest valid values, or, with --fit, resampled to the render's geometry (nearest frames in time,
then the images' centre crop and Lanczos resize). The run record names every input by absolute path and
sha256, so a re-render (--from) can refuse an input that changed.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from videogen.errors import UserError

if TYPE_CHECKING:
    import numpy as np

    from videogen.families.base import Family, Geometry
    from videogen.spec import RenderSpec

log = logging.getLogger("videogen")

CLIP_FLAGS = {"video": "--video", "mask": "--mask"}
# Spec fields a family takes only when it declares them (Family.inputs); the flag that sets each.
INPUT_FIELDS = {**CLIP_FLAGS, "reference_images": "--reference-image", "conditioning_scale": "--conditioning-scale",
                "strength": "--strength", "fit": "--fit"}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


@dataclass(frozen=True)
class Clip:
    flag: str
    path: Path  # absolute
    frames: np.ndarray  # uint8 [F, H, W, 3]

    @property
    def shape(self) -> tuple[int, int, int]:
        f, h, w, _ = self.frames.shape
        return f, h, w


def sha256(path: Path) -> str:
    """Of a file's bytes; of a folder of frames, over each frame file's name and bytes in name order."""
    h = hashlib.sha256()
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            h.update(file.name.encode())
        with file.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return "sha256:" + h.hexdigest()


def read_clip(value: str, flag: str) -> Clip:
    """Every frame of a video file (what imageio reads: MP4, WebM, GIF...), an image, or a folder of images."""
    import imageio.v3 as iio
    import numpy as np

    path = Path(value).expanduser().resolve()
    if not path.exists():
        raise UserError(f"{flag}: file not found: {value}")
    try:
        if path.is_dir():  # a folder of frames, in name order (what `-o folder/` writes)
            files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise UserError(f"{flag}: no image files in folder {path}")
            frames = np.stack([_rgb(iio.imread(p)) for p in files])
        elif path.suffix.lower() in IMAGE_SUFFIXES:  # one still image is a one-frame clip
            frames = _rgb(iio.imread(path))[None]
        else:
            frames = np.stack([_rgb(frame) for frame in iio.imread(path, index=None)])
    except UserError:
        raise
    except Exception as e:  # imageio raises many kinds for a file it cannot decode
        raise UserError(f"{flag}: cannot read {path} as a video ({type(e).__name__})") from None
    if frames.ndim != 4 or frames.shape[0] == 0:
        raise UserError(f"{flag}: {path} holds no frames")
    return Clip(flag, path, np.ascontiguousarray(frames))


def _rgb(frame: np.ndarray) -> np.ndarray:
    """One frame as uint8 RGB [H, W, 3], from gray, gray+alpha, RGB or RGBA (alpha dropped)."""
    import numpy as np

    frame = frame if frame.dtype == np.uint8 else np.clip(frame, 0, 255).astype(np.uint8)
    if frame.ndim == 2:
        frame = frame[..., None]
    if frame.shape[-1] in (1, 2):
        frame = np.repeat(frame[..., :1], 3, axis=-1)
    return frame[..., :3]


def nearest(value: int, ok: Any, limit: int = 10_000) -> list[int]:
    """The valid values just below and just above `value` (one of them may not exist)."""
    below = next((v for v in range(value - 1, 0, -1) if ok(v)), None)
    above = next((v for v in range(value + 1, value + limit) if ok(v)), None)
    return [v for v in (below, above) if v is not None]


def closest(value: int, ok: Any) -> int:
    if ok(value):
        return value
    options = nearest(value, ok)
    return min(options, key=lambda v: (abs(v - value), v))


def frames_ok(geometry: Geometry) -> Any:
    return lambda f: not geometry.problems(f, geometry.multiple_h, geometry.multiple_w)


def valid_shape(geometry: Geometry, shape: tuple[int, int, int]) -> tuple[int, int, int]:
    """The nearest (frames, height, width) the model takes (ties go to the smaller)."""
    f, h, w = shape
    return (closest(f, frames_ok(geometry)), closest(h, lambda v: v % geometry.multiple_h == 0),
            closest(w, lambda v: v % geometry.multiple_w == 0))


def clip_problem(clip: Clip, geometry: Geometry, want: tuple[int | None, int | None, int | None]) -> str | None:
    """Why the model cannot take this clip as it is (None when it can), with the nearest valid values."""
    f, h, w = clip.shape
    said = f"{clip.flag} {clip.path}: {f} frames of {w}x{h}"
    bad = []
    if not frames_ok(geometry)(f):
        bad.append(f"{f} frames (use {' or '.join(map(str, nearest(f, frames_ok(geometry))))})")
    for name, value, m in (("height", h, geometry.multiple_h), ("width", w, geometry.multiple_w)):
        if value % m:
            bad.append(f"{name} {value} (a multiple of {m}: use "
                       f"{' or '.join(map(str, nearest(value, lambda v, m=m: v % m == 0)))})")
    if bad:
        return f"{said}; this model cannot take {', '.join(bad)}: re-cut the clip or add --fit to resample it"
    diff = [f"{flag} {v}" for flag, v, have in zip(("--frames", "--height", "--width"), want, (f, h, w), strict=True)
            if v is not None and v != have]
    if diff:
        return (f"{said}, but the render asks for {' '.join(diff)}: leave those out to render at the clip's "
                "geometry, or add --fit to resample the clip")
    return None


def check_inputs(spec: RenderSpec, family: type[Family], geometry: Geometry, task: str) -> RenderSpec:
    """Refuse inputs this model does not take or cannot read; fill frames and size from --video.

    Runs before the model's defaults are filled in, so that a clip decides what the user left open.
    """
    given = [field for field in INPUT_FIELDS if field != "fit" and getattr(spec, field) not in (None, ())]
    for field in given:
        if field not in family.inputs:
            takers = _takers(field)
            raise UserError(f"{INPUT_FIELDS[field]}: this {family.name} model ({task}) does not take it"
                            + (f" (it is for {takers} models)" if takers else ""))
    if spec.fit and not (spec.video or spec.mask):
        raise UserError("--fit resamples input clips: give --video (and --mask) with it")
    if spec.mask and not spec.video:
        raise UserError("--mask needs the control video it masks: give --video too")
    if "video" in family.required_inputs and not spec.video:
        raise UserError(f"this {family.name} model ({task}) renders from a video: give it with --video")
    from videogen.images import load_image

    for ref in spec.reference_images:  # read now: an unreadable image is refused before loading
        load_image(ref, "--reference-image")
    spec = spec.replace(**{k: str(Path(v).expanduser().resolve()) for k in CLIP_FLAGS
                           if (v := getattr(spec, k)) is not None},
                        reference_images=tuple(str(Path(r).expanduser().resolve()) for r in spec.reference_images))
    if spec.video is None:
        return spec
    video = read_clip(spec.video, "--video")
    want = (spec.frames, spec.height, spec.width)
    if spec.fit:  # what the user left open comes from the clip, rounded to the nearest valid value
        fill = valid_shape(geometry, video.shape)
        if spec.mask:
            read_clip(spec.mask, "--mask")
    else:
        for clip in [video] + ([read_clip(spec.mask, "--mask")] if spec.mask else []):
            problem = clip_problem(clip, geometry, want if clip is video else video.shape)
            if problem:
                raise UserError(problem)
        fill = video.shape
    label = "the --video clip" + (", fitted" if spec.fit else "")
    filled = {name: value for name, value in zip(("frames", "height", "width"), fill, strict=True) if getattr(spec, name) is None}
    where = {**spec.extras.get("where", {}), **dict.fromkeys(filled, label)}
    return spec.replace(**filled, extras={**spec.extras, "where": where})


def _takers(field: str) -> str:
    from videogen.families import FAMILIES

    names = [p for f in FAMILIES if field in f.inputs for p in f.pipelines]
    return ", ".join(dict.fromkeys(names))


def load_clip(spec: RenderSpec, field: str) -> np.ndarray:
    """The clip of `field` at exactly the render's frames and size (resampled only under --fit), uint8."""
    assert spec.frames and spec.height and spec.width
    clip = read_clip(getattr(spec, field), CLIP_FLAGS[field])
    want = (spec.frames, spec.height, spec.width)
    if clip.shape == want:
        return clip.frames
    if not spec.fit:  # checked before loading, so the file changed since
        f, h, w = clip.shape
        raise UserError(f"{clip.flag} {clip.path}: now {f} frames of {w}x{h}, not the {want[0]} frames of "
                        f"{want[2]}x{want[1]} it had when checked (the file changed)")
    return fit_clip(clip, want)


def fit_clip(clip: Clip, want: tuple[int, int, int]) -> np.ndarray:
    """Resample in time (nearest source frame, first and last kept), then fit each frame like --image."""
    import numpy as np
    from PIL import Image

    from videogen.images import fit_image

    f, h, w = want
    n = clip.shape[0]
    index = [0] * f if n == 1 or f == 1 else [round(i * (n - 1) / (f - 1)) for i in range(f)]
    log.info("%s: clip of %d frames %dx%d resampled to %d frames %dx%d (--fit)", clip.flag, n, clip.shape[2],
             clip.shape[1], f, w, h)
    return np.stack([np.asarray(fit_image(Image.fromarray(clip.frames[i]), w, h, clip.flag)) for i in index])


def describe(spec: RenderSpec) -> dict[str, Any]:
    """The inputs of a render for its run record: absolute path, sha256, and what --fit did."""
    out: dict[str, Any] = {}
    for field, flag in CLIP_FLAGS.items():
        value = getattr(spec, field)
        if value is None:
            continue
        clip = read_clip(value, flag)
        entry = {"path": str(clip.path), "sha256": sha256(clip.path), "frames": clip.shape[0],
                 "height": clip.shape[1], "width": clip.shape[2]}
        if clip.shape != (spec.frames, spec.height, spec.width):
            entry["fit"] = {"frames": spec.frames, "height": spec.height, "width": spec.width}
        out[flag] = entry
    if spec.reference_images:
        out["--reference-image"] = [{"path": r, "sha256": sha256(Path(r))} for r in spec.reference_images]
    return out


def check_unchanged(inputs: dict[str, Any], spec: RenderSpec, where: str) -> None:
    """A re-render from a record refuses an input file that is no longer the one the record (`inputs`) names."""
    entries = []
    for entry in inputs.values():
        entries.extend(entry if isinstance(entry, list) else [entry])
    used = {spec.video, spec.mask, *spec.reference_images}
    for entry in entries:
        path = Path(entry.get("path", ""))
        if str(path) not in used:
            continue  # a flag replaced this input
        if not path.exists():
            raise UserError(f"{where}: input {path} named by the run record is missing")
        if sha256(path) != entry.get("sha256"):
            raise UserError(f"{where}: input {path} changed since the recorded render "
                            f"(sha256 was {entry.get('sha256')}); restore it or give the new file by its flag")
