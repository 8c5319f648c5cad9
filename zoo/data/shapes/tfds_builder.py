"""The TFDS builder of synthetic_shapes: `tfds.load('synthetic_shapes/64')` after
`import zoo.data` (nothing is downloaded; the examples are drawn)."""

import json
import zlib
from typing import Dict, Optional

import tensorflow as tf
import tensorflow_datasets as tfds

from zoo.data.base import NoDownloadBuilderMixin
from zoo.data.shapes.config import ShapesConfig
from zoo.data.shapes.examples import generate
from zoo.errors import ZooError


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
            homepage="https://github.com/zoo/zoo (zoo/data/shapes/)",
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
