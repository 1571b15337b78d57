"""Conditioning images (--image, --last-image): read a file, fit it to the render size, turn it into tensors.

Every image-to-video family shares this, so an image is treated the same whatever the model: the largest
centred region with the video's aspect ratio is cut out and resized (Lanczos) to exactly width x height.
Nothing is stretched, and what was cut is said on the log.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from videogen.errors import UserError

if TYPE_CHECKING:
    import torch
    from PIL import Image

log = logging.getLogger("videogen")


def load_image(path: str | Path, flag: str = "--image") -> Image.Image:
    """An RGB image from a file; unreadable files are user errors that name the flag."""
    from PIL import Image, UnidentifiedImageError

    p = Path(path).expanduser()
    if not p.is_file():
        raise UserError(f"{flag}: file not found: {path}")
    try:
        with Image.open(p) as im:
            im.load()
            return im.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise UserError(f"{flag}: cannot read {path} as an image ({type(e).__name__})") from None


def crop_box(src_w: int, src_h: int, width: int, height: int) -> tuple[int, int, int, int]:
    """The largest centred (left, top, right, bottom) box of src with the aspect ratio width:height."""
    if src_w * height > width * src_h:  # source is wider: cut the sides
        w = max(1, round(src_h * width / height))
        left = (src_w - w) // 2
        return left, 0, left + w, src_h
    h = max(1, round(src_w * height / width))
    top = (src_h - h) // 2
    return 0, top, src_w, top + h


def fit_image(image: Image.Image, width: int, height: int, flag: str = "--image") -> Image.Image:
    """Centre-crop to the render's aspect ratio, then resize to width x height (one Lanczos resample)."""
    from PIL import Image

    src_w, src_h = image.size
    if (src_w, src_h) == (width, height):
        return image
    box = crop_box(src_w, src_h, width, height)
    cut = (box[2] - box[0], box[3] - box[1])
    how = "no crop" if cut == (src_w, src_h) else f"centre crop {cut[0]}x{cut[1]} at ({box[0]},{box[1]})"
    log.info("%s: image %dx%d resized to %dx%d (%s)", flag, src_w, src_h, width, height, how)
    return image.resize((width, height), resample=Image.Resampling.LANCZOS, box=box)


def cover_image(image: Image.Image, width: int, height: int, flag: str = "--image") -> Image.Image:
    """Resize (Lanczos, sides rounded down) until the image covers width x height, then cut out the centre: the
    other order of `fit_image`, which some pipelines apply themselves (diffusers' resize_mode="crop")."""
    from PIL import Image

    src_w, src_h = image.size
    size = (width, src_h * width // src_w) if width * src_h > src_w * height else (src_w * height // src_h, height)
    left, top = size[0] // 2 - width // 2, size[1] // 2 - height // 2
    if (src_w, src_h) != (width, height):
        log.info("%s: image %dx%d resized to %dx%d, centre %dx%d cut at (%d,%d)", flag, src_w, src_h, *size, width,
                 height, left, top)
    return image.resize(size, resample=Image.Resampling.LANCZOS).crop((left, top, left + width, top + height))


def load_fitted(path: str | Path, width: int, height: int, flag: str = "--image") -> Image.Image:
    return fit_image(load_image(path, flag), width, height, flag)


def to_tensor(image: Image.Image) -> torch.Tensor:
    """PIL RGB -> float32 [1, 3, H, W] in [-1, 1], computed as diffusers' VaeImageProcessor does."""
    import numpy as np
    import torch

    array = np.array(image.convert("RGB")).astype(np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0) * 2.0 - 1.0


def recompress_h264(image: Image.Image, crf: int) -> Image.Image:
    """The image as one H.264 frame at `crf` would show it (encoded and decoded again), for models trained on
    compressed video stills (LTX-2). Odd sides lose their last row or column, as a 4:2:0 frame needs even sides.

    It does what diffusers' `apply_image_conditioning_crf` does with PyAV (libx264 preset veryfast, RGB to 4:2:0
    with swscale's bilinear filter, and back), through the ffmpeg that writes the videos. One encoder thread:
    libx264's sliced threads, PyAV's default, would make the pixels depend on the machine's core count."""
    import subprocess

    import imageio_ffmpeg
    import numpy as np
    from PIL import Image

    from videogen.errors import RenderError

    rgb = np.asarray(image.convert("RGB"))
    h, w = rgb.shape[0] // 2 * 2, rgb.shape[1] // 2 * 2
    quiet = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error"]
    raw = ["-f", "rawvideo", "-pix_fmt", "rgb24"]
    encode = [*quiet, *raw, "-s", f"{w}x{h}", "-r", "1", "-i", "-", "-sws_flags", "bilinear", "-c:v", "libx264",
              "-threads", "1", "-preset", "veryfast", "-crf", str(crf), "-pix_fmt", "yuv420p", "-f", "h264", "-"]
    decode = [*quiet, "-f", "h264", "-i", "-", "-sws_flags", "bilinear", "-frames:v", "1", *raw, "-"]
    stream = subprocess.run(encode, input=np.ascontiguousarray(rgb[:h, :w]).tobytes(), capture_output=True)
    pixels = subprocess.run(decode, input=stream.stdout, capture_output=True) if stream.returncode == 0 else stream
    if pixels.returncode != 0 or len(pixels.stdout) != h * w * 3:
        raise RenderError(f"ffmpeg failed re-compressing the image: {pixels.stderr.decode(errors='replace')[-300:]}")
    return Image.fromarray(np.frombuffer(pixels.stdout, np.uint8).reshape(h, w, 3))
