"""BERT-style masked-LM pretraining of a registered text encoder (task `mlm`).

    # gin/runs/mlm_shapes.gin
    train.task = 'mlm'
    mlm.encoder = 'parti_encoder'
    mlm.dataset = 'synthetic_shapes'     # or mlm.text_files = [...], or mlm.tfds_name = 'c4/en'

Masking follows BERT (Devlin et al. 2019, section 3.1): 15% of the real tokens of each text
(padding and EOS/CLS excluded, at least one, at most `max_predictions`) are chosen; of those
80% become the mask token, 10% a random token and 10% stay as they are; the loss is the
cross-entropy of the original token at the chosen positions only. The mask token is the
tokenizer's `mask_id` when it has one (BERT WordPiece: [MASK]), else its `unk_id` (zoo's
SentencePiece models have no mask piece, and unknown pieces are rare in training text), or
`mlm.mask_id`. Masking is drawn from (seed, step) in the input pipeline, so a resumed run masks
exactly as an uninterrupted one.

The encoder trained here can then be loaded into Parti by name (see `pretrained.py`).
"""

import math
from typing import Any, Dict, Optional, Sequence

import keras
import tensorflow as tf
from keras import ops

from zoo.data import text_sources
from zoo.errors import ZooError, check_positive_ints, check_positive_numbers
from zoo.registry import DATASETS, TASKS, TEXT_ENCODERS
from zoo.text_encoders import common
from zoo.text_encoders.pretraining import PretrainingTask

# BERT: 15% of tokens; of those 80% [MASK], 10% random, 10% unchanged.
MASK_RATE = 0.15
MASK_TOKEN_SHARE = 0.8
RANDOM_TOKEN_SHARE = 0.1


def mask_tokens(ids, mask, *, seed, vocab_size: int, mask_id: int, special_ids: Sequence[int],
                mask_rate: float = MASK_RATE, max_predictions: int = 20):
    """BERT masking of a batch, deterministic in `seed` (a [2] int tensor).

    Args:
        ids: int32 [B, L] token ids. mask: int [B, L], 1 = real token.
        special_ids: ids never chosen (padding, EOS, CLS).

    Returns dict: `text_tokens` (the corrupted ids), `mlm_positions` int32 [B, P],
    `mlm_targets` int32 [B, P] (original ids there), `mlm_weights` float32 [B, P] (1 = a
    real prediction), with P = max_predictions.
    """
    ids = tf.cast(ids, tf.int32)
    length = ids.shape[1]
    if length is None:
        raise ZooError("mask_tokens needs a static sequence length (pad texts to max_length)")
    p = min(max_predictions, length)
    candidate = tf.cast(mask, tf.bool)
    for s in special_ids:
        candidate &= ids != s
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=3)
    # Choose round(rate * n) of each row's n candidates (at least 1, at most P): the P with
    # the highest random priority, keeping the first of them.
    priority = tf.random.stateless_uniform(tf.shape(ids), seed=seeds[0])
    priority = tf.where(candidate, priority, -1.0)
    top, positions = tf.math.top_k(priority, k=p)
    n_real = tf.reduce_sum(tf.cast(candidate, tf.float32), axis=1)
    n_pred = tf.clip_by_value(tf.round(n_real * mask_rate), 1.0, float(p))
    keep = (tf.range(p, dtype=tf.float32)[None, :] < n_pred[:, None]) & (top >= 0.0)
    chosen = tf.reduce_any(tf.one_hot(positions, length, on_value=True, off_value=False,
                                      dtype=tf.bool) & keep[:, :, None], axis=1)
    r = tf.random.stateless_uniform(tf.shape(ids), seed=seeds[1])
    random_ids = tf.random.stateless_uniform(tf.shape(ids), seed=seeds[2], maxval=vocab_size,
                                             dtype=tf.int32)
    corrupted = tf.where(chosen & (r < MASK_TOKEN_SHARE), tf.constant(mask_id, tf.int32), ids)
    corrupted = tf.where(chosen & (r >= MASK_TOKEN_SHARE)
                         & (r < MASK_TOKEN_SHARE + RANDOM_TOKEN_SHARE), random_ids, corrupted)
    keep = tf.cast(keep, tf.float32)
    if p < max_predictions:  # texts shorter than P: pad to P (weight 0)
        positions = tf.pad(positions, [[0, 0], [0, max_predictions - p]])
        keep = tf.pad(keep, [[0, 0], [0, max_predictions - p]])
    targets = tf.gather(ids, positions, batch_dims=1)
    return {"text_tokens": corrupted, "mlm_positions": tf.cast(positions, tf.int32),
            "mlm_targets": targets, "mlm_weights": keep}


class MaskedLanguageModel(keras.Model):
    """A text encoder plus BERT's prediction head (dense + GELU, LayerNorm, vocab logits)."""

    def __init__(self, encoder, vocab_size: int, **kwargs):
        super().__init__(**kwargs)
        self.text_encoder = encoder
        self.vocab_size = vocab_size
        width = encoder.width
        self.head_transform = keras.layers.Dense(width, activation="gelu",
                                                 name="mlm_head_transform")
        self.head_norm = keras.layers.LayerNormalization(epsilon=1e-6, name="mlm_head_norm")
        self.head_logits = keras.layers.Dense(vocab_size, name="mlm_head_logits")

    def call(self, tokens, mask, positions, training=False):
        sequence = self.text_encoder(tokens, mask, training=training)
        picked = ops.take_along_axis(sequence, ops.cast(positions, "int32")[..., None], axis=1)
        return self.head_logits(self.head_norm(self.head_transform(picked)))


def special_ids_of(tokenizer):
    ids = [getattr(tokenizer, a, None) for a in ("pad_id", "eos_id", "bos_id")]
    return sorted({i for i in ids if i is not None and i >= 0})


def mask_id_of(tokenizer, override: Optional[int] = None) -> int:
    if override is not None:
        if not isinstance(override, int) or not 0 <= override < tokenizer.vocab_size:
            raise ZooError(f"mlm.mask_id must be a token id in [0, {tokenizer.vocab_size}), "
                           f"got {override!r}")
        return override
    for attr in ("mask_id", "unk_id"):
        value = getattr(tokenizer, attr, None)
        if value is not None and value >= 0:
            return int(value)
    raise ZooError(f"tokenizer {type(tokenizer).__name__} has no mask or unknown-token id; set "
                   f"mlm.mask_id to a token id to use for masking")


@TASKS.register("mlm", needs="a text source and a SentencePiece model")
class MLMTask(PretrainingTask):
    """BERT masked-LM pretraining of a text encoder (15% of tokens: 80/10/10).

    Args:
        encoder: registered text encoder name (the one Parti uses: 'parti_encoder').
        encoder_options: its arguments (gin bindings of the encoder apply when None).
        tokenizer: registered text tokenizer name.
        tokenizer_options: its arguments, e.g. {'model_path': 'runs/spm/spm.model'}.
        dataset: a registered dataset whose captions are the text (e.g. 'synthetic_shapes').
        dataset_options: arguments of the dataset (its gin bindings apply too).
        text_files: or text files / globs, one text per non-empty line.
        tfds_name: or a TFDS text dataset in `data_dir` (e.g. 'c4/en'); never downloaded.
        data_dir: TFDS data_dir for `tfds_name`.
        split: split of the dataset.
        max_texts: at most this many texts are read from a dataset or files.
        mask_rate: share of real tokens chosen for prediction (BERT: 0.15).
        mask_id: the mask token id (default: the tokenizer's mask id, else its unk id).
        max_predictions: at most this many predictions per text.
        learning_rate, warmup_steps, decay_steps, weight_decay, clip_norm: AdamW with linear
            warm-up and cosine decay; global-norm clipping.
    """

    group_name = "mlm"

    def __init__(self, encoder: str = "parti_encoder", encoder_options: Optional[Dict] = None,
                 tokenizer: str = "sentencepiece", tokenizer_options: Optional[Dict] = None,
                 dataset: Optional[str] = None, dataset_options: Optional[Dict] = None,
                 text_files: Sequence[str] = (),
                 tfds_name: Optional[str] = None, data_dir: Optional[str] = None,
                 split: str = "train", max_texts: int = text_sources.DEFAULT_MAX_TEXTS,
                 mask_rate: float = MASK_RATE, mask_id: Optional[int] = None,
                 max_predictions: Optional[int] = None, learning_rate: float = 1e-3,
                 warmup_steps: int = 200, decay_steps: int = 10_000,
                 weight_decay: float = 0.01, clip_norm: Optional[float] = 1.0):
        sources = [s for s in (dataset, tuple(text_files or ()), tfds_name) if s]
        if len(sources) != 1:
            raise ZooError("mlm needs exactly one text source: mlm.dataset = 'synthetic_shapes'"
                           ", mlm.text_files = ['corpus/*.txt'] or mlm.tfds_name = 'c4/en' "
                           f"(got dataset={dataset!r}, text_files={list(text_files or ())!r}, "
                           f"tfds_name={tfds_name!r})")
        if not 0.0 < mask_rate < 1.0:
            raise ZooError(f"mlm.mask_rate must be in (0, 1), got {mask_rate!r}")
        check_positive_numbers("mlm", learning_rate=learning_rate)
        check_positive_ints("mlm", max_texts=max_texts)
        self.dataset_name, self.text_files, self.tfds_name = dataset, list(text_files or ()), \
            tfds_name
        self.dataset_options = (DATASETS.resolve(dataset, dataset_options)
                               if dataset else {})
        self.data_dir, self.split, self.max_texts = data_dir, split, int(max_texts)
        self.mask_rate = float(mask_rate)
        self.learning_rate, self.warmup_steps = float(learning_rate), int(warmup_steps)
        self.decay_steps, self.weight_decay = int(decay_steps), float(weight_decay)
        self.clip_norm = clip_norm

        self.set_text_side(tokenizer, tokenizer_options, encoder, encoder_options)
        self.mask_id = mask_id_of(self.tokenizer, mask_id)
        self.special_ids = special_ids_of(self.tokenizer)
        length = int(self.tokenizer.max_length)
        self.max_predictions = int(max_predictions or
                                   min(length, math.ceil(length * self.mask_rate) + 1))
        self.model = None
        self.optimizer = None

    # -- Task --------------------------------------------------------------------------------

    def config(self) -> Dict[str, Any]:
        return {"encoder": self.encoder_name, "encoder_options": self.encoder_options,
                "tokenizer": self.tokenizer_name, "tokenizer_options": self.tokenizer_options,
                "dataset": self.dataset_name, "dataset_options": self.dataset_options,
                "text_files": self.text_files,
                "tfds_name": self.tfds_name, "data_dir": self.data_dir, "split": self.split,
                "max_texts": self.max_texts, "mask_rate": self.mask_rate,
                "mask_id": self.mask_id, "max_predictions": self.max_predictions,
                "learning_rate": self.learning_rate, "warmup_steps": self.warmup_steps,
                "decay_steps": self.decay_steps, "weight_decay": self.weight_decay,
                "clip_norm": self.clip_norm}

    def build(self) -> None:
        encoder = TEXT_ENCODERS.create_with_defaults(self.encoder_name, self.encoder_options,
                                                     name="text_encoder")
        self.model = MaskedLanguageModel(encoder, self.vocab_size, name="mlm")
        length = int(self.tokenizer.max_length)
        tokens = tf.zeros([1, length], tf.int32)
        self.model(tokens, tf.ones_like(tokens), tf.zeros([1, self.max_predictions], tf.int32))
        self.optimizer = self.make_optimizer()

    def texts(self):
        """The text source: a list of strings or a tf.data.Dataset of them (c4)."""
        if self.tfds_name:
            return text_sources.c4_dataset(self.tfds_name, self.split, self.data_dir)
        return text_sources.load_texts(self.dataset_name, self.text_files, self.split,
                                       self.max_texts, self.dataset_options)

    def dataset(self, batch_size: int, seed: int, start_step: int = 0) -> tf.data.Dataset:
        texts = text_sources.text_batches(self.texts(), batch_size, seed, start_step)
        tokenizer = self.fresh_tokenizer()
        steps = tf.data.Dataset.counter(start_step)

        def prepare(step, strings):
            tokens = tokenizer(strings)
            masked = mask_tokens(
                tokens["ids"], tokens["mask"], seed=tf.stack([tf.constant(seed, tf.int64),
                                                              step + (1 << 40)]),
                vocab_size=self.vocab_size, mask_id=self.mask_id,
                special_ids=self.special_ids, mask_rate=self.mask_rate,
                max_predictions=self.max_predictions)
            return {**masked, "text_mask": tokens["mask"], "caption": strings}

        ds = tf.data.Dataset.zip(steps, texts).map(prepare, num_parallel_calls=2,
                                                    deterministic=True)
        return ds.prefetch(2)

    def losses(self, batch, training: bool = True):
        logits = self.model(batch["text_tokens"], batch["text_mask"], batch["mlm_positions"],
                            training=training)
        logits = ops.cast(logits, "float32")
        targets = batch["mlm_targets"]
        weights = ops.cast(batch["mlm_weights"], "float32")
        ce = keras.losses.sparse_categorical_crossentropy(targets, logits, from_logits=True)
        total = ops.maximum(ops.sum(weights), 1.0)
        loss = ops.sum(ce * weights) / total
        correct = ops.cast(ops.equal(ops.argmax(logits, axis=-1), ops.cast(targets, "int64")),
                           "float32")
        accuracy = ops.sum(correct * weights) / total
        return {"mlm": loss}, {"mlm_accuracy": accuracy}
