"""The vocabulary of synthetic_shapes (palette, shapes, sizes, grid positions, splits) and
`ShapesConfig`, the knobs that set how hard the data is."""

import dataclasses
import json
from typing import Dict, List, Tuple

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
