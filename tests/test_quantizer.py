"""Tests of zoo.layers.quantizer: cosine lookup, straight-through, losses, usage, restarts."""

import numpy as np
import tensorflow as tf

from zoo.layers.quantizer import FactorizedQuantizer, l2_normalize


def make(k=16, d=4, **kw):
    q = FactorizedQuantizer(codebook_size=k, lookup_dim=d, **kw)
    q.build((None, None, d))
    return q


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_lookup_is_cosine_nearest():
    q = make(32, 8)
    z = np.random.default_rng(0).normal(size=(3, 5, 8)).astype(np.float32) * 7.0
    codes = np.asarray(q.lookup(z))
    cb = unit(np.asarray(q.codebook))
    expected = np.argmax(unit(z) @ cb.T, axis=-1)
    np.testing.assert_array_equal(codes, expected)
    assert codes.shape == (3, 5) and codes.dtype == np.int32
    # Scaling an input does not change its code (cosine, not Euclidean on raw vectors).
    np.testing.assert_array_equal(np.asarray(q.lookup(z * 0.01)), expected)


def test_outputs_loss_and_straight_through():
    q = make(16, 4, beta=0.25)
    z = tf.constant(np.random.default_rng(1).normal(size=(2, 6, 4)), tf.float32)
    w = tf.constant(np.random.default_rng(2).normal(size=(2, 6, 4)), tf.float32)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(z)
        zq, codes, loss, perplexity = q(z, training=False)
        through = tf.reduce_sum(zq * w)
        direct = tf.reduce_sum(l2_normalize(z) * w)
    e = unit(np.asarray(q.codebook))[np.asarray(codes)]
    np.testing.assert_allclose(np.asarray(zq), e, atol=1e-5)  # forward: the code vectors
    zn = unit(np.asarray(z))
    expected = 1.25 * np.mean(np.sum((zn - e) ** 2, -1))
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
    # Backward: the gradient passes straight through the lookup to the normalised input.
    np.testing.assert_allclose(np.asarray(tape.gradient(through, z)),
                               np.asarray(tape.gradient(direct, z)), atol=1e-6)
    # The codebook gets gradient from the codebook loss only for the codes used.
    g = np.asarray(tape.gradient(loss, q.codebook))
    used = np.unique(np.asarray(codes))
    assert np.all(np.abs(g[used]).sum(-1) > 0)
    assert np.all(g[np.setdiff1d(np.arange(16), used)] == 0)
    assert 1.0 <= float(perplexity) <= len(used) + 1e-4


def test_perplexity_of_uniform_codes():
    q = make(8, 8)
    z = unit(np.asarray(q.codebook))[None]  # each code exactly once
    _, codes, _, perplexity = q(tf.constant(z), training=False)
    np.testing.assert_array_equal(np.asarray(codes)[0], np.arange(8))
    np.testing.assert_allclose(float(perplexity), 8.0, rtol=1e-4)


def test_usage_window_counts_recent_steps_only():
    q = make(8, 8, usage_window=3)
    cb = unit(np.asarray(q.codebook))
    assert float(q.usage()) == 0.0
    for step, code_ids in enumerate([[0, 1], [2], [3], [3]]):
        q(tf.constant(cb[code_ids][None]), training=True)
        if step == 0:
            assert float(q.usage()) == 2 / 8
    # Window of 3: the first step (codes 0, 1) has dropped out.
    assert float(q.usage()) == 2 / 8
    q(tf.constant(cb[[5]][None]), training=False)  # evaluation does not count
    assert float(q.usage()) == 2 / 8


def test_restart_dead_codes_reinitialises_unused_from_latents():
    q = make(8, 4, usage_window=2, restart_dead_codes=True)
    cb = unit(np.asarray(q.codebook))
    latents = cb[[0, 0, 1]] + 0.01
    q(tf.constant(latents[None]), training=True)
    assert q.restart_dead_codes() == 0  # window not yet full
    q(tf.constant(latents[None]), training=True)
    before = np.asarray(q.codebook).copy()
    n = q.restart_dead_codes(seed=0)
    after = np.asarray(q.codebook)
    used = sorted(set(np.asarray(q.lookup(latents)).tolist()))
    assert n == 8 - len(used)
    dead = np.setdiff1d(np.arange(8), [0, 1])
    np.testing.assert_array_equal(after[[0, 1]], before[[0, 1]])
    # Each restarted code now points (almost) at one of the recent latents.
    sims = unit(after[dead]) @ unit(latents).T
    assert np.all(sims.max(-1) > 0.999)


def test_restart_disabled_does_nothing():
    q = make(8, 4, usage_window=1, restart_dead_codes=False)
    q(tf.constant(np.ones((1, 2, 4), np.float32)), training=True)
    before = np.asarray(q.codebook).copy()
    assert q.restart_dead_codes() == 0
    np.testing.assert_array_equal(np.asarray(q.codebook), before)


def test_config_round_trip():
    q = make(8, 4, beta=0.5, usage_window=7, restart_dead_codes=True)
    q2 = FactorizedQuantizer.from_config(q.get_config())
    assert q2.get_config() == q.get_config()
