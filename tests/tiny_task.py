"""A tiny real Task for the training-loop tests: an MLP regression on data derived from (seed, step).

`register()` registers it as task `test_tiny_regression` (and a twin class as
`test_tiny_regression_other`); subprocess tests load it as a plugin (`PLUGIN_SOURCE`), and
in-process tests pass instances or unregister afterwards, so other test files see an unchanged
registry.
"""

import os

import keras
import numpy as np
import tensorflow as tf

from zoo.registry import TASKS
from zoo.train.task import Task, UpdateGroup

NAME = "test_tiny_regression"
OTHER_NAME = "test_tiny_regression_other"  # "another model" for the model-dir checks


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
        nan_grad_at_step: at this step the loss stays finite but its gradient is NaN.
        image_size: side of the images returned by `summaries`.
        optimizer: "adam" or "sgd" (the main group's optimizer).
    """

    def __init__(self, hidden=8, in_dim=4, dropout=0.1, learning_rate=0.01, two_groups=False,
                 clip_norm=None, nan_at_step=-1, nan_grad_at_step=-1, image_size=4,
                 optimizer="adam"):
        self.hidden = hidden
        self.in_dim = in_dim
        self.dropout = dropout
        self.learning_rate = learning_rate
        self.two_groups = two_groups
        self.clip_norm = clip_norm
        self.nan_at_step = nan_at_step
        self.nan_grad_at_step = nan_grad_at_step
        self.image_size = image_size
        self.optimizer_name = optimizer
        self.after_steps = []

    def config(self):
        return dict(hidden=self.hidden, in_dim=self.in_dim, dropout=self.dropout,
                    learning_rate=self.learning_rate, two_groups=self.two_groups,
                    clip_norm=self.clip_norm, nan_at_step=self.nan_at_step,
                    nan_grad_at_step=self.nan_grad_at_step, image_size=self.image_size,
                    optimizer=self.optimizer_name)

    def build(self):
        self.model = keras.Sequential([
            keras.Input((self.in_dim,)),
            keras.layers.Dense(self.hidden, activation="relu"),
            keras.layers.Dropout(self.dropout),
            keras.layers.Dense(1),
        ], name="mlp")
        opt = {"adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD}[self.optimizer_name]
        self.optimizer = opt(self.learning_rate)
        self.optimizer.build(self.model.trainable_variables)
        if self.two_groups:
            self.critic = keras.Sequential([keras.Input((self.in_dim,)), keras.layers.Dense(1)],
                                           name="critic")
            self.critic_optimizer = keras.optimizers.SGD(0.05)
            self.critic_optimizer.build(self.critic.trainable_variables)

    def dataset(self, batch_size, seed, start_step=0):
        in_dim, nan_at, nan_grad_at = self.in_dim, self.nan_at_step, self.nan_grad_at_step
        w_true = tf.constant(np.linspace(-1.0, 1.0, in_dim)[:, None], tf.float32)

        def make(step):
            s = tf.stack([tf.cast(seed, tf.int64), step])
            x = tf.random.stateless_normal([batch_size, in_dim], seed=s)
            noise = tf.random.stateless_normal([batch_size, 1], seed=s + 7)
            y = tf.matmul(x, w_true) + 0.1 * noise
            y = tf.where(tf.equal(step, nan_at), tf.fill(tf.shape(y), np.inf), y)
            g = tf.fill([batch_size], tf.cast(tf.equal(step, nan_grad_at), tf.float32))
            return {"x": x, "y": y, "g": g, "step": tf.fill([batch_size], step)}

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
        # g = 1: + sqrt(0 * sum(pred)) = 0, whose gradient is inf * 0 = NaN; g = 0: + 0.
        g = batch["g"]
        main = main + tf.reduce_mean(tf.sqrt(g * 0.0 * tf.reduce_sum(pred) + (1.0 - g))
                                     - (1.0 - g))
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


class OtherTiny(TinyRegression):
    """The same regression under another name (a model directory of "another model")."""


TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
# A zoo plugin module registering the tiny tasks (tests install it with make_plugin_dist).
PLUGIN_SOURCE = f"""
import sys
sys.path.insert(0, {TESTS_DIR!r})
import tiny_task
tiny_task.register()
"""


def register():
    """Registers the task as `test_tiny_regression` and `test_tiny_regression_other`."""
    for name in (NAME, OTHER_NAME):
        if name not in TASKS:
            TASKS.register(name)(OtherTiny if name == OTHER_NAME else TinyRegression)


def unregister():
    import gin
    gin.clear_config()  # gin's operative config would still name the removed configurables
    for name in (NAME, OTHER_NAME):
        if name in TASKS:
            TASKS.unregister(name)
