"""zoo.layers.fused: the softmax cross-entropy fused forward and backward against TensorFlow's
op (values and gradients), and the parti task training on it."""

import numpy as np
import pytest
import tensorflow as tf

from zoo.errors import ZooError
from zoo.layers import fused


def _values_and_grads(fn, x, dy):
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = fn(x)
    return y, tape.gradient(y, x, dy)


@pytest.mark.parametrize("graph", [False, True])
def test_cross_entropy_matches_tensorflow_and_its_gradient(graph):
    rng = np.random.default_rng(1)
    logits = tf.constant((rng.normal(size=(2, 40, 300)) * 4).astype(np.float32))
    targets = tf.constant(rng.integers(0, 300, (2, 40)).astype(np.int32))
    weights = tf.constant(rng.uniform(size=(2, 40)).astype(np.float32))

    def run(fn):
        def loss(logits):
            return tf.reduce_sum(fn(targets, logits) * weights)  # non-uniform upstream grads
        return _values_and_grads(loss, logits, None)
    if graph:
        run = tf.function(run)
    want_y, want_g = run(tf.nn.sparse_softmax_cross_entropy_with_logits)
    got_y, got_g = run(fused.sparse_softmax_cross_entropy)
    np.testing.assert_allclose(got_y, want_y, rtol=1e-6)
    np.testing.assert_allclose(got_g, want_g, rtol=1e-5, atol=1e-7)
    per = fused.sparse_softmax_cross_entropy(targets, logits)
    assert per.shape == (2, 40)
    np.testing.assert_allclose(per, tf.nn.sparse_softmax_cross_entropy_with_logits(
        targets, logits), rtol=1e-6)


def test_cross_entropy_bad_input_is_an_error():
    logits = tf.zeros((3, 5))
    for bad in ([0, 5, 1], [0, -1, 1]):  # past the vocabulary, below 0: NaN there, not silent
        targets = tf.constant(bad)
        with tf.GradientTape() as tape:
            tape.watch(logits)
            loss = fused.sparse_softmax_cross_entropy(targets, logits)
        grad = tape.gradient(loss, logits)
        np.testing.assert_array_equal(np.isnan(loss), [False, True, False])
        np.testing.assert_array_equal(np.isnan(grad).any(-1), [False, True, False])
    with pytest.raises(ZooError, match="float logits"):
        fused.sparse_softmax_cross_entropy(tf.constant([0, 1, 1]), tf.zeros((3, 5), tf.int32))
    with pytest.raises(ZooError, match="integer targets"):
        fused.sparse_softmax_cross_entropy(tf.constant([0.0, 1.0, 1.0]), logits)
    with pytest.raises(ZooError, match="one axis less"):
        fused.sparse_softmax_cross_entropy(tf.constant([[0, 1, 1]]), logits)


def test_the_parti_task_trains_on_the_fused_cross_entropy(monkeypatch):
    from zoo.train.parti_task import PartiTask
    calls = []
    real = fused.sparse_softmax_cross_entropy
    monkeypatch.setattr(fused, "sparse_softmax_cross_entropy",
                        lambda t, lg: calls.append(lg.shape) or real(t, lg))
    logits = tf.constant(np.random.default_rng(3).normal(size=(2, 4, 7)).astype(np.float32))
    codes = tf.constant([[[1, 2], [3, 6]], [[0, 0], [5, 4]]], tf.int32)

    class Task:  # the attributes `losses` reads
        def model(self, inputs, training):
            return logits
    losses, metrics = PartiTask.losses(Task(), {"text_tokens": None, "text_mask": None,
                                               "image_codes": codes})
    assert calls == [(2, 4, 7)]
    want = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
        tf.reshape(codes, (2, 4)), logits))
    np.testing.assert_allclose(losses["model"], want, rtol=1e-6)


def test_cross_entropy_of_bfloat16_logits_is_tensorflows():
    logits = tf.cast(tf.constant(np.random.default_rng(5).normal(size=(4, 9)), tf.float32),
                     tf.bfloat16)
    targets = tf.constant([0, 8, 3, 3])
    got = fused.sparse_softmax_cross_entropy(targets, logits)
    assert got.dtype == tf.bfloat16
    np.testing.assert_array_equal(
        tf.cast(got, tf.float32),
        tf.cast(tf.nn.sparse_softmax_cross_entropy_with_logits(targets, logits), tf.float32))
