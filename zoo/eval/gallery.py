"""An `index.html` next to generated PNGs: each prompt with its samples, scores, and groups.

    entries = [GalleryEntry(prompt="a red circle", images=["000_0.png", "000_1.png"],
                            scores=[0.31, 0.12], category="one shape")]
    write_gallery(output_dir, entries, title="zoo-sample")

Links are relative to the folder holding `index.html`, so the folder can be moved or served
as is. Samples with scores are shown best first with their rank (the reranked order); images
the shapes checker judged get a tick or a cross. PartiPrompts entries are grouped by category,
then by challenge.
"""

import dataclasses
import html
import os
import urllib.parse
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from zoo.errors import ZooError

INDEX_NAME = "index.html"


@dataclasses.dataclass
class GalleryEntry:
    """One prompt and its samples.

    Attributes:
        prompt: the prompt text (escaped when written).
        images: image paths, absolute or relative to the gallery folder.
        scores: one score per image (e.g. the contrastive reranker's), or None.
        accepted: one checker verdict per image (True / False / None), or None.
        category, challenge: PartiPrompts columns, used for grouping.
        details: extra lines shown under the prompt (e.g. "checker: colour ok, count wrong").
    """

    prompt: str
    images: Sequence[str]
    scores: Optional[Sequence[float]] = None
    accepted: Optional[Sequence[Optional[bool]]] = None
    category: Optional[str] = None
    challenge: Optional[str] = None
    details: Sequence[str] = ()


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; background: #fafafa; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.2em; margin-top: 1.5em; border-bottom: 1px solid #ccc; }
h3 { font-size: 1.05em; color: #555; }
.summary { white-space: pre-wrap; background: #fff; border: 1px solid #ddd; padding: .6em; }
.entry { background: #fff; border: 1px solid #ddd; margin: .6em 0; padding: .6em; }
.prompt { font-weight: 600; margin-bottom: .4em; }
.detail { color: #666; font-size: .9em; }
.samples { display: flex; flex-wrap: wrap; gap: .5em; }
figure { margin: 0; text-align: center; font-size: .8em; }
figure img { width: 128px; height: 128px; image-rendering: pixelated; border: 1px solid #bbb; }
.ok { color: #080; } .bad { color: #b00; }
nav a { margin-right: .8em; }
"""

# Sets <body data-images-loaded="k" data-images-total="n" data-images-broken="m"> once every
# image has finished loading, so a headless browser (and a curious user) can check the page.
_SCRIPT = """
(function () {
  function check() {
    var imgs = document.images, loaded = 0, broken = 0, pending = 0;
    for (var i = 0; i < imgs.length; i++) {
      if (!imgs[i].complete) { pending++; }
      else if (imgs[i].naturalWidth > 0) { loaded++; } else { broken++; }
    }
    if (pending > 0) { setTimeout(check, 50); return; }
    document.body.setAttribute("data-images-total", imgs.length);
    document.body.setAttribute("data-images-loaded", loaded);
    document.body.setAttribute("data-images-broken", broken);
  }
  window.addEventListener("load", check);
})();
"""


def _url(path: str, base: Path) -> str:
    p = Path(path)
    if p.is_absolute():
        p = Path(os.path.relpath(p, base))
    return urllib.parse.quote(p.as_posix())


def _entry_html(entry: GalleryEntry, base: Path) -> str:
    n = len(entry.images)
    for field in ("scores", "accepted"):
        values = getattr(entry, field)
        if values is not None and len(values) != n:
            raise ZooError(f"gallery entry for {entry.prompt!r} has {len(values)} {field} for "
                           f"{n} images; give one per image")
    order = list(range(n))
    if entry.scores is not None:  # best first: the reranked order
        order.sort(key=lambda i: -float(entry.scores[i]))
    figures = []
    for rank, i in enumerate(order, start=1):
        caption = []
        if entry.scores is not None:
            caption.append(f"#{rank} score {float(entry.scores[i]):.3f}")
        if entry.accepted is not None and entry.accepted[i] is not None:
            ok = bool(entry.accepted[i])
            caption.append(f'<span class="{"ok" if ok else "bad"}">'
                           f'{"&#10003; accepted" if ok else "&#10007; rejected"}</span>')
        alt = html.escape(f"{entry.prompt} (sample {i})", quote=True)
        figures.append(
            f'<figure><img src="{html.escape(_url(entry.images[i], base), quote=True)}" '
            f'alt="{alt}" loading="eager"><figcaption>{"<br>".join(caption)}</figcaption>'
            f'</figure>')
    details = "".join(f'<div class="detail">{html.escape(d)}</div>' for d in entry.details)
    return (f'<div class="entry"><div class="prompt">{html.escape(entry.prompt)}</div>{details}'
            f'<div class="samples">{"".join(figures)}</div></div>')


def _anchor(text: str) -> str:
    return "g-" + "".join(c if c.isalnum() else "-" for c in text.lower())


def render_gallery(entries: Sequence[GalleryEntry], base_dir, title: str = "zoo samples",
                   summary: Optional[str] = None) -> str:
    """The gallery page as a string (links relative to `base_dir`)."""
    base = Path(base_dir).resolve()
    parts = [f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
             f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>"]
    if summary:
        parts.append(f'<div class="summary">{html.escape(summary)}</div>')
    grouped = any(e.category or e.challenge for e in entries)
    if not grouped:
        parts += [_entry_html(e, base) for e in entries]
    else:
        groups: Dict[str, Dict[str, List[GalleryEntry]]] = {}
        for e in entries:  # keep first-seen order of categories and challenges
            groups.setdefault(e.category or "(no category)", {}).setdefault(
                e.challenge or "", []).append(e)
        parts.append("<nav>" + "".join(
            f'<a href="#{_anchor(c)}">{html.escape(c)} '
            f'({sum(len(v) for v in ch.values())})</a>' for c, ch in groups.items()) + "</nav>")
        for category, challenges in groups.items():
            parts.append(f'<h2 id="{_anchor(category)}">{html.escape(category)}</h2>')
            for challenge, items in challenges.items():
                if challenge:
                    parts.append(f"<h3>{html.escape(challenge)}</h3>")
                parts += [_entry_html(e, base) for e in items]
    parts.append(f"<script>{_SCRIPT}</script></body></html>\n")
    return "\n".join(parts)


def write_gallery(output_dir, entries: Sequence[GalleryEntry], title: str = "zoo samples",
                  summary: Optional[str] = None, check_images: bool = True) -> Path:
    """Writes `output_dir/index.html` and returns its path.

    Args:
        check_images: raise if a referenced image does not exist (a broken gallery is a bug).
    """
    base = Path(output_dir)
    base.mkdir(parents=True, exist_ok=True)
    if check_images:
        for e in entries:
            for image in e.images:
                p = Path(image) if Path(image).is_absolute() else base / image
                if not p.is_file():
                    raise ZooError(f"gallery image {str(p)!r} for prompt {e.prompt!r} does not "
                                   f"exist; write the images before the gallery")
    page = render_gallery(entries, base, title=title, summary=summary)
    path = base / INDEX_NAME
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, path)
    return path
