"""Parti's Adafactor variant (momentum, constant beta2, decoupled decay) and its schedule."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import zoo.train  # noqa: F401
from zoo.errors import ZooError
from zoo.registry import OPTIMIZERS, SCHEDULES
from zoo.train.optimizers import Adafactor, WarmupExponentialDecay


def test_registered_with_parti_defaults():
    opt = OPTIMIZERS.create("adafactor")
    assert (opt.beta_1, opt.beta_2, opt.weight_decay) == (0.9, 0.96, 4.5e-2)
    assert isinstance(SCHEDULES.create("warmup_exponential_decay"), WarmupExponentialDecay)


def test_second_moment_is_factored_and_momentum_is_full():
    kernel = keras.Variable(np.ones((6, 4), np.float32), name="kernel")
    bias = keras.Variable(np.ones((4,), np.float32), name="bias")
    opt = Adafactor(learning_rate=0.1)
    opt.build([kernel, bias])
    shapes = sorted(tuple(v.shape) for v in opt.variables if len(v.shape) > 0)
    # kernel: row (6,), col (4,), momentum (6, 4); bias: second moment (4,), momentum (4,)
    assert shapes == [(4,), (4,), (4,), (6,), (6, 4)]
    no_momentum = Adafactor(learning_rate=0.1, beta_1=0.0)
    no_momentum.build([kernel])
    assert sorted(tuple(v.shape) for v in no_momentum.variables if len(v.shape) > 0) \
        == [(4,), (6,)]


def test_minimises_a_quadratic():
    rng = np.random.default_rng(0)
    target = rng.normal(size=(8, 5)).astype(np.float32)
    w = keras.Variable(np.zeros((8, 5), np.float32))
    opt = Adafactor(learning_rate=0.05, weight_decay=0.0)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean((w - target) ** 2)
        opt.apply_gradients([(tape.gradient(loss, w), w)])

    for _ in range(300):
        step()
    assert float(tf.reduce_mean((w - target) ** 2)) < 0.01 * float(np.mean(target ** 2))


def test_weight_decay_is_decoupled_and_skips_vectors():
    kernel = keras.Variable(np.full((3, 3), 2.0, np.float32))
    bias = keras.Variable(np.full((3,), 2.0, np.float32))
    opt = Adafactor(learning_rate=0.1, weight_decay=0.5)
    zeros = [tf.zeros((3, 3)), tf.zeros((3,))]
    opt.apply_gradients(zip(zeros, [kernel, bias]))
    # Zero gradients: only the decay moves the kernel, w -= lr * wd * w; the bias stays.
    np.testing.assert_allclose(kernel.numpy(), 2.0 * (1 - 0.1 * 0.5), rtol=1e-5)
    np.testing.assert_allclose(bias.numpy(), 2.0)


def test_schedule_warms_up_holds_then_decays():
    s = WarmupExponentialDecay(peak=1.0, warmup_steps=10, decay_start=20, decay_rate=0.5,
                               decay_steps=10, end=0.1)
    values = [float(s(i)) for i in (0, 4, 9, 15, 20, 30, 40, 1000)]
    np.testing.assert_allclose(values, [0.1, 0.5, 1.0, 1.0, 1.0, 0.5, 0.25, 0.1], rtol=1e-5)
    again = WarmupExponentialDecay(**s.get_config())
    assert float(again(30)) == pytest.approx(0.5)


def test_bad_settings():
    with pytest.raises(ZooError, match="beta_1"):
        Adafactor(beta_1=1.0)
    with pytest.raises(ZooError, match="decay_rate"):
        WarmupExponentialDecay(decay_rate=0.0)
    with pytest.raises(ValueError, match="not recognized|Argument"):
        OPTIMIZERS.create("adafactor", bta_1=0.9)
