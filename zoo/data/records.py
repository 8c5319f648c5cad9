"""Encoded records: a dataset encoded once by an image tokenizer, as TFRecords of image codes and
caption tokens, so the transformer stage trains without running the tokenizer every step.

    info = encode_dataset(tokenizer, "runs/codes", dataset="synthetic_shapes", split="train",
                          spm_model="runs/spm/spm.model")      # what zoo-encode runs
    info = read_info("runs/codes", "train")                     # the split's <split>.json
    arrays, info = load_encoded("runs/codes", "train")          # every example, in memory
    ds = read_encoded("runs/codes", "train", batch_size=16, seed=0, start_step=0)

On disk: `<output>/<split>-00000-of-0000N.tfrecord` (tf.train.Example: `image_codes` int64
[h*w], `caption` bytes, and with a SentencePiece model `text_tokens` / `text_mask` int64 [L])
and `<output>/<split>.json` (grid size, codebook size, text settings, example count, files).
`read_encoded` yields batches {'image_codes' int32 [B, h, w], 'text_tokens' int32 [B, L],
'text_mask' int32 [B, L], 'caption' string [B]} for steps start_step, start_step + 1, ... (a
pure function of seed and step, like every Task.dataset).
"""

import glob
import json
import os
import sys
import time

from zoo.errors import ZooError

INFO_VERSION = 1


def _feature_int(values):
    import tensorflow as tf
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))


def _feature_bytes(value):
    import tensorflow as tf
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def write(output, split, examples, info, shard_size=50000):
    """Writes `examples` as the encoded split `split` of `output`; returns the info written.

    `examples` yields dicts with `image_codes` (ints, h*w), `caption` (bytes) and, when
    `info['text_tokens']`, `text_tokens` / `text_mask` (ints, L). Shards of `shard_size`
    examples are written under temporary names and renamed when all are complete; `info` (grid
    size, codebook size, ...) is completed with the version, example count and file names and
    written to `<output>/<split>.json` (with `seconds`, the time taken to draw and write the
    examples). An earlier split of the same name is replaced.
    """
    import tensorflow as tf

    if shard_size < 1:
        raise ZooError(f"--shard_size must be positive, got {shard_size}")
    os.makedirs(output, exist_ok=True)
    for old in glob.glob(os.path.join(output, f"{split}-*.tfrecord*")):
        os.remove(old)
    tmp_paths, writer, count, t0 = [], None, 0, time.time()
    try:
        for ex in examples:
            if count % shard_size == 0:
                if writer is not None:
                    writer.close()
                tmp_paths.append(os.path.join(output, f"{split}-{len(tmp_paths):05d}.tmp"))
                writer = tf.io.TFRecordWriter(tmp_paths[-1])
            feats = {"image_codes": _feature_int(ex["image_codes"]),
                     "caption": _feature_bytes(ex["caption"])}
            if "text_tokens" in ex:
                feats["text_tokens"] = _feature_int(ex["text_tokens"])
                feats["text_mask"] = _feature_int(ex["text_mask"])
            writer.write(tf.train.Example(
                features=tf.train.Features(feature=feats)).SerializeToString())
            count += 1
    finally:
        if writer is not None:
            writer.close()
    if count == 0:
        raise ZooError(f"dataset {info.get('dataset')!r} split {split!r} gave no examples")
    paths = []
    for k, tmp in enumerate(tmp_paths):
        final = os.path.join(output, f"{split}-{k:05d}-of-{len(tmp_paths):05d}.tfrecord")
        os.replace(tmp, final)
        paths.append(os.path.basename(final))
    info = {"version": INFO_VERSION, "split": split, **info, "num_examples": count,
            "files": paths, "seconds": round(time.time() - t0, 2)}
    with open(os.path.join(output, f"{split}.json"), "w", encoding="utf-8") as f:
        json.dump(info, f, indent=2)
    return info


def encode_dataset(tokenizer, output, dataset="synthetic_shapes", split="train",
                   spm_model=None, max_length=128, num_examples=None, batch_size=64,
                   shard_size=50000, progress=True, dataset_args=None):
    """Encodes `split` of `dataset` with `tokenizer` into TFRecords in `output` (see `write`).

    Captions are tokenized with the SentencePiece model `spm_model` (None: captions only).
    Returns the info dict written to `<output>/<split>.json`.
    """
    import numpy as np
    import tensorflow as tf

    from zoo.data.pipeline import make_dataset

    if num_examples is not None and num_examples < 1:
        raise ZooError(f"--num_examples must be positive, got {num_examples}")
    if spm_model and not os.path.isfile(spm_model):
        raise ZooError(f"SentencePiece model {spm_model} not found; train one with zoo-train-spm")
    ds = make_dataset(dataset=dataset, split=split, image_size=tokenizer.image_size,
                      batch_size=batch_size, tokenizer=spm_model, max_length=max_length,
                      seed=0, repeat=False, shuffle=False, drop_remainder=False,
                      **dict(dataset_args or {}))
    if num_examples is not None:
        ds = ds.unbatch().take(num_examples).batch(batch_size)
    encode = tf.function(tokenizer.encode)
    h, w = tokenizer.grid_size

    def examples(bar):
        for batch in ds:
            codes = np.asarray(encode(batch["image"])).reshape(-1, h * w)
            captions = batch["caption"].numpy()
            text = {k: np.asarray(batch[k]) for k in ("text_tokens", "text_mask") if k in batch}
            for i in range(codes.shape[0]):
                yield {"image_codes": codes[i], "caption": captions[i],
                       **{k: v[i] for k, v in text.items()}}
            if bar is not None:
                bar.update(codes.shape[0])

    info = {"dataset": dataset, "grid_size": [h, w],
            "codebook_size": int(tokenizer.codebook_size),
            "image_size": int(tokenizer.image_size), "text_tokens": spm_model is not None,
            "spm_model": os.path.abspath(spm_model) if spm_model else None,
            "max_length": int(max_length) if spm_model else None}
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=num_examples, unit="img", desc=f"encode {split}", file=sys.stderr,
                   dynamic_ncols=True, mininterval=0.5)
    try:
        info = write(output, split, examples(bar), info, shard_size=shard_size)
    finally:
        if bar is not None:
            bar.close()
    return info


def read_info(path, split="train"):
    info_path = os.path.join(path, f"{split}.json")
    if not os.path.isfile(info_path):
        raise ZooError(f"no encoded split {split!r} in {path} (missing {info_path}); make it "
                       f"with zoo-encode --output={path} --split={split}")
    with open(info_path, encoding="utf-8") as f:
        return json.load(f)


def load_encoded(path, split="train"):
    """(arrays dict, info): every example of an encoded split, in memory (int32/strings)."""
    import numpy as np
    import tensorflow as tf
    info = read_info(path, split)
    h, w = info["grid_size"]
    spec = {"image_codes": tf.io.FixedLenFeature([h * w], tf.int64),
            "caption": tf.io.FixedLenFeature([], tf.string)}
    if info["text_tokens"]:
        spec["text_tokens"] = tf.io.FixedLenFeature([info["max_length"]], tf.int64)
        spec["text_mask"] = tf.io.FixedLenFeature([info["max_length"]], tf.int64)
    files = [os.path.join(path, f) for f in info["files"]]
    ds = tf.data.TFRecordDataset(files).batch(4096).map(
        lambda x: tf.io.parse_example(x, spec))
    parts = {k: [] for k in spec}
    for batch in ds:
        for k in spec:
            parts[k].append(batch[k].numpy())
    arrays = {k: np.concatenate(v) for k, v in parts.items()}
    for k in ("image_codes", "text_tokens", "text_mask"):
        if k in arrays:
            arrays[k] = arrays[k].astype(np.int32)
    arrays["image_codes"] = arrays["image_codes"].reshape(-1, h, w)
    return arrays, info


def read_encoded(path, split="train", batch_size=16, seed=0, start_step=0, shuffle=True,
                 repeat=True):
    """Batches of an encoded split for steps start_step, start_step + 1, ...

    Each epoch is a permutation of the examples drawn from (seed, epoch) with a stateless
    index shuffle, so batch s is the same whether or not the run was resumed.
    """
    import tensorflow as tf
    arrays, info = load_encoded(path, split)
    n = info["num_examples"]
    if batch_size < 1:
        raise ZooError(f"batch_size must be positive, got {batch_size}")
    tensors = {k: tf.constant(v) for k, v in arrays.items()}
    start = int(start_step) * int(batch_size)
    if repeat:
        positions = tf.data.Dataset.range(start, 2 ** 62)
    else:
        positions = tf.data.Dataset.range(start, n)

    def pick(p):
        epoch, i = p // n, p % n
        if shuffle:
            i = tf.random.experimental.index_shuffle(
                i, seed=tf.stack([tf.cast(seed, tf.int64), epoch]),  # [2]: TF pads it to 3
                max_index=n - 1)
        return {k: tf.gather(v, i) for k, v in tensors.items()}

    ds = positions.map(pick, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(batch_size, drop_remainder=repeat).prefetch(tf.data.AUTOTUNE)
