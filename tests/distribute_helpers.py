"""Shared by the tests/test_distribute_*.py files: a tiny Parti task and the Megatron rules.

`TinyPartiTask` trains the real `parti_micro` model (1 encoder + 1 decoder layer, 4 heads so
heads split over a 4-way model axis) on token data that is a pure function of (seed, step),
through the real training loop. It is importable by name (`distribute_helpers:TinyPartiTask`)
so `load_task` can rebuild it from a run directory.
"""

import keras
import numpy as np
import tensorflow as tf

from zoo.train.task import Task, UpdateGroup

TEXT_LENGTH = 8


def megatron_rules():
    """The rules of gin/mesh/parti_megatron_rules.gin (parsed from the file)."""
    import gin

    from zoo import config
    config.parse(["mesh/parti_megatron_rules.gin"], finalize=False)
    from zoo.distribute.rules import gin_mesh_layout
    rules = gin_mesh_layout().rules
    gin.clear_config()
    assert rules, "gin/mesh/parti_megatron_rules.gin bound no rules"
    return rules


class TinyPartiTask(Task):
    """Cross-entropy of parti_micro on random text/code pairs.

    Args:
        optimizer: 'adafactor' (Parti's, registered) or 'adam'.
        learning_rate: float.
        clip_norm: global-norm clipping (None: off).
    """

    def __init__(self, optimizer="adafactor", learning_rate=0.01, clip_norm=1.0):
        self.optimizer_name = optimizer
        self.learning_rate = learning_rate
        self.clip_norm = clip_norm

    def config(self):
        return dict(optimizer=self.optimizer_name, learning_rate=self.learning_rate,
                    clip_norm=self.clip_norm)

    def build(self):
        import zoo.models  # noqa: F401  (registers parti_micro)
        from zoo.registry import MODELS, OPTIMIZERS
        self.model = MODELS.create("parti_micro", heads=4, dropout=0.0, encoder_layers=1,
                                   decoder_layers=1, max_text_length=TEXT_LENGTH)
        self.model.build()
        if self.optimizer_name == "adam":
            self.optimizer = keras.optimizers.Adam(self.learning_rate)
        else:
            # epsilon_1: attention key biases get a gradient that is zero up to rounding
            # (softmax ignores a per-query constant); with Parti's 1e-30, Adafactor turns that
            # rounding noise into full-size steps, which differ with any change of summation
            # order (sharded or not). 1e-10 keeps the comparison about sharding.
            self.optimizer = OPTIMIZERS.create(self.optimizer_name,
                                               learning_rate=self.learning_rate,
                                               epsilon_1=1e-10)
        self.optimizer.build(self.model.trainable_variables)

    def dataset(self, batch_size, seed, start_step=0):
        def make(step):
            s = tf.stack([tf.cast(seed, tf.int64), step])
            text = tf.random.stateless_uniform([batch_size, TEXT_LENGTH], s, 1, 64, tf.int32)
            codes = tf.random.stateless_uniform([batch_size, 4, 4], s + 1, 0, 16, tf.int32)
            return {"text_tokens": text, "text_mask": tf.ones_like(text),
                    "image_codes": codes}
        return tf.data.Dataset.range(start_step, 2 ** 62).map(make)

    def update_groups(self):
        return [UpdateGroup("main", self.optimizer, self.model.trainable_variables,
                            clip_norm=self.clip_norm)]

    def losses(self, batch, training=True):
        logits = self.model(batch, training=training)
        labels = tf.reshape(batch["image_codes"], [tf.shape(logits)[0], -1])
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
        return {"main": loss}, {}

    def trackables(self):
        return {"model": self.model}


def host_values(dist, variables):
    """Plain numpy copies of (possibly sharded / mirrored) variables."""
    return [np.asarray(dist.to_host(v)) for v in variables]
