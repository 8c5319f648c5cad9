"""Datasets (TFDS builders) and the shared tf.data pipeline.

Importing this package registers the built-in datasets (`synthetic_shapes`,
`image_caption_folder`, `coco_captions`, `tfds_image_text`) in zoo's registry and the
`synthetic_shapes` / `image_caption_folder` TFDS builders with tfds.
"""

from zoo.data import coco, folder, shapes  # noqa: F401
from zoo.data.base import CaptionDataset  # noqa: F401
from zoo.data.pipeline import (  # noqa: F401
    captions, examples, get_dataset, make_dataset, num_examples)
