"""Plain text for SentencePiece and masked-LM training: text files, a registered dataset's
captions, or TFDS c4.

    texts("synthetic_shapes", ["notes.txt"], max_sentences=1000)   # a stream (zoo-train-spm)
    load_texts(dataset="synthetic_shapes")                          # one source, in memory (mlm)
    load_texts(text_files=["corpus/*.txt"])                         # one text per non-empty line
    ds = text_batches(texts, batch_size=64, seed=0, start_step=0)    # tf.string [B] per step
    train_sentencepiece_from("spm.model", dataset="synthetic_shapes")  # what zoo-train-spm runs

Text files are UTF-8 (a byte-order mark is dropped; other encodings are an error naming the
line), one sentence per non-empty line; a file name may be a glob. In-memory texts are sampled
per step from (seed, step) alone, so a resumed run sees the same batches. TFDS `c4` is streamed
from the user's data_dir (never downloaded).
"""

import glob
import os
from typing import Iterable, Iterator, List, Optional, Sequence

from zoo.errors import ZooError

DEFAULT_MAX_TEXTS = 200_000
C4_HOW_TO = ("prepare it once with TFDS (`tfds build c4/en --data_dir=DIR`, which needs the "
             "Common Crawl source files, see the TFDS c4 catalog page) or point data_dir at a "
             "folder that has it; or use mlm.text_files / mlm.dataset instead")


def read_text_file(path: str) -> Iterator[str]:
    """Non-empty lines of a UTF-8 text file (one sentence per line), stripped."""
    path = os.path.expanduser(os.fspath(path))
    if not os.path.isfile(path):
        raise ZooError(f"text file {path!r} not found")
    try:
        with open(path, "rb") as f:
            offset = 0
            for lineno, raw in enumerate(f, 1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise ZooError(f"text file {path!r} is not UTF-8 (line {lineno}, byte "
                                   f"{offset + e.start}); convert it, e.g. iconv -f latin1 -t "
                                   f"utf-8") from None
                offset += len(raw)
                if lineno == 1:
                    line = line.lstrip("\ufeff")
                line = line.strip()
                if line:
                    yield line
    except OSError as e:
        raise ZooError(f"cannot read text file {path!r}: {e.strerror or e}") from None


def expand_text_files(patterns: Sequence[str]) -> List[str]:
    """The files named by `patterns` (paths or globs), each glob's matches in sorted order."""
    if isinstance(patterns, str):
        patterns = [patterns]
    files = []
    for pattern in patterns:
        pattern = os.path.expanduser(os.fspath(pattern))
        if glob.has_magic(pattern):
            matched = [m for m in sorted(glob.glob(pattern, recursive=True))
                       if os.path.isfile(m)]
            if not matched:
                raise ZooError(f"text file {pattern!r} not found (no file matches it)")
            files += matched
        else:
            files.append(pattern)  # read_text_file says when it is missing
    return files


def dataset_captions(name: str, split: str = "train", limit: Optional[int] = None,
                     **dataset_args) -> Iterator[str]:
    """The captions of a registered dataset's split, as str, up to `limit`."""
    from zoo.data import pipeline  # the data package is heavy (TensorFlow)

    for c in pipeline.captions(name, split=split, max_sentences=limit, **dataset_args):
        yield c.decode("utf-8", "replace") if isinstance(c, bytes) else str(c)


def texts(dataset: Optional[str] = None, text_files: Sequence[str] = (), split: str = "train",
          max_sentences: Optional[int] = None, **dataset_args) -> Iterator[str]:
    """Sentences from text files, then from a registered dataset's captions, up to a limit."""
    if not dataset and not text_files:
        raise ZooError("no text to read: give a dataset (e.g. synthetic_shapes) or text files")
    if max_sentences is not None and max_sentences < 1:
        raise ZooError(f"max_sentences must be positive, got {max_sentences}")
    sources = [read_text_file(path) for path in expand_text_files(text_files)]
    if dataset:
        sources.append(dataset_captions(dataset, split=split, **dataset_args))
    return _take(_chain(sources), max_sentences)


def load_texts(dataset: Optional[str] = None, text_files: Sequence[str] = (),
               split: str = "train", max_texts: int = DEFAULT_MAX_TEXTS,
               dataset_args: Optional[dict] = None) -> List[str]:
    """Texts from exactly one source, in memory: a registered dataset's captions or text files."""
    if bool(dataset) == bool(text_files):
        raise ZooError("give exactly one text source: a registered dataset name (e.g. "
                       "dataset='synthetic_shapes') or text_files=['corpus/*.txt'] "
                       f"(got dataset={dataset!r}, text_files={list(text_files or [])!r})")
    where = (f"dataset {dataset!r} (split {split!r})" if dataset
             else f"text files {list(text_files)!r}")
    found = [t for t in texts(dataset, text_files, split, max_texts, **(dataset_args or {}))
             if t.strip()]
    if not found:
        raise ZooError(f"no text found in {where}; check the path or dataset")
    return found


def train_sentencepiece_from(output: str, dataset: Optional[str] = None,
                              text_files: Sequence[str] = (), split: str = "train",
                              max_sentences: Optional[int] = 1_000_000, **kwargs) -> str:
    """Trains on the captions of a registered dataset and/or text files (what zoo-train-spm
    runs); `kwargs` go to `train_sentencepiece`. Returns the model path."""
    from zoo.tokenizers.spm_training import train_sentencepiece

    if not output:
        raise ZooError("--output is required, e.g. --output=runs/spm/spm.model")
    if not dataset and not text_files:
        raise ZooError("give --dataset (e.g. --dataset=synthetic_shapes) and/or --text_file")
    if max_sentences is not None and max_sentences < 1:
        raise ZooError(f"--max_sentences must be positive, got {max_sentences}")
    source = texts(dataset, text_files, split=split, max_sentences=max_sentences)
    return train_sentencepiece(source, output, **kwargs)


def _chain(iterables: Iterable[Iterable[str]]) -> Iterator[str]:
    for it in iterables:
        yield from it


def _take(it: Iterator[str], limit: Optional[int]) -> Iterator[str]:
    for i, text in enumerate(it):
        if limit is not None and i >= limit:
            return
        yield text


def c4_dataset(name: str = "c4/en", split: str = "train", data_dir: Optional[str] = None):
    """tf.string texts of TFDS c4 from `data_dir`; a ZooError saying how to prepare it if absent."""
    import tensorflow as tf
    import tensorflow_datasets as tfds

    where = data_dir or os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets"
    try:
        builder = tfds.builder(name, data_dir=data_dir)
        prepared = builder.is_prepared()
    except Exception as e:  # noqa: BLE001 -- an unknown config or broken folder
        raise ZooError(f"TFDS dataset {name!r} unavailable in data_dir {where} "
                       f"({type(e).__name__}: {str(e).splitlines()[0][:160]}); {C4_HOW_TO}")
    if not prepared:
        raise ZooError(f"TFDS dataset {name!r} is not in data_dir {where} (zoo never "
                       f"downloads); {C4_HOW_TO}")
    if split not in builder.info.splits:
        raise ZooError(f"TFDS dataset {name!r} has no split {split!r} (has: "
                       f"{', '.join(sorted(builder.info.splits))})")
    ds = builder.as_dataset(split=split, shuffle_files=False)
    return ds.map(lambda x: x["text"], num_parallel_calls=tf.data.AUTOTUNE)


def text_batches(texts, batch_size: int, seed: int, start_step: int = 0):
    """Batches of tf.string [B] for steps start_step, start_step + 1, ... (infinite).

    `texts` is a list of strings (each step samples `batch_size` of them from (seed, step)
    alone) or a tf.data.Dataset of strings (shuffled with `seed`, repeated; resuming skips
    the batches already seen).
    """
    import tensorflow as tf

    if isinstance(texts, tf.data.Dataset):
        ds = texts.shuffle(10_000, seed=seed, reshuffle_each_iteration=True).repeat()
        return ds.batch(batch_size, drop_remainder=True).skip(start_step)
    table = tf.constant(list(texts), dtype=tf.string)
    n = len(texts)

    def sample(step):
        pair = tf.stack([tf.constant(seed, tf.int64), step])
        idx = tf.random.stateless_uniform([batch_size], seed=pair,
                                          maxval=n, dtype=tf.int64)
        return tf.gather(table, idx)

    return tf.data.Dataset.counter(start_step).map(sample)
