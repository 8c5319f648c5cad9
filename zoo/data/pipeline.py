"""The shared tf.data pipeline: decode, crop, scale, tokenize, shuffle, batch, prefetch.

    from zoo.data import make_dataset
    ds = make_dataset("synthetic_shapes", split="train", image_size=64, batch_size=16,
                      tokenizer="runs/spm/spm.model", seed=0, start_step=0)
    batch = next(iter(ds))
    batch["image"]        # float32 [16, 64, 64, 3] in [0, 1]
    batch["caption"]      # tf.string [16]
    batch["text_tokens"]  # int32 [16, 128]; batch["text_mask"] int32 [16, 128]

Data order is a pure function of (seed, step): the example at stream position k (batch
k // batch_size) is example `index_shuffle(k mod N, seed=[seed, k // N])` of the split, a fresh
seeded permutation per epoch computed for any position without materialising it. So
`make_dataset(..., start_step=s)` yields exactly the batches s, s+1, ... of the run that started
at 0, at no cost for large s. Datasets that can only stream (TFDS files such as coco_captions)
are shuffled with a seeded buffer and skipped to the start position instead.

Nothing is dropped quietly: an image that fails to decode is skipped, counted and named in a
summary line (`DecodeSkips`), and a stream whose first examples all fail stops with an error
naming the dataset; any other error (a missing file, a preprocessing or tokenizer bug) stops the
run with its own message.
"""

import logging
import os
import sys
from typing import Iterator, Optional, Union

import tensorflow as tf

from zoo.data.base import CaptionDataset
from zoo.errors import UnknownNameError, ZooError
from zoo.registry import DATASETS

log = logging.getLogger("zoo")

CROPS = ("centre", "center", "random")
_STREAM_SHUFFLE_BUFFER = 10_000


def get_dataset(dataset: Union[str, CaptionDataset] = "synthetic_shapes",
                **dataset_args) -> CaptionDataset:
    """A registered dataset by name (with its gin bindings, then `dataset_args`) or as given."""
    if isinstance(dataset, CaptionDataset):
        if dataset_args:
            raise ZooError(f"dataset arguments {sorted(dataset_args)} given with an already "
                           f"built dataset {dataset!r}")
        return dataset
    try:
        return DATASETS.create(dataset, **dataset_args)
    except ZooError as e:
        raise one_line(e) from None


def one_line(error: ZooError) -> ZooError:
    """The error without the "In call to configurable ..." lines gin appends."""
    cls = UnknownNameError if isinstance(error, UnknownNameError) else ZooError
    return cls(str(error).split("\n  In call to configurable")[0].strip())


def get_tokenizer(tokenizer, max_length: Optional[int] = None):
    """None, a tokenizer object, or a path to a SentencePiece model."""
    if tokenizer is None:
        return None
    if isinstance(tokenizer, (str, os.PathLike)):
        from zoo.tokenizers.text import SentencePieceTokenizer
        kwargs = {} if max_length is None else {"max_length": max_length}
        return SentencePieceTokenizer(os.fspath(tokenizer), **kwargs)
    if not callable(tokenizer):
        raise ZooError(f"tokenizer must be a SentencePieceTokenizer or a .model path, got "
                       f"{tokenizer!r}")
    return tokenizer


# -- images -------------------------------------------------------------------------------------

def _crop_window(height, width, crop_random, seed_pair):
    """Offsets and side of the largest square inside (height, width): centred or random."""
    side = tf.minimum(height, width)
    max_y, max_x = height - side, width - side
    if crop_random:
        u = tf.random.stateless_uniform([2], seed=seed_pair, dtype=tf.float32)
        off_y = tf.cast(tf.floor(u[0] * tf.cast(max_y + 1, tf.float32)), tf.int32)
        off_x = tf.cast(tf.floor(u[1] * tf.cast(max_x + 1, tf.float32)), tf.int32)
        off_y, off_x = tf.minimum(off_y, max_y), tf.minimum(off_x, max_x)
    else:
        off_y, off_x = max_y // 2, max_x // 2
    return off_y, off_x, side


def _resize_square(image, image_size):
    """uint8/float [S, S, 3] -> float32 [image_size, image_size, 3] in [0, 255].

    Shrinking averages the source pixels each output pixel covers ('area': anti-aliased, and
    several times faster than bilinear with antialias=True); enlarging is bilinear.
    """
    size = [image_size, image_size]
    shrink = tf.shape(image)[0] > image_size
    image = tf.cond(shrink, lambda: tf.image.resize(image, size, method="area"),
                    lambda: tf.image.resize(image, size, method="bilinear"))
    return tf.clip_by_value(image, 0.0, 255.0)


def decode_square(image_bytes, crop_random=False, seed_pair=None):
    """Encoded image -> uint8 [S, S, 3]: its largest centred (or random) square, decoded.

    Any format tf.io.decode_image reads, in any mode (grey, grey + alpha, RGBA, palette,
    16-bit) comes out as 8-bit RGB (alpha dropped, 16-bit scaled). JPEGs decode only the
    square (faster for large photos).
    """
    is_jpeg = tf.strings.substr(image_bytes, 0, 3) == b"\xff\xd8\xff"

    def jpeg():
        shape = tf.image.extract_jpeg_shape(image_bytes)
        off_y, off_x, side = _crop_window(shape[0], shape[1], crop_random, seed_pair)
        return tf.image.decode_and_crop_jpeg(
            image_bytes, tf.stack([off_y, off_x, side, side]), channels=3)

    def other():
        image = tf.io.decode_image(image_bytes, channels=3, expand_animations=False)
        shape = tf.shape(image)
        off_y, off_x, side = _crop_window(shape[0], shape[1], crop_random, seed_pair)
        return image[off_y:off_y + side, off_x:off_x + side]

    square = tf.cond(is_jpeg, jpeg, other)
    square.set_shape([None, None, 3])
    return square


def decode_and_crop(image_bytes, image_size: int, crop_random=False, seed_pair=None):
    """Encoded image -> float32 [image_size, image_size, 3] in [0, 1].

    Aspect-preserving: the largest centred (or random) square is cut out, then resized, which is
    the same as resizing the short side to `image_size` and cropping.
    """
    square = decode_square(image_bytes, crop_random, seed_pair)
    return _resize_square(square, image_size) / 255.0


def crop_pixels(image, image_size: int, crop_random=False, seed_pair=None):
    """uint8 [H, W, 3] -> float32 [image_size, image_size, 3] in [0, 1] (square crop, resize)."""
    static = image.shape
    if static[0] == image_size and static[1] == image_size:
        return tf.cast(image, tf.float32) / 255.0
    shape = tf.shape(image)
    off_y, off_x, side = _crop_window(shape[0], shape[1], crop_random, seed_pair)
    square = image[off_y:off_y + side, off_x:off_x + side]
    return _resize_square(square, image_size) / 255.0


def _seed_pair(seed, position):
    return tf.stack([tf.cast(seed, tf.int64), tf.cast(position, tf.int64)])


def _preprocess(image_size, crop_random, seed):
    def fn(example):
        example = dict(example)
        position = example.pop("_position")
        image = crop_pixels(example["image"], image_size, crop_random, _seed_pair(seed, position))
        example["image"] = tf.ensure_shape(image, [image_size, image_size, 3])
        return example
    return fn


class DecodeSkips:
    """Images that failed to decode in one pipeline: counted, named, and fatal when nothing
    decodes at all; all in the graph (a py_function here can deadlock TensorFlow's shutdown
    when the run stops on an error while input threads still call it).

    Printed to stderr as one line each time the count reaches a power of two (1, 2, 4, ...):
    how many so far and the first few names. When the first `min(N, 32)` examples of the
    stream all fail (N: the split's size when known), the pipeline stops with an error naming
    the dataset, within seconds rather than spinning forever.
    """

    FIRST = 32
    SHOWN = 5

    def __init__(self, description: str, num_examples: Optional[int]):
        self.description = description
        self.limit = min(num_examples, self.FIRST) if num_examples else self.FIRST

    def initial_state(self):
        return (tf.constant(0, tf.int64), tf.constant(0, tf.int64),
                tf.fill([self.SHOWN], ""), tf.constant(0, tf.int32))

    def step(self, state, example):
        """(new state, example) for tf.data's scan: counts the example, logs and checks."""
        failures, seen, names, shown = state
        failed = tf.logical_not(example["_decoded"])
        name = example.get("file_name")
        if name is None:
            name = tf.strings.as_string(example["index"])
        seen += 1
        failures += tf.cast(failed, tf.int64)
        add = tf.logical_and(failed, shown < self.SHOWN)
        names = tf.where(tf.logical_and(add, tf.range(self.SHOWN) == shown), name, names)
        shown += tf.cast(add, tf.int32)
        listed = tf.strings.reduce_join(names[:shown], separator=", ")
        listed = tf.strings.join([listed, tf.where(failures > tf.cast(shown, tf.int64),
                                                   " ...", "")])
        power_of_two = tf.equal(tf.bitwise.bitwise_and(failures, failures - 1), 0)

        def say():
            tf.print(tf.strings.join([
                f"{self.description}: skipped ", tf.strings.as_string(failures),
                " example(s) whose image failed to decode: ", listed]), output_stream=sys.stderr)
            return tf.constant(True)

        nothing = tf.logical_and(failures >= self.limit, tf.equal(failures, seen))
        # The fatal count is said once, by the error (input threads may run this step again
        # after it failed, and their lines would land after the error's).
        said = tf.cond(tf.logical_and(tf.logical_and(failed, power_of_two),
                                      tf.logical_not(nothing)),
                       say, lambda: tf.constant(False))
        message = tf.strings.join([
            f"ZooError: {self.description}: no usable images: the first ", tf.strings.as_string(
                failures), " examples all failed to decode (", listed, "); check the files "
            "(e.g. open them with PIL) or the folder"])
        check = tf.debugging.Assert(tf.logical_not(nothing), [message])
        with tf.control_dependencies([said, check]):
            example = {k: tf.identity(v) for k, v in example.items()}
        return (failures, seen, names, shown), example


def _decoded(ds, skips: DecodeSkips, crop_random: bool, seed: int, parallel):
    """Decodes `image_bytes` into `image` (uint8 square); an image that fails to decode is
    skipped and recorded in `skips`. Only the decoding can fail quietly: every other error
    (reading, preprocessing, tokenizing, a bug) stops the pipeline with its message."""
    if "image_bytes" not in ds.element_spec:
        return ds

    def decode(example):
        example = dict(example)
        image_bytes = example.pop("image_bytes")
        example["image"] = decode_square(image_bytes, crop_random,
                                         _seed_pair(seed, example["_position"]))
        example["_decoded"] = tf.constant(True)
        return example

    def guarded(example):
        failed = {k: v for k, v in example.items() if k != "image_bytes"}
        failed.update(image=tf.zeros([1, 1, 3], tf.uint8), _decoded=tf.constant(False))
        # ignore_errors reaches no further than this one-element dataset: the decode ops.
        return (tf.data.Dataset.from_tensors(example).map(decode).ignore_errors()
                .concatenate(tf.data.Dataset.from_tensors(failed)).take(1))

    ds = ds.interleave(guarded, cycle_length=16, block_length=1, num_parallel_calls=parallel,
                       deterministic=True)
    ds = ds.scan(skips.initial_state(), skips.step).filter(lambda ex: ex["_decoded"])
    return ds.map(lambda ex: {k: v for k, v in ex.items() if k != "_decoded"})


# -- the pipeline -------------------------------------------------------------------------------

def _positions(start: int, count: Optional[int]) -> tf.data.Dataset:
    stop = start + count if count is not None else tf.int64.max
    return tf.data.Dataset.range(start, stop)


def example_order(position, num_examples: int, seed: int, shuffle: bool = True):
    """Example index at stream position(s) `position` (int64): a seeded permutation per epoch."""
    position = tf.cast(position, tf.int64)
    n = tf.constant(num_examples, tf.int64)
    within = position % n
    if not shuffle:
        return within
    epoch = position // n
    seed_vec = tf.stack([tf.constant(seed, tf.int64) + tf.zeros_like(epoch), epoch], axis=-1)
    return tf.random.experimental.index_shuffle(within, seed_vec, n - 1)


def examples(dataset: Union[str, CaptionDataset] = "synthetic_shapes", split: str = "train",
             image_size: int = 64, seed: int = 0, start: int = 0, repeat: bool = True,
             shuffle: bool = True, crop: str = "centre",
             num_parallel_calls: Optional[int] = None, **dataset_args) -> tf.data.Dataset:
    """Unbatched, preprocessed examples from stream position `start` (see module docstring).

    Each element: image float32 [S, S, 3] in [0, 1], caption tf.string, index int64 (the
    example's index in its split; -1 for streamed datasets), plus the dataset's extra columns.
    """
    if not isinstance(image_size, int) or isinstance(image_size, bool) or image_size < 1:
        raise ZooError(f"image_size must be a positive integer, got {image_size!r}")
    if crop not in CROPS:
        raise ZooError(f"crop must be one of {', '.join(CROPS)}, got {crop!r}")
    if not isinstance(start, int) or start < 0:
        raise ZooError(f"start position must be a non-negative integer, got {start!r}")
    source = get_dataset(dataset, **dataset_args)
    source.check_split(split)
    parallel = num_parallel_calls or tf.data.AUTOTUNE

    crop_random = crop == "random"
    if source.random_access:
        n = int(source.num_examples(split))
        if n <= 0:
            raise ZooError(f"{source.name} split {split!r} has no usable examples")
        count = None if repeat else max(n - start, 0)
        read = source.reader(split, image_size=image_size)

        def fetch(position):
            index = example_order(position, n, seed, shuffle)
            return {**read(index), "index": index, "_position": position}

        ds = _positions(start, count).map(fetch, num_parallel_calls=parallel,
                                          deterministic=True)
    else:
        n = None
        ds = source.stream(split)
        if shuffle:
            ds = ds.shuffle(_STREAM_SHUFFLE_BUFFER, seed=seed, reshuffle_each_iteration=True)
        if repeat:
            ds = ds.repeat()
        ds = ds.enumerate().map(lambda p, ex: {**ex, "index": tf.constant(-1, tf.int64),
                                               "_position": p})
        if start:
            ds = ds.skip(start)
    # An image that passed the dataset's checks but still fails to decode is skipped and
    # counted (the folder dataset checks files up front, so this stays rare; later examples
    # then move up one place, and image_caption_folder.verify = 'full' rules it out). Nothing
    # else is skipped: any other error stops the run with its message.
    ds = _decoded(ds, DecodeSkips(repr(source), n), crop_random, seed, parallel)
    ds = ds.map(_preprocess(image_size, crop_random, seed), num_parallel_calls=parallel,
                deterministic=True)
    options = tf.data.Options()
    options.deterministic = True
    return ds.with_options(options)


def make_dataset(dataset: Union[str, CaptionDataset] = "synthetic_shapes", split: str = "train",
                 image_size: int = 64, batch_size: int = 16, tokenizer=None, seed: int = 0,
                 start_step: int = 0, repeat: bool = True, shuffle: bool = True,
                 crop: str = "centre", drop_remainder: bool = True,
                 max_length: Optional[int] = None, num_parallel_calls: Optional[int] = None,
                 **dataset_args) -> tf.data.Dataset:
    """Batches for steps start_step, start_step + 1, ... (see the module docstring).

    Args:
        dataset: a registered dataset name (`synthetic_shapes`, `image_caption_folder`,
            `coco_captions`, a plugin's) or a built dataset object.
        split: the split to read.
        image_size: side of the square images.
        batch_size: examples per batch.
        tokenizer: None, a SentencePieceTokenizer, or a path to a `.model` file; when given,
            batches carry `text_tokens` and `text_mask` (int32 [B, L]) and `text_truncated`.
        seed: the data-order seed (also seeds random crops).
        start_step: first batch to produce (for resuming).
        repeat: cycle over epochs forever (training) or stop after the rest of one epoch.
        shuffle: seeded permutation per epoch; False keeps the split's order.
        crop: 'centre' or 'random' square crop before resizing.
        drop_remainder: drop a last partial batch (only matters with repeat=False).
        max_length: token length when `tokenizer` is a path (default 128).
        num_parallel_calls: decode parallelism (default: autotune).
        **dataset_args: arguments of the registered dataset (override gin bindings).
    """
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ZooError(f"batch_size must be a positive integer, got {batch_size!r}")
    if not isinstance(start_step, int) or start_step < 0:
        raise ZooError(f"start_step must be a non-negative integer, got {start_step!r}")
    tok = get_tokenizer(tokenizer, max_length)
    ds = examples(dataset, split=split, image_size=image_size, seed=seed,
                  start=start_step * batch_size, repeat=repeat, shuffle=shuffle, crop=crop,
                  num_parallel_calls=num_parallel_calls, **dataset_args)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    if tok is not None:
        def add_tokens(batch):
            out = tok(batch["caption"])
            return {**batch, "text_tokens": out["ids"], "text_mask": out["mask"],
                    "text_truncated": out["truncated"]}
        ds = ds.map(add_tokens, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)


def captions(dataset: Union[str, CaptionDataset] = "synthetic_shapes", split: str = "train",
             max_sentences: Optional[int] = None, **dataset_args) -> Iterator[str]:
    """The captions of a dataset split as python strings (text only: for SentencePiece, MLM)."""
    source = get_dataset(dataset, **dataset_args)
    source.check_split(split)
    for i, text in enumerate(source.captions(split)):
        if max_sentences is not None and i >= max_sentences:
            return
        yield text


def num_examples(dataset: Union[str, CaptionDataset] = "synthetic_shapes",
                 split: str = "train", **dataset_args) -> Optional[int]:
    """Examples in a split (None when the dataset only streams and does not know)."""
    source = get_dataset(dataset, **dataset_args)
    source.check_split(split)
    try:
        return int(source.num_examples(split))
    except NotImplementedError:
        return None
