"""Built-in `synthetic_shapes` data: procedural coloured shapes with English captions, and a checker.

Every example is a pure function of (seed, split, index): no download, random access, the same
bytes on every machine. The images are made to be learnable by a tiny text-to-image model in
minutes on a CPU (few clearly distinct colours, a few shapes on a 3x3 grid, a black background),
and the checker tells whether an image (generated or produced by a model) shows what its caption
says.

Scene: 1..`max_objects` objects, each in its own cell of a 3x3 grid (centred in the cell, plus
optional `jitter`), drawn with anti-aliased edges on black. Objects come in groups: a *single*
object (its position is named in the caption) or, with probability `count_probability`, one
*counted* group of 2..`max_count` identical objects (position not named). Groups in one scene
differ in (colour, shape).

Caption grammar (one caption per image; words in quotes are literal):

    caption  := [prefix] group {", " group} [" and " group]
    prefix   := "a picture of " | "an image of " | "there is " | "there are "
    group    := single | counted
    single   := article [size " "] colour " " shape " " position
    counted  := number " " [size " "] colour " " shape "s"
    article  := "a" | "an"
    number   := "two" | "three" | ... | "nine"
    size     := "small" | "little" | "large" | "big"      (only when `sizes` has two entries)
    colour   := "red" | "green" | "blue" | "yellow" | "purple" | "white"
    shape    := "circle" | "square" | "triangle" | "diamond"
    position := "at the top left" | "in the top left corner" | "in the upper left"
              | "at the top" | "at the top centre" | "at the top right" | ...
              | "on the left" | "on the left side" | "in the centre" | "in the middle"
              | "on the right" | "at the bottom left" | "in the lower right" | ...

Examples: "a red circle at the top left", "two blue squares", "a picture of a small green
triangle on the right and a big white circle in the middle".

Splits: `train`, `validation` and `test` use disjoint random streams (seed, split, index).
`heldout_percent` of all caption *meanings* (the scene as the caption describes it: groups with
count, colour, shape, size and named position; phrasing aside) never occur in train or
validation; `test` draws only from them, so test captions describe combinations a model has not
seen. With `holdout_pairs` (e.g. (("yellow", "triangle"),)), those colour-shape pairs never occur
in train/validation/test and the `compositional` split contains only scenes that use them.

The checker (`check`, `check_features`) works on generated images and on model outputs (soft,
noisy reconstructions): it segments the image by colour (each pixel is matched to the palette
colour whose black-to-colour ray it lies closest to, so anti-aliased or blurred edges keep their
colour, and its position along the ray is its coverage), finds connected components, and
describes each by its cell (position, from the centroid), its extent (size, from the covered
area) and its shape: the shape whose anti-aliased drawing, sharp or blurred, registered to the
component's area and centroid, best overlaps the component's coverage (soft IoU). Then it
matches the objects the caption describes to the objects found.
"""

import dataclasses
import functools
import json
import math
import re
import zlib
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from zoo.errors import ZooError

# Palette (RGB, 0-255): clearly distinct hues and brightnesses, all far from the black background.
COLOURS: Dict[str, Tuple[int, int, int]] = {
    "red": (230, 40, 40),
    "green": (40, 190, 60),
    "blue": (50, 90, 240),
    "yellow": (240, 220, 40),
    "purple": (160, 60, 210),
    "white": (240, 240, 240),
}
SHAPES = ("circle", "square", "triangle", "diamond")
DEFAULT_SHAPES = ("circle", "square", "triangle")
# Extent (width = height) of an object as a fraction of its grid cell.
SIZES: Dict[str, float] = {"small": 0.5, "large": 0.8}
GRID = 3
POSITIONS: Dict[str, Tuple[int, int]] = {  # name -> (row, column)
    "top left": (0, 0), "top": (0, 1), "top right": (0, 2),
    "left": (1, 0), "centre": (1, 1), "right": (1, 2),
    "bottom left": (2, 0), "bottom": (2, 1), "bottom right": (2, 2),
}
CELL_NAMES = {cell: name for name, cell in POSITIONS.items()}
SPLITS = ("train", "validation", "test", "compositional")
_SPLIT_IDS = {name: i for i, name in enumerate(SPLITS)}

_POSITION_PHRASES = {
    "top left": ("at the top left", "in the top left corner", "in the upper left"),
    "top": ("at the top", "at the top centre", "in the top middle"),
    "top right": ("at the top right", "in the top right corner", "in the upper right"),
    "left": ("on the left", "on the left side", "at the left"),
    "centre": ("in the centre", "in the middle", "in the center"),
    "right": ("on the right", "on the right side", "at the right"),
    "bottom left": ("at the bottom left", "in the bottom left corner", "in the lower left"),
    "bottom": ("at the bottom", "at the bottom centre", "in the bottom middle"),
    "bottom right": ("at the bottom right", "in the bottom right corner", "in the lower right"),
}
_SIZE_WORDS = {"small": ("small", "little"), "large": ("large", "big")}
_NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_PREFIXES = ("", "", "", "a picture of ", "an image of ", "there is ")


# -- configuration ------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ShapesConfig:
    """How hard the data is. See the module docstring for what each knob changes."""

    image_size: int = 64
    colours: Tuple[str, ...] = tuple(COLOURS)
    shapes: Tuple[str, ...] = DEFAULT_SHAPES
    sizes: Tuple[str, ...] = ("small", "large")
    positions: Tuple[str, ...] = tuple(POSITIONS)
    max_objects: int = 2
    max_count: int = 2
    count_probability: float = 0.3
    jitter: float = 0.0
    heldout_percent: float = 10.0
    holdout_pairs: Tuple[Tuple[str, str], ...] = ()

    def __post_init__(self):
        def bad(msg):
            raise ZooError(f"synthetic_shapes: {msg}")

        for field in ("colours", "shapes", "sizes", "positions"):
            value = getattr(self, field)
            if isinstance(value, str):
                object.__setattr__(self, field, (value,))
            else:
                object.__setattr__(self, field, tuple(value))
        object.__setattr__(self, "holdout_pairs",
                           tuple(tuple(p) for p in self.holdout_pairs))
        for field, known in (("colours", COLOURS), ("shapes", SHAPES), ("sizes", SIZES),
                             ("positions", POSITIONS)):
            values = getattr(self, field)
            if not values:
                bad(f"{field} must not be empty (choose from {', '.join(known)})")
            for v in values:
                if v not in known:
                    from zoo.errors import suggest
                    bad(f"unknown {field[:-1]} {v!r}; {suggest(str(v), known, field[:-1])}")
            if len(set(values)) != len(values):
                bad(f"{field} has duplicates: {values}")
        if not isinstance(self.image_size, int) or self.image_size < 3 * GRID * 2:
            bad(f"image_size must be an integer >= {3 * GRID * 2}, got {self.image_size!r}")
        if not isinstance(self.max_objects, int) or not 1 <= self.max_objects <= len(
                self.positions):
            bad(f"max_objects must be between 1 and the number of positions "
                f"({len(self.positions)}), got {self.max_objects!r}")
        if not isinstance(self.max_count, int) or self.max_count < 1:
            bad(f"max_count must be a positive integer, got {self.max_count!r}")
        if not 0.0 <= self.count_probability <= 1.0:
            bad(f"count_probability must be in [0, 1], got {self.count_probability!r}")
        if not 0.0 <= self.jitter <= 0.05:
            bad(f"jitter (in grid cells) must be in [0, 0.05] so shapes stay apart, got "
                f"{self.jitter!r}")
        if not 0.0 <= self.heldout_percent < 100.0:
            bad(f"heldout_percent must be in [0, 100), got {self.heldout_percent!r}")
        for pair in self.holdout_pairs:
            if len(pair) != 2 or pair[0] not in self.colours or pair[1] not in self.shapes:
                bad(f"holdout_pairs entries are (colour, shape) pairs from colours and shapes, "
                    f"got {pair!r}")

    @property
    def pairs(self) -> List[Tuple[str, str]]:
        return [(c, s) for c in self.colours for s in self.shapes]

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


# -- scenes and captions ------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Group:
    """What a caption says about some objects: `count` of them, all alike."""

    count: int
    colour: str
    shape: str
    size: Optional[str]  # None: the caption does not say
    position: Optional[str]  # a POSITIONS name, or None: the caption does not say

    def key(self):
        return f"{self.count}:{self.colour}:{self.shape}:{self.size}:{self.position}"


@dataclasses.dataclass(frozen=True)
class Obj:
    """One drawn object."""

    colour: str
    shape: str
    size: str
    row: int
    col: int
    dx: float = 0.0  # offset from the cell centre, in cells
    dy: float = 0.0


@dataclasses.dataclass(frozen=True)
class Scene:
    groups: Tuple[Group, ...]
    objects: Tuple[Obj, ...]

    def key(self) -> str:
        """The caption's meaning, phrasing aside (what held-out splits are made of)."""
        return "|".join(sorted(g.key() for g in self.groups))

    def to_json(self) -> str:
        return json.dumps({"groups": [dataclasses.asdict(g) for g in self.groups],
                           "objects": [dataclasses.asdict(o) for o in self.objects]})


def _heldout(key: str, percent: float) -> bool:
    # crc32, not hash(): stable across processes and machines.
    return (zlib.crc32(key.encode()) % 10000) < percent * 100


def _sample_scene(rng: np.random.Generator, cfg: ShapesConfig) -> Scene:
    n = int(rng.integers(1, cfg.max_objects + 1))
    pairs = cfg.pairs
    counted = 0
    if n >= 2 and cfg.max_count >= 2 and rng.random() < cfg.count_probability:
        counted = int(rng.integers(2, min(n, cfg.max_count) + 1))
    n_singles = n - counted
    n_groups = n_singles + (1 if counted else 0)
    if n_groups > len(pairs):  # not enough distinct (colour, shape) pairs: fewer singles
        n_singles = len(pairs) - (1 if counted else 0)
        n_groups = n_singles + (1 if counted else 0)
    n = n_singles + counted
    chosen = rng.permutation(len(pairs))[:n_groups]
    cells = rng.permutation(len(cfg.positions))[:n]
    sizes = rng.integers(0, len(cfg.sizes), size=n_groups)
    jit = rng.uniform(-cfg.jitter, cfg.jitter, size=(n, 2)) if cfg.jitter else np.zeros((n, 2))
    mention_size = len(cfg.sizes) > 1
    groups, objects = [], []
    cell_iter = iter(range(n))
    for g in range(n_groups):
        colour, shape = pairs[int(chosen[g])]
        size = cfg.sizes[int(sizes[g])]
        count = counted if (counted and g == 0) else 1
        members = [next(cell_iter) for _ in range(count)]
        position = cfg.positions[int(cells[members[0]])] if count == 1 else None
        groups.append(Group(count, colour, shape, size if mention_size else None, position))
        for m in members:
            row, col = POSITIONS[cfg.positions[int(cells[m])]]
            objects.append(Obj(colour, shape, size, row, col, float(jit[m, 0]),
                               float(jit[m, 1])))
    return Scene(tuple(groups), tuple(objects))


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _group_phrase(group: Group, rng: np.random.Generator) -> str:
    words = []
    if group.size is not None:
        options = _SIZE_WORDS[group.size]
        words.append(options[int(rng.integers(len(options)))])
    words += [group.colour, group.shape + ("s" if group.count > 1 else "")]
    if group.count == 1:
        text = _article(words[0]) + " " + " ".join(words)
    else:
        text = _NUMBERS[group.count] + " " + " ".join(words)
    if group.position is not None:
        options = _POSITION_PHRASES[group.position]
        text += " " + options[int(rng.integers(len(options)))]
    return text


def _caption(scene: Scene, rng: np.random.Generator) -> str:
    order = rng.permutation(len(scene.groups))
    phrases = [_group_phrase(scene.groups[i], rng) for i in order]
    if len(phrases) == 1:
        body = phrases[0]
    else:
        body = ", ".join(phrases[:-1]) + " and " + phrases[-1]
    prefix = _PREFIXES[int(rng.integers(len(_PREFIXES)))]
    if prefix == "there is " and scene.groups[int(order[0])].count > 1:
        prefix = "there are "
    return prefix + body


_MAX_TRIES = 2000


def sample(seed: int, index: int, split: str = "train",
           config: Optional[ShapesConfig] = None) -> Tuple[Scene, str]:
    """The scene and caption of example `index` of `split` (a pure function, random access)."""
    cfg = config or ShapesConfig()
    if split not in _SPLIT_IDS:
        from zoo.errors import suggest
        raise ZooError(f"synthetic_shapes has no split {split!r}; {suggest(split, SPLITS, 'split')}")
    if split == "compositional" and not cfg.holdout_pairs:
        raise ZooError("synthetic_shapes split 'compositional' needs holdout_pairs, e.g. "
                       "synthetic_shapes.holdout_pairs = [('yellow', 'triangle')]")
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, _SPLIT_IDS[split], int(index)])
    held_pairs = set(cfg.holdout_pairs)
    for _ in range(_MAX_TRIES):
        scene = _sample_scene(rng, cfg)
        uses_pair = any((g.colour, g.shape) in held_pairs for g in scene.groups)
        if split == "compositional":
            ok = uses_pair
        else:
            held = _heldout(scene.key(), cfg.heldout_percent)
            ok = not uses_pair and (held if split == "test" else not held)
        if ok:
            return scene, _caption(scene, rng)
    raise ZooError(f"synthetic_shapes: could not draw a {split!r} example in {_MAX_TRIES} tries; "
                   f"the configuration allows too few distinct captions for heldout_percent="
                   f"{cfg.heldout_percent} (use more colours/shapes/positions, or "
                   f"heldout_percent=0)")


def caption(seed: int, index: int, split: str = "train",
            config: Optional[ShapesConfig] = None) -> str:
    """Just the caption of an example (cheap: nothing is drawn)."""
    return sample(seed, index, split, config)[1]


def generate(seed: int, index: int, split: str = "train", config: Optional[ShapesConfig] = None,
             image_size: Optional[int] = None) -> Dict[str, object]:
    """Example `index` of `split`: dict(image=uint8 [S,S,3], caption=str, scene=Scene)."""
    cfg = config or ShapesConfig()
    scene, text = sample(seed, index, split, cfg)
    return {"image": render(scene, image_size or cfg.image_size), "caption": text,
            "scene": scene}


# -- drawing ------------------------------------------------------------------------------------

def _sdf(shape: str, x: np.ndarray, y: np.ndarray, h: float) -> np.ndarray:
    """Signed distance (pixels; < 0 inside) to a shape of half-extent h centred at 0."""
    if shape == "circle":
        return np.sqrt(x * x + y * y) - h
    if shape == "square":
        return np.maximum(np.abs(x), np.abs(y)) - h
    if shape == "diamond":
        return (np.abs(x) + np.abs(y) - h) / math.sqrt(2.0)
    if shape == "triangle":  # apex up: (0, -h), base (-h, h) .. (h, h)
        inv = 1.0 / math.sqrt(5.0)  # edge normals (+-2, -1)/sqrt(5)
        right = (2 * x - y - h) * inv
        left = (-2 * x - y - h) * inv
        return np.maximum(np.maximum(left, right), y - h)
    raise ZooError(f"unknown shape {shape!r}")


def render(scene: Scene, image_size: int) -> np.ndarray:
    """Draws a scene: uint8 [S, S, 3], anti-aliased shapes on black."""
    s = int(image_size)
    img = np.zeros((s, s, 3), np.uint8)
    cell = s / GRID
    for obj in scene.objects:
        h = SIZES[obj.size] * cell / 2
        cx = (obj.col + 0.5 + obj.dx) * cell
        cy = (obj.row + 0.5 + obj.dy) * cell
        x0, x1 = max(int(cx - h - 2), 0), min(int(math.ceil(cx + h + 2)), s)
        y0, y1 = max(int(cy - h - 2), 0), min(int(math.ceil(cy + h + 2)), s)
        xs = np.arange(x0, x1, dtype=np.float32) + 0.5 - cx
        ys = np.arange(y0, y1, dtype=np.float32)[:, None] + 0.5 - cy
        cover = np.clip(0.5 - _sdf(obj.shape, xs[None, :], ys, h), 0.0, 1.0)
        colour = np.asarray(COLOURS[obj.colour], np.float32)
        patch = np.rint(cover[..., None] * colour).astype(np.uint8)
        region = img[y0:y1, x0:x1]
        np.maximum(region, patch, out=region)
    return img


# -- reading captions ---------------------------------------------------------------------------

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


# -- checking images ----------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Detected:
    """An object found in an image."""

    colour: str
    shape: str
    size: str
    position: str
    area: float  # pixels, at the resolution the checker works at
    bbox: Tuple[int, int, int, int]  # y0, x0, y1, x1 (exclusive)
    shape_score: float  # IoU with the best shape template


_WORK_SIZE = 64  # larger images are mean-pooled to about this size (also averages noise)
_PALETTE = np.asarray(list(COLOURS.values()), np.float32)
_PALETTE_NAMES = tuple(COLOURS)


def _to_float_image(image) -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[-1] not in (3, 4) or min(arr.shape[:2]) < 6:
        raise ZooError(f"shapes checker takes an RGB image [H, W, 3], got shape {arr.shape}")
    arr = arr[..., :3]
    if arr.dtype == np.uint8:
        return arr.astype(np.float32)
    arr = arr.astype(np.float32)
    if not np.all(np.isfinite(arr)):
        arr = np.nan_to_num(arr)
    # Floats are taken as [0, 1] (the zoo's convention) unless clearly 0..255.
    return arr * 255.0 if arr.max(initial=0.0) <= 1.5 else arr


def _pool(img: np.ndarray) -> np.ndarray:
    f = max(1, min(img.shape[0], img.shape[1]) // _WORK_SIZE)
    if f == 1:
        return img
    h, w = (img.shape[0] // f) * f, (img.shape[1] // f) * f
    return img[:h, :w].reshape(h // f, f, w // f, f, 3).mean(axis=(1, 3))


def _classify_pixels(img: np.ndarray, min_cover=0.5, tolerance=70.0):
    """(palette index per pixel or -1, coverage [H, W, K] of each palette colour).

    A pixel blending colour c with black lies on the ray from 0 to c, so it keeps its colour
    whatever the blend; the colour is the ray the pixel is nearest to, the blend its coverage.
    """
    p = img.reshape(-1, 3)
    norms = (_PALETTE * _PALETTE).sum(axis=1)  # [K]
    alpha = np.clip(p @ _PALETTE.T / norms, 0.0, 1.0)  # [N, K]
    resid = np.linalg.norm(p[:, None, :] - alpha[..., None] * _PALETTE[None], axis=-1)
    resid = np.where(alpha >= min_cover, resid, np.inf)
    best = np.argmin(resid, axis=1)
    ok = resid[np.arange(len(p)), best] <= tolerance
    labels = np.where(ok, best, -1).reshape(img.shape[:2])
    return labels, alpha.reshape(img.shape[0], img.shape[1], -1)


def _components(mask: np.ndarray) -> Tuple[np.ndarray, int]:
    """4-connected components of a boolean mask: (labels with -1 outside, count)."""
    h, w = mask.shape
    big = h * w
    lab = np.where(mask, np.arange(big).reshape(h, w), big)
    while True:
        prev = lab
        m = lab.copy()
        np.minimum(m[1:], lab[:-1], out=m[1:])
        np.minimum(m[:-1], lab[1:], out=m[:-1])
        np.minimum(m[:, 1:], lab[:, :-1], out=m[:, 1:])
        np.minimum(m[:, :-1], lab[:, 1:], out=m[:, :-1])
        m = np.where(mask, m, big)
        flat = m.reshape(-1)
        # Pointer jumping: follow labels to their own labels (speeds up long chains).
        inside = flat < big
        flat[inside] = np.minimum(flat[inside], flat[flat[inside]])
        lab = flat.reshape(h, w)
        if np.array_equal(lab, prev):
            break
    roots, out = np.unique(lab[mask], return_inverse=True)
    labels = np.full((h, w), -1, np.int64)
    labels[mask] = out
    return labels, len(roots)


# Area of each shape in units of h^2 (h = half-extent), and how far its centroid lies below the
# centre of its bounding box, in units of h.
_AREA = {"circle": math.pi, "square": 4.0, "diamond": 2.0, "triangle": 2.0}
_CENTROID_DROP = {"circle": 0.0, "square": 0.0, "diamond": 0.0, "triangle": 1.0 / 3.0}


@functools.lru_cache(maxsize=256)
def _gauss_matrix(n: int, sigma: float) -> np.ndarray:
    d = np.arange(n, dtype=np.float32)
    k = np.exp(-0.5 * ((d[:, None] - d[None, :]) / sigma) ** 2)
    return k / k.sum(axis=1, keepdims=True).max()  # zero padding at the borders, like convolve


def _blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of a small 2-D array (zero padding), as two small matrix products."""
    return _gauss_matrix(int(x.shape[0]), sigma) @ x @ _gauss_matrix(int(x.shape[1]), sigma).T


_BLURS = (0.0, 0.6, 1.2)  # pixels at the working resolution: model outputs are often soft


def _fit_shape(cover: np.ndarray, y0: int, x0: int, shapes: Sequence[str]):
    """Best shape for the soft coverage `cover` (a window whose top-left pixel is (y0, x0)).

    Each shape hypothesis is registered to the observation exactly as the generator draws it:
    half-extent from the observed area, centre from the observed centroid (both survive blur);
    the score is the soft IoU between the observation and the hypothesis drawn with
    anti-aliasing, sharp or blurred (whichever fits better).
    """
    mass = float(cover.sum())
    ys = np.arange(cover.shape[0], dtype=np.float32)[:, None] + 0.5
    xs = np.arange(cover.shape[1], dtype=np.float32)[None, :] + 0.5
    cy = float((cover * ys).sum()) / mass
    cx = float((cover * xs).sum()) / mass
    best = None
    for s in shapes:
        h = math.sqrt(mass / _AREA[s])
        oy = cy - _CENTROID_DROP[s] * h
        sharp = np.clip(0.5 - _sdf(s, xs - cx, ys - oy, h), 0.0, 1.0)
        for sigma in _BLURS:
            model = _blur(sharp, sigma) if sigma else sharp
            score = float(np.minimum(model, cover).sum()
                          / max(np.maximum(model, cover).sum(), 1e-6))
            if best is None or score > best[1]:
                best = (s, score, h, oy + y0, cx + x0)
    return best


def detect(image, shapes: Sequence[str] = SHAPES) -> List[Detected]:
    """The objects in an image (generated or a model's output), largest first."""
    img = _pool(_to_float_image(image))
    h, w = img.shape[:2]
    cell_h, cell_w = h / GRID, w / GRID
    cell = min(cell_h, cell_w)
    small = SIZES["small"] * cell / 2
    min_area = max(3.0, 0.3 * math.pi * small * small)
    size_cut = (SIZES["small"] + SIZES["large"]) / 2
    pixels, alpha = _classify_pixels(img)
    taken = pixels >= 0
    found = []
    pad = 3
    for k in np.unique(pixels):
        if k < 0:
            continue
        labels, n = _components(pixels == k)
        for c in range(n):
            mine = labels == c
            ys, xs = np.nonzero(mine)
            if len(ys) < min_area:
                continue
            y0, y1 = max(ys.min() - pad, 0), min(ys.max() + 1 + pad, h)
            x0, x1 = max(xs.min() - pad, 0), min(xs.max() + 1 + pad, w)
            # Soft coverage of this colour around the component; pixels that belong to another
            # object are not ours.
            window_mine = mine[y0:y1, x0:x1]
            other = taken[y0:y1, x0:x1] & ~window_mine
            cover = np.where(other, 0.0, alpha[y0:y1, x0:x1, k])
            cover = np.clip((cover - 0.1) / 0.9, 0.0, 1.0)  # ignore faint noise
            # A dim object (a model's washed-out colour) still covers its full area.
            peak = float(np.percentile(cover[window_mine], 90))
            if 0.0 < peak < 1.0:
                cover = np.minimum(cover / peak, 1.0)
            shape, score, half, cy, cx = _fit_shape(cover, y0, x0, shapes)
            row = min(max(int(cy / cell_h), 0), GRID - 1)
            col = min(max(int(cx / cell_w), 0), GRID - 1)
            found.append(Detected(
                colour=_PALETTE_NAMES[int(k)], shape=shape,
                size="large" if 2 * half / cell > size_cut else "small",
                position=CELL_NAMES[(row, col)], area=float(cover.sum()),
                bbox=(int(ys.min()), int(xs.min()), int(ys.max()) + 1, int(xs.max()) + 1),
                shape_score=score))
    found.sort(key=lambda d: -d.area)
    return found


def _expand(groups: Sequence[Group]) -> List[Group]:
    return [g for g in groups for _ in range(g.count)]


def _matches(wanted: Sequence[Group], found: Sequence[Detected], features) -> bool:
    """Whether every wanted object can be given its own found object agreeing on `features`."""
    def agree(g, d):
        for f in features:
            v = getattr(g, f)
            if v is not None and v != getattr(d, f):
                return False
        return True

    adj = [[j for j, d in enumerate(found) if agree(g, d)] for g in wanted]
    owner = [-1] * len(found)

    def augment(i, seen):  # Kuhn's bipartite matching
        for j in adj[i]:
            if j not in seen:
                seen.add(j)
                if owner[j] < 0 or augment(owner[j], seen):
                    owner[j] = i
                    return True
        return False

    return all(augment(i, set()) for i in range(len(wanted)))


FEATURES = ("colour", "shape", "size", "position", "count")


def check_features(caption_text: str, image) -> Dict[str, Optional[bool]]:
    """Per-feature agreement of an image with its caption.

    Returns {'colour', 'shape', 'size', 'position', 'count', 'all'}: a feature is True when
    every object the caption describes can be paired with its own object in the image that
    agrees on that feature; 'count' is True when the image holds exactly as many objects as
    the caption describes; 'size' / 'position' are None when the caption names no size /
    position. 'all' is True when one pairing agrees on everything and the counts match.
    """
    wanted = _expand(parse_caption(caption_text))
    found = detect(image)
    result: Dict[str, Optional[bool]] = {}
    for f in ("colour", "shape", "size", "position"):
        if f in ("size", "position") and all(getattr(g, f) is None for g in wanted):
            result[f] = None
        else:
            result[f] = _matches(wanted, found, (f,))
    result["count"] = len(found) == len(wanted)
    result["all"] = bool(result["count"] and _matches(
        wanted, found, ("colour", "shape", "size", "position")))
    return result


def check(caption_text: str, image) -> bool:
    """Whether the image shows what the caption says (colours, shapes, sizes, positions, count)."""
    return check_features(caption_text, image)["all"]


# -- the registered dataset and its TFDS builder ------------------------------------------------

import tensorflow as tf  # noqa: E402  (the checker above needs numpy only)
import tensorflow_datasets as tfds  # noqa: E402

from zoo.data.base import CaptionDataset, NoDownloadBuilderMixin  # noqa: E402
from zoo.registry import DATASETS  # noqa: E402


@DATASETS.register("synthetic_shapes")
class SyntheticShapes(CaptionDataset):
    """Procedural coloured shapes with varied English captions; no download, random access.

    Args:
        render_size: int or None. Side of the drawn images; None draws at the pipeline's
            `image_size` (named apart from it, so a dataset's recorded arguments can be passed
            to `make_dataset` next to the pipeline's own image_size).
        colours: names from COLOURS (red, green, blue, yellow, purple, white).
        shapes: names from SHAPES (circle, square, triangle, diamond).
        sizes: ('small', 'large') or one of them (then captions do not name sizes).
        positions: names from POSITIONS (the 9 cells of a 3x3 grid: 'top left', ... 'centre').
        max_objects: most objects in one image (1..number of positions).
        max_count: largest counted group ("three red circles"); 1 disables counting.
        count_probability: chance that a scene with 2+ objects has a counted group.
        jitter: random offset of objects from their cell centres, in cells (<= 0.05).
        heldout_percent: share of caption meanings kept out of train/validation (test only).
        holdout_pairs: (colour, shape) pairs kept for the 'compositional' split.
        seed: the data seed (a different seed is a different dataset).
        train_size, validation_size, test_size, compositional_size: examples per split (an
            epoch of the pipeline; the generator itself can draw any index).
    """

    name = "synthetic_shapes"

    def __init__(self, render_size=None, colours=tuple(COLOURS), shapes=DEFAULT_SHAPES,
                 sizes=("small", "large"), positions=tuple(POSITIONS), max_objects=2,
                 max_count=2, count_probability=0.3, jitter=0.0, heldout_percent=10.0,
                 holdout_pairs=(), seed=0, train_size=100_000, validation_size=1000,
                 test_size=1000, compositional_size=1000):
        if render_size is not None and (not isinstance(render_size, int) or render_size < 18):
            raise ZooError(f"synthetic_shapes.render_size must be an integer >= 18 or None, "
                           f"got {render_size!r}")
        self.image_size = render_size
        self.config = ShapesConfig(
            image_size=render_size or 64, colours=colours, shapes=shapes, sizes=sizes,
            positions=positions, max_objects=max_objects, max_count=max_count,
            count_probability=count_probability, jitter=jitter,
            heldout_percent=heldout_percent, holdout_pairs=holdout_pairs)
        self.seed = int(seed)
        self.sizes = {"train": train_size, "validation": validation_size, "test": test_size,
                      "compositional": compositional_size}
        for split, n in self.sizes.items():
            if not isinstance(n, int) or n < 0:
                raise ZooError(f"synthetic_shapes.{split}_size must be a non-negative integer, "
                               f"got {n!r}")

    def splits(self):
        return tuple(s for s in SPLITS if s != "compositional" or self.config.holdout_pairs)

    def num_examples(self, split):
        return self.sizes[self.check_split(split)]

    def example(self, index: int, split: str = "train", image_size: Optional[int] = None):
        """dict(image uint8 [S,S,3], caption str, scene Scene) for one example."""
        return generate(self.seed, index, split, self.config,
                        image_size or self.image_size or self.config.image_size)

    def reader(self, split, image_size=None):
        self.check_split(split)
        size = self.image_size or image_size or self.config.image_size
        cfg, seed = self.config, self.seed
        sample(seed, 0, split, cfg)  # configuration errors surface here, not inside tf.data

        def draw(index):
            ex = generate(seed, int(index), split, cfg, size)
            return ex["image"], ex["caption"].encode("utf-8")

        def read(index):
            image, text = tf.numpy_function(draw, [index], (tf.uint8, tf.string),
                                            stateful=False)
            return {"image": tf.ensure_shape(image, [size, size, 3]),
                    "caption": tf.ensure_shape(text, [])}
        return read

    def captions(self, split="train"):
        for i in range(self.num_examples(split)):
            yield sample(self.seed, i, split, self.config)[1]


class SyntheticShapesConfig(tfds.core.BuilderConfig):
    """A TFDS config of synthetic_shapes: the ShapesConfig, the seed and split sizes."""

    def __init__(self, *, shapes_config: ShapesConfig, seed: int = 0,
                 split_sizes: Optional[Dict[str, int]] = None, **kwargs):
        super().__init__(**kwargs)
        self.shapes_config = shapes_config
        self.seed = seed
        self.split_sizes = dict(split_sizes or {"train": 2000, "validation": 200, "test": 200})


def _tfds_config(name, **shape_args):
    return SyntheticShapesConfig(
        name=name, shapes_config=ShapesConfig(**shape_args),
        description=f"synthetic_shapes {name}: {shape_args}")


class SyntheticShapesBuilder(NoDownloadBuilderMixin, tfds.core.GeneratorBasedBuilder):
    name = "synthetic_shapes"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First version."}
    BUILDER_CONFIGS = [
        _tfds_config("64", image_size=64),
        _tfds_config("32", image_size=32),
        _tfds_config("256", image_size=256),
        _tfds_config("easy_64", image_size=64, max_objects=1, sizes=("large",)),
    ]
    DEFAULT_CONFIG_NAME = "64"

    def __init__(self, *, shapes_config: Optional[ShapesConfig] = None,
                 seed: Optional[int] = None, split_sizes: Optional[Dict[str, int]] = None,
                 **kwargs):
        if shapes_config is not None or seed is not None or split_sizes is not None:
            if "config" in kwargs:
                raise ZooError("synthetic_shapes builder: pass either config or "
                               "shapes_config/seed/split_sizes, not both")
            shapes_config = shapes_config or ShapesConfig()
            if isinstance(shapes_config, dict):
                shapes_config = ShapesConfig(**shapes_config)
            ident = json.dumps([shapes_config.to_json(), seed or 0, split_sizes or {}],
                               sort_keys=True)
            kwargs["config"] = SyntheticShapesConfig(
                name=f"custom_{zlib.crc32(ident.encode()):08x}", shapes_config=shapes_config,
                seed=seed or 0, split_sizes=split_sizes,
                description="synthetic_shapes with a custom configuration")
        super().__init__(**kwargs)

    def _info(self):
        size = self.builder_config.shapes_config.image_size
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(size, size, 3), encoding_format="png"),
                "caption": tfds.features.Text(),
                "scene": tfds.features.Text(),  # JSON: groups and objects
                "index": tf.int64,
            }),
            supervised_keys=("image", "caption"),
            homepage="https://github.com/zoo/zoo (zoo/data/shapes.py)",
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # nothing to download
        cfg = self.builder_config
        return {split: self._generate_examples(split, n)
                for split, n in cfg.split_sizes.items() if n > 0}

    def _generate_examples(self, split, count):
        cfg = self.builder_config
        for i in range(count):
            ex = generate(cfg.seed, i, split, cfg.shapes_config)
            yield i, {"image": ex["image"], "caption": ex["caption"],
                      "scene": ex["scene"].to_json(), "index": i}


SyntheticShapesBuilder.__doc__ = (
    "TFDS builder of synthetic_shapes (`tfds.load('synthetic_shapes/64')` after "
    "`import zoo.data`).\n\n" + (__doc__ or ""))
