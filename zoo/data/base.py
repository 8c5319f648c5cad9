"""What a registered image-caption dataset provides to the shared pipeline (`zoo.data.pipeline`).

A dataset is registered under the `dataset` kind and built by name (gin bindings apply):

    from zoo.registry import DATASETS
    ds = DATASETS.create("image_caption_folder", path="/my/images")
    ds.splits()                  # ('train',) or ('train', 'validation', 'test')
    ds.num_examples("train")     # for random-access datasets
    ds.reader("train")           # traceable fn: example index (int64) -> raw example
    ds.captions("train")         # python iterator of captions (for SentencePiece / MLM)

Raw examples are dicts with `caption` (tf.string), either `image` (uint8 [H, W, 3]) or
`image_bytes` (an encoded JPEG/PNG/GIF/BMP/WebP file), and any extra string columns. The
pipeline decodes, crops, scales and batches them.
"""

from typing import Callable, Iterator, Optional, Tuple

import tensorflow as tf

from tensorflow_datasets.core.utils import classproperty as _tfds_classproperty

from zoo.errors import ZooError, suggest


class CaptionDataset:
    """Base class of registered image-caption datasets."""

    name = "dataset"
    # True: `reader(split)` fetches any example by index, so the pipeline derives the
    # data order from (seed, step) without reading what came before. False: the dataset only
    # streams (`stream(split)`), and the pipeline shuffles with a seeded buffer and skips.
    random_access = True

    def splits(self) -> Tuple[str, ...]:
        raise NotImplementedError

    def check_split(self, split: str) -> str:
        splits = self.splits()
        if split not in splits:
            raise ZooError(f"{self.name} has no split {split!r}; "
                           f"{suggest(str(split), splits, what='split')}")
        return split

    def num_examples(self, split: str) -> int:
        raise NotImplementedError

    def heldout_split(self) -> str:
        """The split kept out of training for evaluation: `test`, else `validation`."""
        for split in ("test", "validation"):
            if split in self.splits():
                return split
        raise ZooError(f"{self!r} has no held-out split (test or validation); its splits: "
                       f"{', '.join(self.splits())}")

    def reader(self, split: str, image_size: Optional[int] = None) -> Callable:
        """A tf.data-traceable function: example index (int64 scalar) -> raw example dict.

        `image_size` is the pipeline's target size; a procedural dataset may draw at it.
        """
        raise NotImplementedError

    def stream(self, split: str) -> tf.data.Dataset:
        """All raw examples of a split in a fixed order (for datasets without random access)."""
        raise NotImplementedError

    def captions(self, split: str = "train") -> Iterator[str]:
        """The split's captions as python strings, without touching images where possible."""
        raise NotImplementedError

    def __repr__(self):
        return f"<{type(self).__name__} {self.name}>"


class NoDownloadBuilderMixin:
    """For zoo's TFDS builders: they download nothing and live in zoo's source tree.

    TFDS finds a builder's folder through `importlib_resources`, which tensorflow-datasets 4.9
    imports lazily without depending on it; naming the file directly avoids that import.
    """

    @_tfds_classproperty
    @classmethod
    def code_path(cls):
        import inspect

        from etils import epath
        return epath.Path(inspect.getfile(cls))
