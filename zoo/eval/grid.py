"""One PNG showing samples: a row per prompt (its text on the left), a column per sample.

    write_grid("runs/demo/eval/grid.png", rows, base_dir="runs/demo/eval")

`rows` are the sample rows of zoo-eval / zoo-sample (`prompt`, `images` relative to
`base_dir`, optional `scores` and `accepted`). Small images are enlarged without smoothing so
that a 32x32 sample stays readable in a README.
"""

import textwrap
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

from zoo.errors import ZooError

BACKGROUND = (255, 255, 255)
TEXT = (20, 20, 20)
OK, BAD = (0, 150, 0), (200, 0, 0)


def _font(size):
    from PIL import ImageFont
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def write_grid(path, rows: Sequence[Dict[str, Any]], base_dir, cell: int = 96,
               max_rows: Optional[int] = 16, label_width: int = 260) -> Path:
    """Writes the grid PNG to `path` and returns it."""
    from PIL import Image, ImageDraw

    rows = list(rows)[:max_rows] if max_rows else list(rows)
    if not rows:
        raise ZooError("no samples to put in the grid")
    base = Path(base_dir)
    columns = max(len(r["images"]) for r in rows)
    pad = 6
    width = label_width + columns * (cell + pad) + pad
    height = len(rows) * (cell + pad) + pad
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    font = _font(13)
    for r, row in enumerate(rows):
        top = pad + r * (cell + pad)
        lines = textwrap.wrap(row["prompt"], width=max(10, label_width // 8))[:cell // 16]
        draw.multiline_text((pad, top + 2), "\n".join(lines), fill=TEXT, font=font, spacing=2)
        accepted = row.get("accepted")
        for c, name in enumerate(row["images"]):
            left = label_width + pad + c * (cell + pad)
            with Image.open(base / name) as im:
                im = im.convert("RGB")
                scale = Image.NEAREST if im.width * 2 <= cell else Image.BICUBIC
                canvas.paste(im.resize((cell, cell), scale), (left, top))
            if accepted is not None and c < len(accepted) and accepted[c] is not None:
                colour = OK if accepted[c] else BAD
                draw.rectangle([left - 2, top - 2, left + cell + 1, top + cell + 1],
                               outline=colour, width=2)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path, format="PNG")
    return path
