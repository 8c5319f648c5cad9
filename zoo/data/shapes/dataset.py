"""The registered `synthetic_shapes` dataset (zoo's data pipeline reads it by index)."""

from typing import Optional

import tensorflow as tf

from zoo.data.base import CaptionDataset
from zoo.data.shapes.config import COLOURS, DEFAULT_SHAPES, POSITIONS, SPLITS, ShapesConfig
from zoo.data.shapes.examples import generate, sample
from zoo.errors import ZooError
from zoo.registry import DATASETS


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
