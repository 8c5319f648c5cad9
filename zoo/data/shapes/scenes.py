"""Scenes: what a caption says (`Group`s), what is drawn (`Obj`s), and the random scene sampler."""

import dataclasses
import json
from typing import Optional, Tuple

import numpy as np

from zoo.data.shapes.config import POSITIONS, ShapesConfig


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


def sample_scene(rng: np.random.Generator, cfg: ShapesConfig) -> Scene:
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
