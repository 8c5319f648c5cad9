"""A tiny real Task for the training-loop tests: an MLP regression on data derived from (seed, step).

`register()` registers it as task `test_tiny_regression` (done by the `train_script` entry
script so `zoo-train` can run it from a gin file; in-process tests pass instances, so the
registry seen by other test files is unchanged).
"""

import textwrap

import keras
import numpy as np
import tensorflow as tf

from zoo.registry import TASKS
from zoo.train.task import Task, UpdateGroup

NAME = "test_tiny_regression"


class TinyRegression(Task):
    """y = x . w_true + 0.1 noise, fitted by a Dense-ReLU-Dropout-Dense MLP.

    Args:
        hidden: width of the hidden layer (the "model size").
        in_dim: input width.
        dropout: dropout rate (exercises the RNG state in checkpoints).
        learning_rate: Adam's learning rate.
        two_groups: also train a separate linear "critic" with its own optimizer and loss
            (like a generator / discriminator pair).
        clip_norm: global-norm clipping of the main group.
        nan_at_step: the targets of this step are inf (a non-finite loss); -1: never.
        image_size: side of the images returned by `summaries`.
    """

    def __init__(self, hidden=8, in_dim=4, dropout=0.1, learning_rate=0.01, two_groups=False,
                 clip_norm=None, nan_at_step=-1, image_size=4):
        self.hidden = hidden
        self.in_dim = in_dim
        self.dropout = dropout
        self.learning_rate = learning_rate
        self.two_groups = two_groups
        self.clip_norm = clip_norm
        self.nan_at_step = nan_at_step
        self.image_size = image_size
        self.after_steps = []

    def config(self):
        return dict(hidden=self.hidden, in_dim=self.in_dim, dropout=self.dropout,
                    learning_rate=self.learning_rate, two_groups=self.two_groups,
                    clip_norm=self.clip_norm, nan_at_step=self.nan_at_step,
                    image_size=self.image_size)

    def build(self):
        self.model = keras.Sequential([
            keras.Input((self.in_dim,)),
            keras.layers.Dense(self.hidden, activation="relu"),
            keras.layers.Dropout(self.dropout),
            keras.layers.Dense(1),
        ], name="mlp")
        self.optimizer = keras.optimizers.Adam(self.learning_rate)
        self.optimizer.build(self.model.trainable_variables)
        if self.two_groups:
            self.critic = keras.Sequential([keras.Input((self.in_dim,)), keras.layers.Dense(1)],
                                           name="critic")
            self.critic_optimizer = keras.optimizers.SGD(0.05)
            self.critic_optimizer.build(self.critic.trainable_variables)

    def dataset(self, batch_size, seed, start_step=0):
        in_dim, nan_at = self.in_dim, self.nan_at_step
        w_true = tf.constant(np.linspace(-1.0, 1.0, in_dim)[:, None], tf.float32)

        def make(step):
            s = tf.stack([tf.cast(seed, tf.int64), step])
            x = tf.random.stateless_normal([batch_size, in_dim], seed=s)
            noise = tf.random.stateless_normal([batch_size, 1], seed=s + 7)
            y = tf.matmul(x, w_true) + 0.1 * noise
            y = tf.where(tf.equal(step, nan_at), tf.fill(tf.shape(y), np.inf), y)
            return {"x": x, "y": y, "step": tf.fill([batch_size], step)}

        return tf.data.Dataset.range(start_step, 2 ** 62).map(make)

    def update_groups(self):
        groups = [UpdateGroup("main", self.optimizer, self.model.trainable_variables,
                              clip_norm=self.clip_norm)]
        if self.two_groups:
            groups.append(UpdateGroup("critic", self.critic_optimizer,
                                      self.critic.trainable_variables))
        return groups

    def losses(self, batch, training=True):
        pred = self.model(batch["x"], training=training)
        main = tf.reduce_mean(tf.square(pred - batch["y"]))
        losses = {"main": main}
        metrics = {"mae": tf.reduce_mean(tf.abs(pred - batch["y"]))}
        if self.two_groups:
            c = self.critic(batch["x"])
            losses["critic"] = tf.reduce_mean(tf.square(c - tf.stop_gradient(pred)))
        return losses, metrics

    def trackables(self):
        out = {"model": self.model}
        if self.two_groups:
            out["critic"] = self.critic
        return out

    def summaries(self, batch):
        n = self.image_size
        img = tf.reshape(tf.sigmoid(batch["x"][:, :1]), [-1, 1, 1, 1])
        return {"inputs": tf.tile(img, [1, n, n, 3]), "batch_mean": tf.reduce_mean(batch["y"])}

    def after_step(self, step):
        self.after_steps.append(step)

    def weights(self):
        """All model weights as numpy arrays (for comparisons)."""
        out = [v.numpy() for v in self.model.weights]
        if self.two_groups:
            out += [v.numpy() for v in self.critic.weights]
        return out


def register():
    """Registers the task as `test_tiny_regression` (undo with TASKS.unregister(NAME))."""
    if NAME not in TASKS:
        TASKS.register(NAME)(TinyRegression)


def train_script(path):
    """Writes a zoo-train entry script that first registers this task; returns its path."""
    import os
    here = os.path.dirname(os.path.abspath(__file__))
    with open(path, "w") as f:
        f.write(textwrap.dedent(f"""\
            import sys
            sys.path.insert(0, {here!r})
            import tiny_task
            tiny_task.register()
            from zoo.tools.train import run
            run()
            """))
    return path
