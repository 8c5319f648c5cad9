"""zoo.layers.fused: exact GELU and softmax cross-entropy, fused forward and backward, against
TensorFlow's ops (values and gradients), and the places that use them (the MLP, the parti task)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from zoo.errors import ZooError
from zoo.layers import fused
from zoo.layers.transformer import MLP


def _values_and_grads(fn, x, dy):
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = fn(x)
    return y, tape.gradient(y, x, dy)


@pytest.mark.parametrize("graph", [False, True])
def test_gelu_matches_keras_exact_gelu_and_its_gradient(graph):
    rng = np.random.default_rng(0)
    # Wide range: the tails (|x| > 5) and around 0, where erfc and the pdf term matter.
    x = tf.constant(np.concatenate([rng.normal(size=3880) * 3, np.linspace(-12, 12, 194)])
                    .astype(np.float32).reshape(1, -1, 97))
    dy = tf.constant(rng.normal(size=x.shape).astype(np.float32))
    run = tf.function(_values_and_grads) if graph else _values_and_grads
    want_y, want_g = run(keras.activations.gelu, x, dy)
    got_y, got_g = run(fused.gelu, x, dy)
    np.testing.assert_allclose(got_y, want_y, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got_g, want_g, rtol=1e-5, atol=1e-6)


def test_gelu_of_x_plus_bias_matches_and_sums_the_bias_gradient():
    rng = np.random.default_rng(4)
    x = tf.constant(rng.normal(size=(3, 7, 11)).astype(np.float32) * 2)
    bias = tf.constant(rng.normal(size=11).astype(np.float32))
    dy = tf.constant(rng.normal(size=x.shape).astype(np.float32))

    def run(fn):
        with tf.GradientTape() as tape:
            tape.watch([x, bias])
            y = fn(x, bias)
        return [y, *tape.gradient(y, [x, bias], dy)]
    got = run(fused.gelu)
    want = run(lambda x, b: tf.nn.gelu(x + b, approximate=False))
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


def test_gelu_in_bfloat16_stays_bfloat16_and_close():
    x = tf.constant(np.linspace(-6, 6, 256).astype(np.float32))
    got = fused.gelu(tf.cast(x, tf.bfloat16))
    assert got.dtype == tf.bfloat16
    np.testing.assert_allclose(tf.cast(got, tf.float32), tf.nn.gelu(x, approximate=False),
                               rtol=2e-2, atol=2e-2)


def test_gelu_rejects_integers():
    with pytest.raises(ZooError, match="float tensor"):
        fused.gelu(tf.constant([1, 2]))


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
    with pytest.raises(tf.errors.InvalidArgumentError, match="past the vocabulary"):
        fused.sparse_softmax_cross_entropy(tf.constant([0, 5, 1]), logits)
    with pytest.raises(tf.errors.InvalidArgumentError, match="below 0"):
        fused.sparse_softmax_cross_entropy(tf.constant([0, -1, 1]), logits)
    with pytest.raises(ZooError, match="float32 or float64 logits"):
        fused.sparse_softmax_cross_entropy(tf.constant([0, 1, 1]), tf.zeros((3, 5), tf.bfloat16))
    with pytest.raises(ZooError, match="integer targets"):
        fused.sparse_softmax_cross_entropy(tf.constant([0.0, 1.0, 1.0]), logits)
    with pytest.raises(ZooError, match="one axis less"):
        fused.sparse_softmax_cross_entropy(tf.constant([[0, 1, 1]]), logits)


def _mlp_and_input():
    keras.utils.set_random_seed(0)
    mlp = MLP(16, 48)
    mlp.build()
    x = tf.constant(np.random.default_rng(2).normal(size=(2, 5, 16)).astype(np.float32) * 2)
    return mlp, x


def test_mlp_uses_the_fused_gelu_with_keras_dense_values_and_gradients(monkeypatch):
    mlp, x = _mlp_and_input()
    calls = []
    real = fused.gelu
    monkeypatch.setattr(fused, "gelu", lambda h, b: calls.append(h.shape) or real(h, b))

    def grads(call):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = call(x)
            loss = tf.reduce_sum(y * y)
        return [y, *tape.gradient(loss, [x, *mlp.trainable_variables])]
    got = grads(mlp)
    assert calls == [(2, 5, 48)]  # the fused path ran
    want = grads(lambda x: mlp.wo(mlp.wi(x)))  # Keras' Dense with its "gelu" activation
    assert len(calls) == 1
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


def test_mlp_keeps_keras_for_another_activation(monkeypatch):
    mlp, x = _mlp_and_input()
    mlp.wi.activation = keras.activations.relu
    monkeypatch.setattr(fused, "gelu", lambda *a: pytest.fail("fused gelu for a relu layer"))
    hidden = tf.nn.relu(tf.tensordot(x, mlp.wi.kernel, 1) + mlp.wi.bias)
    np.testing.assert_allclose(mlp(x), mlp.wo(hidden), rtol=1e-5, atol=1e-6)


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
