"""Speculative Jacobi decoding on a synthetic model (no network): a Markov chain whose
next-token logits depend on the position and the previous token, so the exact distribution
of every sequence is known. Drafts of all three kinds (uniform, the code a grid row above,
an earlier call's p) get verified, rejected and redrawn from the residual."""

import itertools

import numpy as np
import pytest
import tensorflow as tf
from scipy import stats

from zoo.models import jacobi
from zoo.models.selection import row_keys_for

VOCAB, TOKENS, ROW = 3, 5, 2  # 3 codes, 5 positions, drafts from 2 positions back


def _chain(seed=0, scale=2.5):
    """Logits [TOKENS, VOCAB + 1 (previous token; VOCAB = BOS), VOCAB]."""
    return np.random.default_rng(seed).normal(size=(TOKENS, VOCAB + 1, VOCAB)) * scale


def _step(table):
    table = tf.constant(table, tf.float32)

    def step(inputs, t, cache):  # inputs [R, L]: the tokens before positions t .. t + L - 1
        length = inputs.shape[1]
        at = tf.gather(table, t + tf.range(length))  # [L, VOCAB + 1, VOCAB]
        logits = tf.gather(at, tf.transpose(inputs), batch_dims=1)  # [L, R, VOCAB]
        return tf.transpose(logits, [1, 0, 2]), cache + 1
    return step


def _exact(table, temperature):
    seqs = np.array(list(itertools.product(range(VOCAB), repeat=TOKENS)))
    logp = np.zeros(len(seqs))
    prev = np.full(len(seqs), VOCAB)
    for t in range(TOKENS):
        logits = table[t, prev] / temperature
        logits = logits - logits.max(-1, keepdims=True)
        lp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
        logp += lp[np.arange(len(seqs)), seqs[:, t]]
        prev = seqs[:, t]
    return seqs, np.exp(logp)


def _decode(table, window, rows, seed, temperature=1.0):
    keys = row_keys_for(seed, tf.range(1), rows)
    codes, calls = tf.function(lambda k: jacobi.decode(
        _step(table), tf.constant(0), k, TOKENS, window, VOCAB, VOCAB, ROW, temperature))(keys)
    return codes.numpy(), int(calls)


@pytest.mark.parametrize("window,temperature", [(2, 1.0), (3, 1.0), (5, 0.7)])
def test_samples_have_the_chains_exact_distribution(window, temperature):
    # 6000 rows share the window (rows ahead verify from their own frontier). Wrong draft
    # distributions in the residual (an earlier call's p taken from the wrong window position,
    # or as uniform) fail this by far.
    table = _chain()
    seqs, exact = _exact(table, temperature)
    codes, calls = _decode(table, window, 6000, seed=5, temperature=temperature)
    assert calls <= TOKENS
    counts = np.bincount(codes @ VOCAB ** np.arange(TOKENS - 1, -1, -1),
                         minlength=len(seqs))
    index = seqs @ VOCAB ** np.arange(TOKENS - 1, -1, -1)
    expected = np.zeros(len(seqs))
    expected[index] = exact * len(codes)
    keep = expected >= 5
    observed = np.append(counts[keep], counts[~keep].sum())
    expected = np.append(expected[keep], expected[~keep].sum())
    assert stats.chisquare(observed, expected).pvalue > 1e-3


def test_greedy_is_exact_and_row_above_drafts_save_calls():
    # A chain whose greedy path alternates 0, 1, 0, ...: from position ROW on, the draft taken
    # from ROW positions back is the argmax, so calls accept several tokens.
    table = _chain(1, scale=1.0)
    for prev, best in ((VOCAB, 0), (0, 1), (1, 0), (2, 0)):
        table[:, prev, best] += 5.0
    codes, calls = _decode(table, 4, 1, seed=0, temperature=0.0)
    np.testing.assert_array_equal(codes[0], [0, 1, 0, 1, 0])
    assert calls < TOKENS


def test_two_level_categorical_draws_from_probs_and_never_a_zero():
    # 512 codes: blocks of 128 (the window's V = 8192 path), 70% of the codes of mass 0.
    rng = np.random.default_rng(0)
    probs = rng.exponential(size=512) * (rng.uniform(size=512) < 0.3)
    draws = 100000
    codes = jacobi.categorical(tf.constant(np.broadcast_to(probs, (1, draws, 512)), tf.float32),
                               tf.constant(rng.uniform(size=(1, draws)), tf.float32)).numpy()[0]
    assert (probs[codes] > 0).all()
    counts = np.bincount(codes, minlength=512)[probs > 0]
    expected = probs[probs > 0] / probs.sum() * draws
    assert stats.chisquare(counts, expected * counts.sum() / expected.sum()).pvalue > 1e-3
