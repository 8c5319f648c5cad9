"""The checker: whether an image (drawn, or a model's soft, noisy output) shows what its caption
says. See the package docstring for how objects are found and matched."""

import dataclasses
import functools
import math
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from zoo.data.shapes.config import CELL_NAMES, COLOURS, GRID, SHAPES, SIZES
from zoo.data.shapes.drawing import sdf
from zoo.data.shapes.parser import parse_caption
from zoo.data.shapes.scenes import Group
from zoo.errors import ZooError


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
        sharp = np.clip(0.5 - sdf(s, xs - cx, ys - oy, h), 0.0, 1.0)
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
