"""Pictures in the terminal: kitty's graphics protocol, iTerm2's inline images, or sixel, when one is known.

Detected from the environment only (no terminal query, which would need to read stdin): KITTY_WINDOW_ID or
TERM=xterm-kitty (also Ghostty) for kitty; TERM_PROGRAM iTerm.app or WezTerm for iTerm2; a TERM known to
draw sixel (foot, mlterm, contour, or one that says "sixel"). Off otherwise, and off when stderr is not a TTY.
A new picture is printed above the progress bar at most once a second (and for the first step). In kitty it
reuses one image id: re-sending an image deletes its earlier placements, so only the newest stays on screen
(kitty's in-place update, through its animation frames, is not used: Ghostty lacks it).
"""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Callable, Mapping

import numpy as np

SIXEL_TERMS = ("foot", "mlterm", "contour", "yaft")
KITTY_IMAGE_ID = 7501  # one image id, re-sent each time: the terminal keeps only the newest picture


def protocol(env: Mapping[str, str], isatty: bool) -> str | None:
    """'kitty', 'iterm2', 'sixel' or None."""
    if not isatty:
        return None
    term, program = env.get("TERM", ""), env.get("TERM_PROGRAM", "")
    if env.get("KITTY_WINDOW_ID") or term in ("xterm-kitty", "xterm-ghostty") or program == "ghostty":
        return "kitty"
    if program in ("iTerm.app", "WezTerm"):
        return "iterm2"
    if "sixel" in term or term.split("-")[0] in SIXEL_TERMS:
        return "sixel"
    return None


def png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def kitty(image: np.ndarray) -> str:
    """Transmit and place a PNG under one image id (which removes the picture sent before it)."""
    data = base64.b64encode(png_bytes(image)).decode()
    chunks = [data[i:i + 4096] for i in range(0, len(data), 4096)] or [""]
    out = []
    for n, chunk in enumerate(chunks):
        more = int(n < len(chunks) - 1)
        keys = f"a=T,f=100,i={KITTY_IMAGE_ID},q=2,m={more}" if n == 0 else f"m={more}"
        out.append(f"\x1b_G{keys};{chunk}\x1b\\")
    return "".join(out)


def iterm2(image: np.ndarray) -> str:
    data = png_bytes(image)
    return f"\x1b]1337;File=inline=1;size={len(data)};preserveAspectRatio=1:{base64.b64encode(data).decode()}\x07"


def sixel(image: np.ndarray) -> str:
    """DEC sixel with a fixed 6x6x6 colour cube: six pixel rows per band, one run-length pass per colour."""
    h, w, _ = image.shape
    q = (image.astype(np.int32) * 5 + 127) // 255  # 0..5 per channel
    index = q[..., 0] * 36 + q[..., 1] * 6 + q[..., 2]
    out = ["\x1bPq", f'"1;1;{w};{h}']
    for c in np.unique(index):
        r, g, b = (int(v) * 20 for v in (c // 36, c // 6 % 6, c % 6))  # sixel colours are percentages
        out.append(f"#{c};2;{r};{g};{b}")
    for top in range(0, h, 6):
        band = index[top:top + 6]
        weights = (1 << np.arange(len(band)))[:, None]
        for c in np.unique(band):
            bits = ((band == c) * weights).sum(axis=0)
            chars = "".join(chr(63 + int(v)) for v in bits)
            out.append(f"#{c}{_runs(chars)}$")
        out.append("-")
    out.append("\x1b\\")
    return "".join(out)


def _runs(chars: str) -> str:
    out, i = [], 0
    while i < len(chars):
        j = i
        while j < len(chars) and chars[j] == chars[i]:
            j += 1
        out.append(f"!{j - i}{chars[i]}" if j - i > 3 else chars[i] * (j - i))
        i = j
    return "".join(out)


def shower(kind: str, write: Callable[[str], None], interval: float = 1.0) -> Callable[[np.ndarray], None]:
    """A per-step callback drawing the preview with `write` (which must pass the text on unmeasured, as is)."""
    encode = {"kitty": kitty, "iterm2": iterm2, "sixel": sixel}[kind]
    last = [float("-inf")]

    def show(image: np.ndarray) -> None:
        now = time.monotonic()
        if now - last[0] >= interval:
            write(encode(image))
            last[0] = now

    return show
