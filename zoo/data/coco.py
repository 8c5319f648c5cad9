"""Image-caption datasets already prepared in a TFDS data_dir: `coco_captions` and any other.

zoo never downloads at run time. Prepare COCO once on a machine with internet access:

    tfds build coco_captions --data_dir=/data/tfds        # COCO 2014, Karpathy splits

then point zoo at it: `--gin_bindings="coco_captions.data_dir='/data/tfds'"` (or set
TFDS_DATA_DIR). `tfds_image_text` reads any other prepared TFDS dataset with an image and a
caption feature (`tfds_image_text.name = 'my_dataset'`, `caption_key = 'caption'`).
"""

import os
from typing import Optional

import tensorflow as tf
import tensorflow_datasets as tfds

from zoo.data.base import CaptionDataset
from zoo.errors import ZooError
from zoo.registry import DATASETS

_ALIASES = {"validation": ("validation", "val", "valid"), "val": ("val", "validation")}


def default_data_dir() -> str:
    return os.environ.get("TFDS_DATA_DIR") or os.path.expanduser("~/tensorflow_datasets")


def _get(example, key: str):
    for part in key.split("/"):
        if part not in example:
            raise ZooError(f"TFDS example has no feature {key!r} (features: "
                           f"{', '.join(sorted(example))})")
        example = example[part]
    return example


@DATASETS.register("tfds_image_text", needs="a TFDS dataset prepared in data_dir (name)")
class TfdsImageText(CaptionDataset):
    """Any image-caption dataset prepared in a TFDS data_dir (read in order, no download).

    Args:
        name: str. TFDS name, with config and version if needed ('coco_captions/2014').
        data_dir: str or None. TFDS data_dir (default: $TFDS_DATA_DIR or ~/tensorflow_datasets).
        image_key: str. Image feature ('/' for nested features).
        caption_key: str. Caption feature: a string, or a sequence of strings
            ('captions/text' in coco_captions).
        all_captions: bool. With several captions per image, one example per caption (True)
            or only the first caption (False).
    """

    random_access = False
    prepare_hint = "tfds build {name} --data_dir={data_dir}"

    def __init__(self, name=None, data_dir=None, image_key="image", caption_key="caption",
                 all_captions=True):
        if not name:
            raise ZooError("tfds_image_text.name is not set (a TFDS dataset name such as "
                           "'coco_captions/2014')")
        self.tfds_name = name
        self.name = name
        self.data_dir = os.path.expanduser(data_dir) if data_dir else default_data_dir()
        self.image_key = image_key
        self.caption_key = caption_key
        self.all_captions = all_captions
        try:
            self.builder = tfds.builder(name, data_dir=self.data_dir)
        except Exception as e:  # noqa: BLE001 -- unknown name, bad config, broken files
            raise ZooError(f"TFDS dataset {name!r} is not available in {self.data_dir} "
                           f"({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
                           f"{self._how_to_prepare()}") from None
        if not self.builder.is_prepared():
            raise ZooError(f"TFDS dataset {name!r} is not prepared in {self.data_dir} (zoo does "
                           f"not download at run time); {self._how_to_prepare()}")

    def _how_to_prepare(self):
        cmd = self.prepare_hint.format(name=self.tfds_name.split("/")[0],
                                       data_dir=self.data_dir)
        return (f"prepare it once on a machine with internet access: `{cmd}` (tensorflow-"
                f"datasets 4.9 also needs `pip install importlib_resources` for that), or copy a "
                f"prepared copy into that data_dir, then set {self.registry_name()}.data_dir")

    def registry_name(self):
        return "tfds_image_text"

    def splits(self):
        names = list(self.builder.info.splits.keys())
        for alias, options in _ALIASES.items():
            if alias not in names and any(o in names for o in options):
                names.append(alias)
        return tuple(names)

    def _real_split(self, split):
        self.check_split(split)
        names = self.builder.info.splits.keys()
        if split in names:
            return split
        return next(o for o in _ALIASES[split] if o in names)

    def num_examples(self, split):
        return self.builder.info.splits[self._real_split(split)].num_examples

    def _raw(self, split):
        return self.builder.as_dataset(
            split=self._real_split(split), shuffle_files=False,
            decoders=_skip_decoding(self.image_key),
            read_config=tfds.ReadConfig(interleave_cycle_length=1, shuffle_seed=0))

    def stream(self, split):
        image_key, caption_key, all_captions = self.image_key, self.caption_key, \
            self.all_captions

        def to_examples(ex):
            image = _get(ex, image_key)
            text = _get(ex, caption_key)
            if text.shape.rank == 0:
                return tf.data.Dataset.from_tensors({"image_bytes": image, "caption": text})
            if not all_captions:
                text = text[:1]
            return tf.data.Dataset.from_tensor_slices(
                {"image_bytes": tf.fill(tf.shape(text), image), "caption": text})
        return self._raw(split).flat_map(to_examples)

    def captions(self, split="train"):
        for ex in tfds.as_numpy(self.builder.as_dataset(
                split=self._real_split(split), shuffle_files=False,
                decoders=_skip_decoding(self.image_key))):
            text = _get(ex, self.caption_key)
            texts = [text] if isinstance(text, bytes) else list(text)
            if not self.all_captions:
                texts = texts[:1]
            for t in texts:
                yield t.decode("utf-8", "replace")


def _skip_decoding(key: str):
    decoders = tfds.decode.SkipDecoding()
    for part in reversed(key.split("/")):
        decoders = {part: decoders}
    return decoders


@DATASETS.register("coco_captions", needs="coco_captions prepared in a TFDS data_dir")
class CocoCaptions(TfdsImageText):
    """MS-COCO 2014 with captions (Karpathy splits) from TFDS, when prepared in data_dir.

    Args:
        data_dir: str or None. TFDS data_dir holding coco_captions (default: $TFDS_DATA_DIR or
            ~/tensorflow_datasets). Prepare it with `tfds build coco_captions`.
        all_captions: bool. One example per caption (5 per image) or the first caption only.
        name: str. TFDS name (change only for another prepared copy with the same features).
    """

    def __init__(self, data_dir=None, all_captions=True, name="coco_captions/2014"):
        super().__init__(name=name, data_dir=data_dir, image_key="image",
                         caption_key="captions/text", all_captions=all_captions)
        self.name = "coco_captions"

    def registry_name(self):
        return "coco_captions"
