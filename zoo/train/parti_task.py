"""Training stage for the Parti transformer (task `parti`): captions -> image codes.

    # gin/runs/parti_tiny_shapes.gin
    train.task = 'parti'
    parti.model = 'parti_tiny'
    parti.image_tokenizer_dir = 'runs/demo/tokenizer'    # a trained `vit_vqgan` run
    parti.text_tokenizer = 'runs/demo/spm/spm.model'

Data: a registered image-caption dataset through the shared pipeline; the frozen image
tokenizer (loaded from its run directory) turns each batch's images into the target codes
inside the input pipeline, and the SentencePiece model tokenizes the captions in-graph. Or,
with `code_records`, precomputed codes written once by `zoo-encode` (no image tokenizer per
step; the captions are tokenized again with this run's text tokenizer).

Loss: cross-entropy over the image codes (teacher forcing, raster order). A share
`condition_drop_rate` of the examples (default 0.1; the paper does not give its rate) is
trained unconditionally, which classifier-free guidance needs at sampling time; which
examples are dropped is a pure function of (seed, step), so resumed runs match.

Optimizer (Parti): Adafactor with beta1 0.9, beta2 0.96, decoupled weight decay 4.5e-2;
learning rate 4.5e-5 with 5000 warm-up steps and exponential decay from step 85k; gradients
clipped to global norm 4.0. Each is a registered component with options:
`parti.optimizer = 'adafactor'`, `parti.optimizer_options = {...}`,
`parti.schedule = 'warmup_exponential_decay'`, `parti.schedule_options = {...}`.
"""

import logging
import os
from typing import Optional

import numpy as np
import tensorflow as tf
from keras import ops

from zoo.errors import ZooError
from zoo.layers import fused
from zoo.layers.arguments import constructor_arguments
from zoo.models import contract
from zoo.registry import DATASETS, IMAGE_TOKENIZERS, MODELS, OPTIMIZERS, SCHEDULES, TASKS
from zoo.train import optimizers as _optimizers  # noqa: F401  (registers adafactor, schedule)
from zoo.train import run_info, storage
from zoo.train.task import Task, UpdateGroup

log = logging.getLogger("zoo")




def load_image_tokenizer(model_dir: Optional[str], name: Optional[str], options=None):
    """The frozen image tokenizer: trained weights from `model_dir`, else `name` untrained."""
    if model_dir:
        from zoo.train.loop import load_task
        tokenizer = getattr(load_task(model_dir), "tokenizer", None)
        if tokenizer is None:
            raise ZooError(f"{model_dir!r} is a run of a task without an image tokenizer")
    else:
        tokenizer = IMAGE_TOKENIZERS.create(name, **dict(options or {}))
        if not tokenizer.built:
            tokenizer.build()
    tokenizer.trainable = False
    return tokenizer


def _registered_text_tokenizer(text_tokenizer) -> bool:
    """True when `text_tokenizer` names a registered text tokenizer (e.g. a plugin's WordPiece)
    rather than a SentencePiece .model path."""
    from zoo.registry import TEXT_TOKENIZERS
    return (isinstance(text_tokenizer, str) and text_tokenizer in TEXT_TOKENIZERS
            and not os.path.exists(text_tokenizer))


def _make_text_tokenizer(text_tokenizer, max_length):
    if _registered_text_tokenizer(text_tokenizer):
        from zoo.registry import TEXT_TOKENIZERS
        return TEXT_TOKENIZERS.create(text_tokenizer, max_length=max_length)
    from zoo.tokenizers.text import SentencePieceTokenizer
    return SentencePieceTokenizer(text_tokenizer, max_length=max_length)


def _vocab_size(model_path) -> int:
    """Pieces in a SentencePiece model (python library; no TF resource)."""
    if _registered_text_tokenizer(model_path):  # a registered tokenizer: build it and ask
        return int(_make_text_tokenizer(model_path, 8).vocab_size)
    import sentencepiece
    from zoo.tokenizers.text import read_model_proto
    processor = sentencepiece.SentencePieceProcessor()
    try:
        processor.LoadFromSerializedProto(read_model_proto(model_path))
    except ZooError:
        raise
    except Exception as e:  # noqa: BLE001
        raise ZooError(f"{model_path!r} is not a valid SentencePiece model ({e}); make one "
                       f"with zoo-train-spm") from None
    return int(processor.get_piece_size())


@TASKS.register("parti", needs="a SentencePiece model (text_tokenizer)")
class PartiTask(Task):
    """Trains Parti's encoder-decoder to predict a frozen image tokenizer's codes from text.

    Args:
        model: registered model (e.g. 'parti_tiny', 'parti_350m', or a plugin's) meeting
            the model contract of `zoo.models.contract`.
        model_options: overrides of the size's arguments (gin bindings of the size apply too).
        image_tokenizer_dir: a trained `vit_vqgan` run directory (the frozen tokenizer).
        image_tokenizer: registered image tokenizer used untrained when no directory is given
            (tests only: its codes carry little meaning).
        image_tokenizer_options: options of that untrained tokenizer.
        code_records: a directory written by `zoo-encode` (codes + captions of `split`);
            used instead of encoding images every step (give the tokenizer run it was
            encoded with as image_tokenizer_dir: it decodes the samples).
        text_tokenizer: path of the SentencePiece `.model` (required), or the name of a
            registered text tokenizer that needs no other argument than max_length (e.g. the
            keras_hub plugin's 'keras_hub_minilm_l6_v2', with its encoder as text_encoder).
        max_text_length: prompt length in tokens (default: the model's, Parti 128).
        dataset: registered image-caption dataset. dataset_options: its arguments.
        split: dataset split to train on.
        condition_drop_rate: share of examples trained without their caption (guidance).
        optimizer / optimizer_options: registered optimizer (Parti's Adafactor variant).
        schedule / schedule_options: registered learning-rate schedule.
        clip_norm: global gradient-norm clipping (Parti: 4.0; None: off).
        mixed_precision: bf16 projections with LayerNorm and logits in float32.
        summary_captions: captions sampled for the TensorBoard image grid (default: the
            first captions of the batch).
        image_summaries: how many images in that grid.
        summary_guidance: guidance scale of those samples.
    """

    def __init__(self, model="parti_tiny", model_options=None, image_tokenizer_dir=None,
                 image_tokenizer="vit_vqgan_tiny", image_tokenizer_options=None,
                 code_records=None, text_tokenizer=None, max_text_length=None,
                 dataset="synthetic_shapes", dataset_options=None, split="train",
                 condition_drop_rate=0.1, optimizer="adafactor", optimizer_options=None,
                 schedule="warmup_exponential_decay", schedule_options=None, clip_norm=4.0,
                 mixed_precision=False, summary_captions=None, image_summaries=4,
                 summary_guidance=1.2):
        if not text_tokenizer:
            raise ZooError("parti.text_tokenizer is required: the path of a SentencePiece "
                           ".model (make one with zoo-train-spm --dataset=... --output=...)")
        if not 0.0 <= float(condition_drop_rate) < 1.0:
            raise ZooError(f"parti.condition_drop_rate must be in [0, 1), got "
                           f"{condition_drop_rate!r}")
        if clip_norm is not None and not float(clip_norm) > 0:
            raise ZooError(f"parti.clip_norm must be > 0 or None, got {clip_norm!r}")
        self.image_tokenizer_dir = (storage.absolute(image_tokenizer_dir)
                                    if image_tokenizer_dir else None)
        if self.image_tokenizer_dir:
            image_tokenizer, image_tokenizer_options = run_info.tokenizer_run(
                self.image_tokenizer_dir)
        self.image_tokenizer_name = image_tokenizer
        self.image_tokenizer_options = IMAGE_TOKENIZERS.resolve(image_tokenizer,
                                                                image_tokenizer_options)
        # An unbuilt twin gives the grid and codebook without loading weights.
        probe = IMAGE_TOKENIZERS.create(image_tokenizer, **self.image_tokenizer_options)
        self.image_size = int(probe.image_size)
        self.image_grid = tuple(int(g) for g in probe.grid_size)
        self.codebook_size = int(probe.codebook_size)

        self.code_records = os.path.abspath(code_records) if code_records else None
        if self.code_records:
            from zoo.data.records import read_info
            info = read_info(self.code_records, split)
            if (tuple(info["grid_size"]) != self.image_grid
                    or int(info["codebook_size"]) != self.codebook_size):
                raise ZooError(f"code records {self.code_records} hold {info['grid_size']} "
                               f"grids of {info['codebook_size']} codes, but the image "
                               f"tokenizer makes {list(self.image_grid)} grids of "
                               f"{self.codebook_size}; encode with the same tokenizer run")
        self.text_tokenizer_path = (text_tokenizer if _registered_text_tokenizer(text_tokenizer)
                                    else os.path.abspath(os.fspath(text_tokenizer)))
        self.model_name = model
        contract.check_model_entry(model)
        options = dict(model_options or {})
        # An unbuilt probe (gin bindings of the size, then options) gives the architecture.
        sized = MODELS.create(model, **options)
        self.max_text_length = int(max_text_length or sized.max_text_length)
        # The in-graph tokenizer is made in build(): TF resources made before the loop seeds
        # TF (keras.utils.set_random_seed) are destroyed by it.
        self.text_tokenizer = None
        arch = contract.architecture(sized, model)
        arch.update(image_grid=list(self.image_grid), image_vocab_size=self.codebook_size,
                    text_vocab_size=_vocab_size(self.text_tokenizer_path),
                    max_text_length=self.max_text_length,
                    mixed_precision=bool(mixed_precision or arch.get("mixed_precision")))
        self.model_options = arch
        self.dataset_name = dataset
        # Resolved (gin bindings of the dataset included), so run.json names the data it read.
        self.dataset_options = DATASETS.resolve(dataset, dataset_options)
        self.split = split
        self.condition_drop_rate = float(condition_drop_rate)
        self.optimizer_name = optimizer
        self.optimizer_options = OPTIMIZERS.resolve(optimizer, optimizer_options)
        self.schedule_name = schedule
        self.schedule_options = SCHEDULES.resolve(schedule, schedule_options)
        self.clip_norm = None if clip_norm is None else float(clip_norm)
        self.mixed_precision = bool(mixed_precision)
        self.summary_captions = list(summary_captions) if summary_captions else None
        self.image_summaries = int(image_summaries)
        self.summary_guidance = float(summary_guidance)
        self.model = None
        self.image_tokenizer = None
        self._sampler = None

    def config(self):
        return {"model": self.model_name, "model_options": self.model_options,
                "image_tokenizer_dir": self.image_tokenizer_dir,
                "image_tokenizer": self.image_tokenizer_name,
                "image_tokenizer_options": self.image_tokenizer_options,
                "code_records": self.code_records, "text_tokenizer": self.text_tokenizer_path,
                "max_text_length": self.max_text_length, "dataset": self.dataset_name,
                "dataset_options": self.dataset_options, "split": self.split,
                "condition_drop_rate": self.condition_drop_rate,
                "optimizer": self.optimizer_name, "optimizer_options": self.optimizer_options,
                "schedule": self.schedule_name, "schedule_options": self.schedule_options,
                "clip_norm": self.clip_norm, "mixed_precision": self.mixed_precision,
                "summary_captions": self.summary_captions,
                "image_summaries": self.image_summaries,
                "summary_guidance": self.summary_guidance}

    # -- building ----------------------------------------------------------------------------

    def build(self):
        self.text_tokenizer = _make_text_tokenizer(self.text_tokenizer_path,
                                                   self.max_text_length)
        # The registered model, rebuilt from its recorded architecture (run.json files
        # written before a model gained an argument still load: it takes its default).
        options = constructor_arguments(self.model_options)
        self.model = MODELS.create(self.model_name, **options)
        contract.check_model(self.model, self.model_name)
        self.model.build()
        contract.check_rebuilt(self.model, self.model_name, options)
        # Loaded with code records too: it decodes the summary samples.
        self.image_tokenizer = load_image_tokenizer(
            self.image_tokenizer_dir, self.image_tokenizer_name, self.image_tokenizer_options)
        schedule = SCHEDULES.create(self.schedule_name, **self.schedule_options)
        self.optimizer = OPTIMIZERS.create(self.optimizer_name, learning_rate=schedule,
                                           **self.optimizer_options)
        self.optimizer.build(self.model.trainable_variables)

    def update_groups(self):
        return [UpdateGroup("model", self.optimizer, self.model.trainable_variables,
                            clip_norm=self.clip_norm)]

    def trackables(self):
        if self.image_tokenizer_dir:
            return {"model": self.model}
        # An untrained tokenizer (tests) is not saved anywhere else: keep it with the model.
        return {"model": self.model, "image_tokenizer": self.image_tokenizer}

    # -- data --------------------------------------------------------------------------------

    def dataset(self, batch_size, seed, start_step=0):
        if self.code_records:
            ds = self._code_dataset(batch_size, seed, start_step)
        else:
            ds = self._image_dataset(batch_size, seed, start_step)
        rate = self.condition_drop_rate

        def add_flags(step, batch):
            u = tf.random.stateless_uniform([batch_size], seed=tf.stack(
                [tf.cast(seed, tf.int64), tf.cast(step, tf.int64)]))
            return {**batch, "unconditional": u < rate}

        ds = ds.enumerate(start=start_step).map(add_flags)
        return ds.prefetch(2)

    def _image_dataset(self, batch_size, seed, start_step):
        from zoo.data.pipeline import get_dataset, make_dataset
        if self.image_tokenizer is None:
            raise ZooError("PartiTask.dataset() needs build() first (the image tokenizer)")
        # Built first: the dataset's own arguments (e.g. its `seed`) must not collide with the
        # pipeline's (the data-order `seed`).
        ds = make_dataset(dataset=get_dataset(self.dataset_name, **self.dataset_options),
                          split=self.split, image_size=self.image_size,
                          batch_size=batch_size, tokenizer=self.text_tokenizer, seed=seed,
                          start_step=start_step)
        tokenizer = self.image_tokenizer

        def encode(batch):
            codes = tokenizer.encode(batch["image"])
            return {"text_tokens": batch["text_tokens"], "text_mask": batch["text_mask"],
                    "image_codes": tf.cast(codes, tf.int32), "caption": batch["caption"]}

        return ds.map(encode)

    def _code_dataset(self, batch_size, seed, start_step):
        from zoo.data.records import read_encoded
        ds = read_encoded(self.code_records, self.split, batch_size=batch_size, seed=seed,
                          start_step=start_step)
        tokenizer = self.text_tokenizer

        def tokens(batch):
            # Captions are tokenized again with this run's tokenizer and length, so records
            # written with other text settings (or none) still fit.
            text = tokenizer(batch["caption"])
            return {"text_tokens": text["ids"], "text_mask": text["mask"],
                    "image_codes": tf.cast(batch["image_codes"], tf.int32),
                    "caption": batch["caption"]}

        return ds.map(tokens)

    # -- the step ----------------------------------------------------------------------------

    def losses(self, batch, training=True):
        logits = self.model({"text_tokens": batch["text_tokens"],
                             "text_mask": batch["text_mask"],
                             "image_codes": batch["image_codes"],
                             "unconditional": batch.get("unconditional")}, training=training)
        targets = ops.reshape(ops.cast(batch["image_codes"], "int32"),
                              (ops.shape(logits)[0], -1))
        # Fused forward and backward (one pass each over the [B, N, vocab] logits; the same
        # values as Keras' sparse_categorical_crossentropy from logits).
        xent = fused.sparse_softmax_cross_entropy(targets, logits)
        loss = ops.mean(xent)
        accuracy = ops.mean(ops.cast(ops.argmax(logits, axis=-1) == targets, "float32"))
        return {"model": loss}, {"accuracy": accuracy, "perplexity": ops.exp(loss)}

    # -- summaries ---------------------------------------------------------------------------

    def summaries(self, batch):
        from zoo.models.sampling import Sampler
        n = self.image_summaries
        if n <= 0:
            return {}
        if self.summary_captions:
            captions = tf.constant(self.summary_captions[:n])
        else:
            captions = batch["caption"][:n]
        text = self.text_tokenizer(captions)
        if self._sampler is None:
            self._sampler = Sampler(self.model, temperature=1.0,
                                    guidance_scale=self.summary_guidance)
        codes = self._sampler(text["ids"], text["mask"], num_samples=1, seed=0)
        images = np.asarray(self.image_tokenizer.decode(codes), np.float32)
        return {"samples": images}
