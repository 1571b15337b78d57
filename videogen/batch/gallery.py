"""The batch gallery: `index.html` in the output folder, rewritten atomically after each item.

One card per item: its thumbnail (a poster frame that plays on hover), prompt, seed, settings, state (done, failed
with its error, pending) and links to the video and its run record. Plain HTML, CSS and a few lines of script with
relative links only: it opens from file:// with no server and no network. Posters are JPEG files in `thumbs/`
(none for PNG-frame outputs, whose first frame is the poster).

Each item's state comes from the manifest lines (every rank's), so the page shows what every rank finished by the
time rank 0 rewrites it.
"""

from __future__ import annotations

import contextlib
import html
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from videogen.batch.manifest import MANIFEST, read_manifest, read_text, shard_paths, write_atomic
from videogen.batch.plan import Item, State

if TYPE_CHECKING:
    import numpy as np

INDEX = "index.html"
THUMBS = "thumbs"
GENERATOR = '<meta name="generator" content="videogen batch">'  # how a rerun knows the page is its own
OLD_MARK = "// Thumbnails play while the pointer is on them."  # pages written before the generator tag
POSTER_WIDTH = 320  # larger frames are scaled down; smaller ones are enlarged by the page, not in the file


def poster_path(output: Path) -> Path:
    return output.parent / THUMBS / f"{output.name}.jpg"


def write_poster(frames: np.ndarray, output: Path) -> None:
    """The first frame as the item's poster (MP4, WebM, GIF): a small JPEG, written atomically."""
    if output.suffix.lower() not in (".mp4", ".webm", ".gif"):
        return
    from PIL import Image

    image = Image.fromarray(frames[0])
    if image.width > POSTER_WIDTH:
        image = image.resize((POSTER_WIDTH, max(1, round(image.height * POSTER_WIDTH / image.width))))
    path = poster_path(output)
    path.parent.mkdir(exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")
    image.save(tmp, format="JPEG", quality=85)
    tmp.replace(path)


def clean_stale(out_dir: Path) -> None:
    """The page's and posters' temporary files left by a killed process (rank 0 holds its lock)."""
    for stale in [*out_dir.glob(f".{INDEX}.partial-*"), *(out_dir / THUMBS).glob(".*.partial-*")]:
        with contextlib.suppress(OSError):
            stale.unlink()


def is_gallery(path: Path) -> bool:
    """Whether `path` is a page a batch wrote (and may rewrite), not someone's own index.html."""
    text = read_text(path)
    return text is not None and (GENERATOR in text or OLD_MARK in text)


class Gallery:
    def __init__(self, out_dir: Path, items: list[Item], batch_file: str):
        self.out_dir, self.items, self.batch_file = out_dir, items, batch_file

    def states(self) -> dict[str, dict[str, Any]]:
        """Item key -> its latest manifest line, from manifest.jsonl and every rank's shard."""
        latest: dict[str, dict[str, Any]] = {}
        for path in [self.out_dir / MANIFEST, *shard_paths(self.out_dir)]:
            for line in read_manifest(path):
                latest[str(line.get("key"))] = line
        return latest

    @property
    def index(self) -> Path:
        return self.out_dir / INDEX

    def write(self) -> None:
        write_atomic(self.index, self.render())

    def render(self) -> str:
        lines = self.states()
        cards, counts = [], {"done": 0, "failed": 0, "pending": 0}
        for item in self.items:
            line = lines.get(item.key, {})
            state = str(line.get("state") or "")
            if state == State.DONE and not (item.output.exists() or item.output.is_symlink()):
                state = ""  # deleted since: to be rendered again
            shown = {State.DONE: "done", State.FAILED: "failed"}.get(state, "pending")  # type: ignore[call-overload]
            counts[shown] += 1
            cards.append(self.card(item, shown, str(line.get("error") or "")))
        summary = ", ".join(f"{n} {state}" for state, n in counts.items())
        title = f"{Path(self.batch_file).name}: {len(self.items)} item(s)"
        updated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        return PAGE.format(title=esc(title), summary=esc(summary), updated=updated, cards="\n".join(cards),
                           script=SCRIPT, generator=GENERATOR)

    def card(self, item: Item, state: str, error: str) -> str:
        from videogen.video import record_path

        s = item.spec
        name = item.output.name
        settings = {"seed": s.seed, "frames": s.frames, "size": f"{s.width}x{s.height}" if s.width and s.height else None,
                    "steps": s.steps, "guidance": s.guidance, "model": s.model}
        settings.update({f: getattr(s, f) for f in item.fields if f not in settings and f not in ("width", "height")})
        rows = "".join(f"<dt>{esc(k)}</dt><dd>{esc('default' if v is None else v)}</dd>" for k, v in settings.items())
        where = ", ".join((item.where, *item.also))
        links = ""
        thumb = '<div class="thumb empty">pending</div>' if state != "failed" else '<div class="thumb empty">failed</div>'
        if state == "done":
            thumb = self.thumb(item)
            record = record_path(item.output).relative_to(self.out_dir).as_posix()
            links = (f'<p class="links"><a class="video" href="{url(name)}">video</a> '
                     f'<a class="record" href="{url(record)}">record</a></p>')
        problem = f'<p class="error">{esc(error)}</p>' if state == "failed" and error else ""
        return (f'<figure class="item {state}" id="item-{item.index}" data-state="{state}">{thumb}<figcaption>'
                f'<p class="prompt">{esc(s.prompt)}</p><p class="state">{state}</p>{problem}'
                f'<dl>{rows}<dt>from</dt><dd>{esc(where)}</dd></dl>{links}</figcaption></figure>')

    def thumb(self, item: Item) -> str:
        name = item.output.name
        poster = poster_path(item.output)
        poster_url = url(poster.relative_to(self.out_dir).as_posix()) if poster.is_file() else ""
        suffix = item.output.suffix.lower()
        if suffix in (".mp4", ".webm"):
            attr = f' poster="{poster_url}"' if poster_url else ""
            return (f'<video class="thumb" src="{url(name)}"{attr} muted loop playsinline preload="metadata">'
                    f'</video>')
        if suffix == ".gif":
            return f'<img class="thumb" src="{poster_url or url(name)}" data-anim="{url(name)}" alt="">'
        frames = 0
        with contextlib.suppress(OSError):
            frames = sum(1 for _ in item.output.glob("frame_*.png"))
        return (f'<img class="thumb" src="{url(name)}/frame_00000.png" data-folder="{url(name)}" '
                f'data-frames="{frames}" data-fps="{item.spec.fps or 16}" alt="">')


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def url(relative: str) -> str:
    return quote(relative, safe="/")


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
{generator}
<title>{title}</title>
<link rel="icon" href="data:,">
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; background: #111; color: #ddd; }}
h1 {{ font-size: 1.3em; margin: 0 0 .2em; }}
.meta {{ color: #999; margin: 0 0 1em; }}
.grid {{ display: grid; grid-template-columns: repeat(auto-fill, minmax(260px, 1fr)); gap: 1em; }}
.item {{ margin: 0; background: #1c1c1c; border-radius: 6px; overflow: hidden; border-top: 4px solid #555; }}
.item.done {{ border-top-color: #3a7; }} .item.failed {{ border-top-color: #c44; }}
.thumb {{ display: block; width: 100%; aspect-ratio: 16 / 10; object-fit: contain; background: #000;
          image-rendering: pixelated; }}
.thumb.empty {{ display: flex; align-items: center; justify-content: center; color: #777; }}
figcaption {{ padding: .6em .8em; }}
.prompt {{ margin: 0 0 .3em; color: #fff; word-break: break-word; }}
.state {{ margin: 0; font-weight: bold; text-transform: uppercase; font-size: .8em; }}
.error {{ margin: .3em 0; color: #f88; word-break: break-word; }}
dl {{ display: grid; grid-template-columns: auto 1fr; gap: 0 .6em; margin: .4em 0; font-size: .85em; }}
dt {{ color: #888; }} dd {{ margin: 0; word-break: break-all; }}
a {{ color: #8cf; margin-right: .8em; }}
</style>
</head>
<body>
<h1>{title}</h1>
<p class="meta">{summary} &middot; updated {updated}</p>
<div class="grid">
{cards}
</div>
<script>
{script}
</script>
</body>
</html>
"""

SCRIPT = """"use strict";
// Thumbnails play while the pointer is on them.
for (const v of document.querySelectorAll("video.thumb")) {
  v.addEventListener("mouseenter", () => { v.play().catch(() => {}); });
  v.addEventListener("mouseleave", () => { v.pause(); });
}
for (const img of document.querySelectorAll("img[data-anim]")) {
  const still = img.getAttribute("src");
  img.addEventListener("mouseenter", () => { img.src = img.dataset.anim; });
  img.addEventListener("mouseleave", () => { img.src = still; });
}
for (const img of document.querySelectorAll("img[data-folder]")) {
  const n = Number(img.dataset.frames), still = img.getAttribute("src");
  let timer = null, i = 0;
  img.addEventListener("mouseenter", () => {
    if (n < 2) return;
    timer = setInterval(() => {
      i = (i + 1) % n;
      img.src = img.dataset.folder + "/frame_" + String(i).padStart(5, "0") + ".png";
    }, 1000 / Number(img.dataset.fps));
  });
  img.addEventListener("mouseleave", () => { clearInterval(timer); i = 0; img.src = still; });
}"""
