"""Text for masked-LM pretraining: a registered dataset's captions, text files, or TFDS c4.

    texts = load_texts(dataset="synthetic_shapes")            # captions, in memory
    texts = load_texts(text_files=["corpus/*.txt"])           # one text per non-empty line
    ds = text_batches(texts, batch_size=64, seed=0, start_step=0)   # tf.string [B] per step

In-memory texts are sampled per step from (seed, step) alone, so a resumed run sees the same
batches. TFDS `c4` is streamed from the user's data_dir (never downloaded).
"""

import glob
import os
from typing import List, Optional, Sequence

import tensorflow as tf

from zoo.errors import ZooError

DEFAULT_MAX_TEXTS = 200_000
C4_HOW_TO = ("prepare it once with TFDS (`tfds build c4/en --data_dir=DIR`, which needs the "
             "Common Crawl source files, see the TFDS c4 catalog page) or point data_dir at a "
             "folder that has it; or use mlm.text_files / mlm.dataset instead")


def load_texts(dataset: Optional[str] = None, text_files: Sequence[str] = (),
               split: str = "train", max_texts: int = DEFAULT_MAX_TEXTS,
               dataset_args: Optional[dict] = None) -> List[str]:
    """Texts from exactly one source: a registered dataset's captions or text files."""
    if bool(dataset) == bool(text_files):
        raise ZooError("give exactly one text source: a registered dataset name (e.g. "
                       "dataset='synthetic_shapes') or text_files=['corpus/*.txt'] "
                       f"(got dataset={dataset!r}, text_files={list(text_files or [])!r})")
    if dataset:
        texts = dataset_captions(dataset, split=split, limit=max_texts, **(dataset_args or {}))
        where = f"dataset {dataset!r} (split {split!r})"
    else:
        texts = read_text_files(text_files, limit=max_texts)
        where = f"text files {list(text_files)!r}"
    texts = [t for t in texts if t.strip()]
    if not texts:
        raise ZooError(f"no text found in {where}; check the path or dataset")
    return texts


def read_text_files(patterns: Sequence[str], limit: int = DEFAULT_MAX_TEXTS) -> List[str]:
    """Non-empty lines of the files matching `patterns` (globs), in sorted file order."""
    if isinstance(patterns, str):
        patterns = [patterns]
    files = []
    for pattern in patterns:
        matched = sorted(glob.glob(os.path.expanduser(pattern), recursive=True))
        matched = [m for m in matched if os.path.isfile(m)]
        if not matched:
            raise ZooError(f"text file {pattern!r} not found (no file matches it)")
        files += matched
    texts = []
    for path in files:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                for line in f:
                    line = line.strip()
                    if line:
                        texts.append(line)
                        if len(texts) >= limit:
                            return texts
        except OSError as e:
            raise ZooError(f"cannot read text file {path!r}: {e.strerror or e}") from None
    return texts


def dataset_captions(name: str, split: str = "train", limit: int = DEFAULT_MAX_TEXTS,
                     seed: int = 0, **dataset_args) -> List[str]:
    """Up to `limit` captions of a registered dataset (zoo.data's text-only caption iterator)."""
    from zoo.data import pipeline  # noqa: PLC0415 -- the data package is heavy

    return [c.decode("utf-8", "replace") if isinstance(c, bytes) else str(c)
            for c in pipeline.captions(name, split=split, max_sentences=limit,
                                       **dataset_args)]


def c4_dataset(name: str = "c4/en", split: str = "train",
               data_dir: Optional[str] = None) -> tf.data.Dataset:
    """tf.string texts of TFDS c4 from `data_dir`; a ZooError saying how to prepare it if absent."""
    import tensorflow_datasets as tfds  # noqa: PLC0415

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


def text_batches(texts, batch_size: int, seed: int, start_step: int = 0) -> tf.data.Dataset:
    """Batches of tf.string [B] for steps start_step, start_step + 1, ... (infinite).

    `texts` is a list of strings (each step samples `batch_size` of them from (seed, step)
    alone) or a tf.data.Dataset of strings (shuffled with `seed`, repeated; resuming skips
    the batches already seen).
    """
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
