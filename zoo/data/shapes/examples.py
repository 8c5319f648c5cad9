"""The examples of each split, as pure functions of (seed, split, index): a scene drawn until it
fits the split (held-out caption meanings and colour-shape pairs), its caption and its image."""

import zlib
from typing import Dict, Optional, Tuple

import numpy as np

from zoo.data.shapes.config import SPLITS, ShapesConfig
from zoo.data.shapes.drawing import render
from zoo.data.shapes.grammar import write_caption
from zoo.data.shapes.scenes import Scene, sample_scene
from zoo.errors import ZooError

_SPLIT_IDS = {name: i for i, name in enumerate(SPLITS)}


def _heldout(key: str, percent: float) -> bool:
    # crc32, not hash(): stable across processes and machines.
    return (zlib.crc32(key.encode()) % 10000) < percent * 100


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
        scene = sample_scene(rng, cfg)
        uses_pair = any((g.colour, g.shape) in held_pairs for g in scene.groups)
        if split == "compositional":
            ok = uses_pair
        else:
            held = _heldout(scene.key(), cfg.heldout_percent)
            ok = not uses_pair and (held if split == "test" else not held)
        if ok:
            return scene, write_caption(scene, rng)
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
