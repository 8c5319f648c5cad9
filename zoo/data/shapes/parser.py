"""Reading captions back: `parse_caption` turns a caption (the grammar's, or a looser
paraphrase) into the `Group`s it describes."""

import re
from typing import List

import numpy as np

from zoo.data.shapes.config import CELL_NAMES, COLOURS, SHAPES
from zoo.data.shapes.grammar import _NUMBERS, _SIZE_WORDS
from zoo.data.shapes.scenes import Group
from zoo.errors import ZooError

_SIZE_LOOKUP = {w: size for size, words in _SIZE_WORDS.items() for w in words}
_SIZE_LOOKUP.update({"tiny": "small", "huge": "large"})
_NUMBER_LOOKUP = {w: i for i, w in enumerate(_NUMBERS) if i > 0}
_NUMBER_LOOKUP.update({"a": 1, "an": 1})
_SHAPE_LOOKUP = {s: s for s in SHAPES}
_SHAPE_LOOKUP.update({s + "s": s for s in SHAPES})
_PREFIX_RE = re.compile(r"^(?:(?:a|an) (?:picture|image|photo|drawing) of|there (?:is|are))\s+")
_SPLIT_RE = re.compile(r"\s*,\s*(?:and\s+)?|\s+and\s+")


def parse_caption(text: str) -> List[Group]:
    """The groups a synthetic_shapes caption describes; ZooError if it is not one."""
    if not isinstance(text, str):
        text = bytes(text).decode("utf-8", "replace") if isinstance(
            text, (bytes, bytearray, np.bytes_)) else str(text)
    norm = re.sub(r"[.!;:]+", " ", text.lower()).strip()
    norm = re.sub(r"\s+", " ", norm)
    norm = _PREFIX_RE.sub("", norm)
    if not norm:
        raise ZooError(f"not a synthetic_shapes caption: {text!r} (empty)")
    groups = []
    for part in _SPLIT_RE.split(norm):
        if not part:
            continue
        words = part.split()
        count = colour = shape = size = None
        row = col = None
        centred = False
        for w in words:
            if w in _NUMBER_LOOKUP and count is None and colour is None:
                count = _NUMBER_LOOKUP[w]
            elif w.isdigit() and count is None:
                count = int(w)
            elif w in COLOURS:
                colour = w
            elif w in _SHAPE_LOOKUP:
                shape = _SHAPE_LOOKUP[w]
            elif w in _SIZE_LOOKUP:
                size = _SIZE_LOOKUP[w]
            elif w in ("top", "upper"):
                row = 0
            elif w in ("bottom", "lower"):
                row = 2
            elif w == "left":
                col = 0
            elif w == "right":
                col = 2
            elif w in ("centre", "center", "middle"):
                centred = True
        if colour is None or shape is None:
            raise ZooError(f"not a synthetic_shapes caption: {text!r} (no colour and shape in "
                           f"{part!r}; colours: {', '.join(COLOURS)}; shapes: "
                           f"{', '.join(SHAPES)})")
        position = None
        if row is not None or col is not None or centred:
            position = CELL_NAMES[(1 if row is None else row, 1 if col is None else col)]
        groups.append(Group(count or 1, colour, shape, size, position))
    return groups
