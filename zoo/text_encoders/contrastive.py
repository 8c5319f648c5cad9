"""Contrastive image-text pretraining (task `contrastive`): a small ViT + the text encoder.

    # gin/runs/contrastive_shapes.gin
    train.task = 'contrastive'
    contrastive.encoder = 'parti_encoder'
    contrastive.dataset = 'synthetic_shapes'

A dual encoder in the manner of CLIP (Radford et al. 2021): the image tower is a small ViT
(patches, learned positions, pre-LayerNorm blocks, mean pooling), the text tower is the
registered text encoder being pretrained (mean of its outputs over real tokens); each is
projected to `embed_dim` and l2-normalised. The loss is the symmetric InfoNCE over the batch,
with a learnable temperature (initialised to 0.07, its inverse capped at 100, as in CLIP).

The trained run directory is what the scorer `contrastive_scorer` loads (`scorer.py`) to rerank
samples and to score image-text agreement; its text tower can be loaded into Parti
(`pretrained.py`).
"""

import math
from typing import Any, Dict, Optional

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from zoo.errors import ZooError, check_positive_ints, check_positive_numbers
from zoo.registry import DATASETS, TASKS, TEXT_ENCODERS
from zoo.text_encoders import common
from zoo.text_encoders.pretraining import PretrainingTask

# CLIP: temperature initialised to 0.07, logit scale clipped at 100.
INIT_TEMPERATURE = 0.07
MAX_LOGIT_SCALE = 100.0


@keras.saving.register_keras_serializable(package="zoo")
class ViTBlock(keras.layers.Layer):
    """Pre-LayerNorm transformer block: self-attention then a GELU MLP, both residual."""

    def __init__(self, width, heads, mlp_dim, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        self.width, self.heads, self.mlp_dim, self.dropout = width, heads, mlp_dim, dropout
        self.attention_norm = keras.layers.LayerNormalization(epsilon=1e-6,
                                                              name="attention_norm")
        self.attention = keras.layers.MultiHeadAttention(heads, width // heads, dropout=dropout,
                                                         name="attention")
        self.mlp_norm = keras.layers.LayerNormalization(epsilon=1e-6, name="mlp_norm")
        self.mlp_in = keras.layers.Dense(mlp_dim, activation="gelu", name="mlp_in")
        self.mlp_out = keras.layers.Dense(width, name="mlp_out")
        self.drop = keras.layers.Dropout(dropout)

    def call(self, x, training=False):
        h = self.attention_norm(x)
        x = x + self.drop(self.attention(h, h, training=training), training=training)
        h = self.mlp_out(self.mlp_in(self.mlp_norm(x)))
        return x + self.drop(h, training=training)

    def get_config(self):
        return {**super().get_config(), "width": self.width, "heads": self.heads,
                "mlp_dim": self.mlp_dim, "dropout": self.dropout}


@keras.saving.register_keras_serializable(package="zoo")
class ViTImageEncoder(keras.layers.Layer):
    """Small ViT image tower: images [B, H, W, 3] in [0, 1] -> pooled features [B, width].

    Args:
        image_size: int. Side of the (square) input images.
        patch_size: int. Side of a square patch; must divide image_size.
        width: int. Token width.
        layers: int. Transformer blocks.
        heads: int. Attention heads (must divide width).
        mlp_dim: int. Hidden width of the MLPs.
        dropout: float.
    """

    def __init__(self, image_size=32, patch_size=4, width=128, layers=4, heads=4, mlp_dim=256,
                 dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        check_positive_ints("contrastive image tower", image_size=image_size,
                            patch_size=patch_size, width=width, layers=layers, heads=heads,
                            mlp_dim=mlp_dim)
        if image_size % patch_size:
            raise ZooError(f"contrastive image tower: patch_size={patch_size} does not divide "
                           f"image_size={image_size}")
        if width % heads:
            raise ZooError(f"contrastive image tower: heads={heads} does not divide "
                           f"width={width}")
        self.image_size, self.patch_size, self.width = image_size, patch_size, width
        self.layers, self.heads, self.mlp_dim, self.dropout = layers, heads, mlp_dim, dropout
        self.num_patches = (image_size // patch_size) ** 2
        self.patch_embed = keras.layers.Conv2D(width, patch_size, strides=patch_size,
                                               name="patch_embed")
        self.blocks = [ViTBlock(width, heads, mlp_dim, dropout, name=f"block_{i}")
                       for i in range(layers)]
        self.final_norm = keras.layers.LayerNormalization(epsilon=1e-6, name="final_norm")

    def build(self, input_shape):
        self.position_embedding = self.add_weight(
            name="position_embedding", shape=(1, self.num_patches, self.width),
            initializer=keras.initializers.RandomNormal(stddev=0.02))
        self.built = True

    def call(self, images, training=False):
        x = self.patch_embed(images * 2.0 - 1.0)
        x = ops.reshape(x, (-1, self.num_patches, self.width)) + self.position_embedding
        for block in self.blocks:
            x = block(x, training=training)
        return ops.mean(self.final_norm(x), axis=1)

    def get_config(self):
        return {**super().get_config(), "image_size": self.image_size,
                "patch_size": self.patch_size, "width": self.width, "layers": self.layers,
                "heads": self.heads, "mlp_dim": self.mlp_dim, "dropout": self.dropout}


class DualEncoder(keras.Model):
    """Image tower + text tower, each projected to `embed_dim` and l2-normalised."""

    def __init__(self, image_encoder, text_encoder, embed_dim: int,
                 init_temperature: float = INIT_TEMPERATURE, **kwargs):
        super().__init__(**kwargs)
        self.image_encoder = image_encoder
        self.text_encoder = text_encoder
        self.embed_dim = embed_dim
        self.init_temperature = init_temperature
        self.image_projection = keras.layers.Dense(embed_dim, use_bias=False,
                                                   name="image_projection")
        self.text_norm = keras.layers.LayerNormalization(epsilon=1e-6, name="text_norm")
        self.text_projection = keras.layers.Dense(embed_dim, use_bias=False,
                                                  name="text_projection")
        self.log_logit_scale = self.add_weight(
            name="log_logit_scale", shape=(),
            initializer=keras.initializers.Constant(math.log(1.0 / init_temperature)))

    def embed_images(self, images, training=False):
        return common.l2_normalize(self.image_projection(
            self.image_encoder(images, training=training)))

    def embed_text(self, tokens, mask, training=False):
        sequence = self.text_encoder(tokens, mask, training=training)
        pooled = common.masked_mean(ops.cast(sequence, "float32"), mask)
        return common.l2_normalize(self.text_projection(self.text_norm(pooled)))

    def logit_scale(self):
        return ops.exp(ops.minimum(self.log_logit_scale, math.log(MAX_LOGIT_SCALE)))

    def call(self, images, tokens, mask, training=False):
        return (self.embed_images(images, training=training),
                self.embed_text(tokens, mask, training=training))


def info_nce(image_embeddings, text_embeddings, logit_scale):
    """Symmetric InfoNCE: mean of image->text and text->image cross-entropies over the batch.

    Returns (loss, image->text logits [B, B]).
    """
    logits = logit_scale * ops.matmul(image_embeddings, ops.transpose(text_embeddings))
    labels = ops.arange(ops.shape(logits)[0])
    i2t = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
    t2i = keras.losses.sparse_categorical_crossentropy(labels, ops.transpose(logits),
                                                       from_logits=True)
    return (ops.mean(i2t) + ops.mean(t2i)) / 2.0, logits


@TASKS.register("contrastive", needs="a SentencePiece model (tokenizer_options)")
class ContrastiveTask(PretrainingTask):
    """Dual-encoder contrastive pretraining (symmetric InfoNCE, learnable temperature).

    Args:
        encoder: registered text encoder name (the text tower; Parti's: 'parti_encoder').
        encoder_options: its arguments (gin bindings of the encoder apply when None).
        tokenizer: registered text tokenizer name.
        tokenizer_options: its arguments, e.g. {'model_path': 'runs/spm/spm.model'}.
        init_text_encoder: optional run directory (e.g. an `mlm` run) whose encoder weights
            initialise the text tower.
        dataset: registered image-caption dataset.
        dataset_options: arguments of the dataset.
        split: its split.
        image_size, patch_size, image_width, image_layers, image_heads, image_mlp_dim: the ViT.
        embed_dim: width of the joint embedding space.
        init_temperature: initial softmax temperature (CLIP: 0.07).
        learning_rate, warmup_steps, decay_steps, weight_decay, clip_norm: AdamW with linear
            warm-up and cosine decay; global-norm clipping.
    """

    group_name = "contrastive"

    def __init__(self, encoder: str = "parti_encoder", encoder_options: Optional[Dict] = None,
                 tokenizer: str = "sentencepiece", tokenizer_options: Optional[Dict] = None,
                 init_text_encoder: Optional[str] = None,
                 dataset: str = "synthetic_shapes", dataset_options: Optional[Dict] = None,
                 split: str = "train", image_size: int = 32, patch_size: int = 4,
                 image_width: int = 128, image_layers: int = 4, image_heads: int = 4,
                 image_mlp_dim: int = 256, embed_dim: int = 128,
                 init_temperature: float = INIT_TEMPERATURE, learning_rate: float = 1e-3,
                 warmup_steps: int = 100, decay_steps: int = 10_000,
                 weight_decay: float = 0.05, clip_norm: Optional[float] = 1.0):
        check_positive_ints("contrastive", embed_dim=embed_dim)
        check_positive_numbers("contrastive", learning_rate=learning_rate,
                               init_temperature=init_temperature)
        self.image_config = {"image_size": image_size, "patch_size": patch_size,
                             "width": image_width, "layers": image_layers,
                             "heads": image_heads, "mlp_dim": image_mlp_dim}
        ViTImageEncoder(**self.image_config)  # checks the sizes now, not at build()
        self.dataset_name = dataset
        self.dataset_options = DATASETS.resolve(dataset, dataset_options)
        self.split = split
        self.image_size = int(image_size)
        self.embed_dim = int(embed_dim)
        self.init_temperature = float(init_temperature)
        self.init_text_encoder = init_text_encoder
        self.learning_rate, self.warmup_steps = float(learning_rate), int(warmup_steps)
        self.decay_steps, self.weight_decay = int(decay_steps), float(weight_decay)
        self.clip_norm = clip_norm

        self.set_text_side(tokenizer, tokenizer_options, encoder, encoder_options)
        self.model = None
        self.optimizer = None

    def config(self) -> Dict[str, Any]:
        image = self.image_config
        return {"encoder": self.encoder_name, "encoder_options": self.encoder_options,
                "tokenizer": self.tokenizer_name, "tokenizer_options": self.tokenizer_options,
                "init_text_encoder": self.init_text_encoder,
                "dataset": self.dataset_name, "dataset_options": self.dataset_options,
                "split": self.split, "image_size": image["image_size"],
                "patch_size": image["patch_size"], "image_width": image["width"],
                "image_layers": image["layers"], "image_heads": image["heads"],
                "image_mlp_dim": image["mlp_dim"], "embed_dim": self.embed_dim,
                "init_temperature": self.init_temperature,
                "learning_rate": self.learning_rate, "warmup_steps": self.warmup_steps,
                "decay_steps": self.decay_steps, "weight_decay": self.weight_decay,
                "clip_norm": self.clip_norm}

    def build(self) -> None:
        text_encoder = TEXT_ENCODERS.create_with_defaults(
            self.encoder_name, self.encoder_options, name="text_encoder")
        image_encoder = ViTImageEncoder(**self.image_config, name="image_encoder")
        self.model = DualEncoder(image_encoder, text_encoder, self.embed_dim,
                                 self.init_temperature, name="dual_encoder")
        length = int(self.tokenizer.max_length)
        tokens = tf.zeros([1, length], tf.int32)
        self.model(tf.zeros([1, self.image_size, self.image_size, 3]), tokens,
                   tf.ones_like(tokens))
        if self.init_text_encoder:
            from zoo.text_encoders import pretrained  # noqa: PLC0415 -- avoids an import cycle
            pretrained.load_encoder_weights(text_encoder, self.init_text_encoder)
        # No weight decay on the temperature, norms and biases (CLIP).
        self.optimizer = self.make_optimizer(
            ["log_logit_scale", "bias", "gamma", "beta", "position_embedding"])

    def dataset(self, batch_size: int, seed: int, start_step: int = 0) -> tf.data.Dataset:
        """Image-caption batches of the registered dataset, captions tokenized in-graph."""
        from zoo.data import pipeline  # noqa: PLC0415 -- the data package is heavy

        # The dataset is built first: its own arguments (e.g. a data `seed`) must not collide
        # with the pipeline's (the data-order `seed`).
        source = pipeline.get_dataset(self.dataset_name, **self.dataset_options)
        ds = pipeline.make_dataset(
            source, split=self.split, image_size=self.image_size,
            batch_size=batch_size, tokenizer=self.fresh_tokenizer(), seed=seed,
            start_step=start_step)
        keys = ("image", "caption", "text_tokens", "text_mask")
        return ds.map(lambda b: {k: b[k] for k in keys})

    def losses(self, batch, training: bool = True):
        image_emb, text_emb = self.model(batch["image"], batch["text_tokens"],
                                         batch["text_mask"], training=training)
        scale = self.model.logit_scale()
        loss, logits = info_nce(image_emb, text_emb, scale)
        labels = ops.arange(ops.shape(logits)[0])
        accuracy = ops.mean(ops.cast(ops.equal(ops.argmax(logits, axis=1), labels), "float32"))
        return {"contrastive": loss}, {"batch_accuracy": accuracy, "logit_scale": scale}

    # -- using the trained model -------------------------------------------------------------

    def embed_images(self, images, batch_size: int = 64) -> np.ndarray:
        images = tf.convert_to_tensor(images, tf.float32)
        if images.shape.rank != 4 or images.shape[-1] != 3:
            raise ZooError(f"images must be [B, H, W, 3] in [0, 1], got shape {images.shape}")
        if images.shape[1] != self.image_size or images.shape[2] != self.image_size:
            images = tf.image.resize(images, [self.image_size, self.image_size],
                                     antialias=True)
        fn = _cached(self, "_embed_images_fn", lambda: tf.function(
            lambda x: self.model.embed_images(x, training=False), reduce_retracing=True))
        return np.concatenate([fn(images[i:i + batch_size]).numpy()
                               for i in range(0, int(images.shape[0]), batch_size)]) \
            if int(images.shape[0]) else np.zeros([0, self.embed_dim], np.float32)

    def embed_text(self, captions, batch_size: int = 256) -> np.ndarray:
        captions = tf.convert_to_tensor(captions, tf.string)
        if captions.shape.rank != 1:
            raise ZooError(f"captions must be a vector of strings, got shape {captions.shape}")

        def make():
            tokenizer = self.fresh_tokenizer()

            def embed(strings):
                tokens = tokenizer(strings)
                return self.model.embed_text(tokens["ids"], tokens["mask"], training=False)
            return tf.function(embed, reduce_retracing=True)

        fn = _cached(self, "_embed_text_fn", make)
        n = int(captions.shape[0])
        if not n:
            return np.zeros([0, self.embed_dim], np.float32)
        return np.concatenate([fn(captions[i:i + batch_size]).numpy()
                               for i in range(0, n, batch_size)])


def _cached(obj, attr, make):
    if getattr(obj, attr, None) is None:
        setattr(obj, attr, make())
    return getattr(obj, attr)


def retrieval_accuracy(task, images, captions, candidates: int = 32, seed: int = 0,
                       wrong_for=None) -> float:
    """Share of images whose own caption scores highest among `candidates` captions.

    The other candidates are drawn at random from the set's other distinct captions;
    `wrong_for(i, caption) -> bool` may restrict them to captions that do not describe image
    i (e.g. the shapes checker), so a paraphrase of the right caption is never a distractor.
    `task` has `embed_images(images)` and `embed_text(strings)` (a ContrastiveTask or scorer).
    """
    captions = [c.decode() if isinstance(c, bytes) else str(c) for c in captions]
    pool = sorted(set(captions))
    if len(pool) < candidates:
        raise ZooError(f"retrieval needs at least {candidates} distinct captions, got "
                       f"{len(pool)}")
    image_emb = task.embed_images(images)
    text_emb = dict(zip(pool, task.embed_text(pool)))
    rng = np.random.default_rng(seed)
    correct = 0
    for i, caption in enumerate(captions):
        options = [caption]
        for j in rng.permutation(len(pool)):
            other = pool[j]
            if other != caption and (wrong_for is None or wrong_for(i, other)):
                options.append(other)
                if len(options) == candidates:
                    break
        scores = np.stack([text_emb[c] for c in options]) @ image_emb[i]
        correct += int(np.argmax(scores) == 0)
    return correct / max(len(captions), 1)
