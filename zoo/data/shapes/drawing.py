"""Drawing scenes: anti-aliased shapes on black from their signed distance functions."""

import math

import numpy as np

from zoo.data.shapes.config import COLOURS, GRID, SIZES
from zoo.data.shapes.scenes import Scene
from zoo.errors import ZooError


def sdf(shape: str, x: np.ndarray, y: np.ndarray, h: float) -> np.ndarray:
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
        cover = np.clip(0.5 - sdf(obj.shape, xs[None, :], ys, h), 0.0, 1.0)
        colour = np.asarray(COLOURS[obj.colour], np.float32)
        patch = np.rint(cover[..., None] * colour).astype(np.uint8)
        region = img[y0:y1, x0:x1]
        np.maximum(region, patch, out=region)
    return img
