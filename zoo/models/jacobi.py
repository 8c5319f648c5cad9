"""Speculative Jacobi decoding: several image tokens per model call, the same distribution.

Teng et al., "Accelerating Auto-regressive Text-to-Image Generation with Training-free
Speculative Jacobi Decoding" (SJD; ICLR 2025, arXiv:2410.01699), which reports about 2x fewer
model calls for Lumina-mGPT and Anole at unchanged quality. No draft model and no training:

- A window of L positions after the accepted prefix holds draft tokens. A position entering
  the window is drafted from the code one grid row above it (the draft distribution q is a
  point mass there), or from a uniformly random code (q uniform) where that code is not
  decoded or drafted yet. SJD starts new positions at random codes; the code above is a
  better guess for images (large uniform regions) and any draft distribution fixed before
  the verification keeps the acceptance rule exact. Measured on the demo model: 21.5 instead
  of 27.4 model calls per image with 16 drafts per call (bench/RESULTS.md).
- One model call runs the whole window with the KV cache (`ImageDecoder.step` on L tokens),
  giving the target distribution p_j at each window position j, conditioned on the drafts
  before it (the Jacobi iteration).
- Drafts are verified left to right with speculative sampling's rule: accept draft d with
  probability min(1, p_j(d) / q_j(d)); at the first rejection, draw the token from the
  residual max(0, p_j - q_j) (normalised) and stop. A verified position is conditioned on the
  final prefix, so each accepted or redrawn token has exactly the distribution ordinary
  sampling gives it (Leviathan et al. 2023, Chen et al. 2023).
- Every position after the rejection gets a new draft sampled from this call's p_j (with
  q_j = p_j for its next verification); the window then slides to the new frontier and
  drafts the positions entering it.

Each call fixes at least one token, so a grid of N tokens takes at most N calls. A call
computes all L positions (for both guidance rows), so it costs more than one ordinary step;
on a CPU, where the window's arithmetic is not free, fewer calls buy less wall time than on
a GPU (bench/RESULTS.md). p is the
distribution ordinary sampling draws from: guided logits, divided by the temperature, top-k
and top-p filtered. At temperature 0 p is the one-hot argmax, accepting a draft means it is the
argmax, and the tokens are exactly greedy decoding's.

Rows of a batch share the window (it starts at the lowest frontier): a row ahead of it keeps
its fixed tokens and verifies from its own frontier. Samples are therefore reproducible for a
given batch, and their distribution is ordinary sampling's, but which tokens a seed gives
depends on the decoding order and on the other rows of the batch (unlike ordinary sampling,
whose noise is per sample and position).

Randomness: uniforms from the sampler's counter-based hash of (row key, model call, index),
one hash per call; categorical draws by the inverse CDF (one uniform per draw).
"""

import tensorflow as tf

from zoo.errors import ZooError
from zoo.models.selection import target_probs, uniform_noise


def check_window(window):
    if isinstance(window, bool) or not isinstance(window, int) or window < 0 or window == 1:
        raise ZooError(f"jacobi_window must be 0 (off: one token per model call) or an int >= 2 "
                       f"(draft tokens per call, e.g. 16), got {window!r}")
    return window


def categorical(probs, u, block=128):
    """Draws from probs [R, L, V] (unnormalised, >= 0) with uniforms u [R, L] in (0, 1):
    int32 [R, L] by the inverse CDF (a code of probability 0 is never drawn).

    In two levels when V is a multiple of `block`: the CDF of the block sums picks a block,
    then the CDF within that block the code, so only [R * L, V / block] and [R * L, block]
    are cumulated. TensorFlow's cumsum over all V codes took 0.66 ms for [1, 16, 8192] on a
    2-core AMD EPYC (about half of a window-16 call's bookkeeping). The same distribution;
    a draw differs from the one-level one only where rounding moves a CDF boundary
    (2 of 200,000 draws over 512 codes)."""
    shape, vocab = tf.shape(probs), probs.shape[-1]
    flat = tf.reshape(probs, [-1, vocab])
    target = tf.reshape(u, [-1, 1])
    if vocab % block or vocab <= block:
        cdf = tf.math.cumsum(flat, axis=-1)
        index = tf.searchsorted(cdf, target * cdf[:, -1:], side="right", out_type=tf.int32)
        return tf.reshape(tf.minimum(index, vocab - 1), shape[:2])
    grouped = tf.reshape(flat, [-1, vocab // block, block])
    cdf = tf.math.cumsum(tf.reduce_sum(grouped, -1), axis=-1)  # [M, blocks]
    target = target * cdf[:, -1:]
    chosen = tf.minimum(tf.searchsorted(cdf, target, side="right", out_type=tf.int32),
                        vocab // block - 1)  # a block of positive mass: cdf[b] > target
    before = tf.where(chosen > 0, tf.gather(cdf, tf.maximum(chosen - 1, 0), batch_dims=1), 0.0)
    inner = tf.math.cumsum(tf.gather(grouped, chosen[:, 0], batch_dims=1), axis=-1)
    # Strictly below the block's total (rounding may put target - before at or past it), so
    # the code drawn has positive mass.
    rest = tf.minimum(tf.maximum(target - before, 0.0), inner[:, -1:] * (1.0 - 2.0 ** -23))
    index = tf.searchsorted(inner, rest, side="right", out_type=tf.int32)
    index = chosen * block + tf.minimum(index, block - 1)
    return tf.reshape(index, shape[:2])


def _uniforms(keys, call, width):
    """Uniforms [R, width] in (0, 1) for model call `call` (a hash counter of its own)."""
    u = uniform_noise(keys, tf.cast(call, tf.int64) + (1 << 40), width)
    return tf.minimum(u, 1.0 - 2.0 ** -24)  # strictly below 1 in float32


def decode(step, cache, keys, num_tokens, window, vocab, bos_id, row, temperature=1.0, top_k=0,
           top_p=1.0):
    """Speculative Jacobi decoding of `num_tokens` positions for the rows of `keys`.

    step(inputs int32 [R, L], t, cache) -> (guided logits [R, L, V], cache): the model on
        positions t .. t + L - 1 given the tokens at t - 1 .. t + L - 2 (BOS before 0).
    keys: int64 [R] per-row noise keys (`row_keys_for`). row: the grid's width (positions
        entering the window are drafted from the code this far before them).
    Returns (codes int32 [R, num_tokens], model calls: int32 scalar).
    """
    n = int(num_tokens)
    length = min(int(window), n)
    rows = tf.shape(keys)[0]
    j = tf.range(length)

    def window_codes(codes, start, values):
        """codes with positions start, start + 1, ... replaced by values [R, W] (cut at n)."""
        pos = tf.range(n)
        width = values.shape[1]
        inside = (pos >= start) & (pos < start + width)
        spread = tf.gather(values, tf.clip_by_value(pos - start, 0, width - 1), axis=1)
        return tf.where(inside[None, :], spread, codes)

    def body(call, frontier, codes, q_draft, kind, p_prev, offset, cache):
        start = tf.minimum(tf.reduce_min(frontier), n - length)
        padded = tf.concat([tf.fill([rows, 1], bos_id), codes], axis=1)
        inputs = tf.slice(padded, [0, start], [-1, length])
        logits, cache = step(inputs, start, cache)
        p = target_probs(logits, temperature, top_k, top_p)  # [R, L, V]
        # This call's uniforms, one hash: acceptance, redrafts, fresh codes [R, L] each, and
        # the residual draw [R, 1].
        u = _uniforms(keys, call, 3 * length + 1)
        u_accept, u_redraft, u_fresh = (u[:, i * length:(i + 1) * length] for i in range(3))
        drafts = tf.slice(codes, [0, start], [-1, length])
        verify = (start + j)[None, :] >= frontier[:, None]
        p_draft = tf.gather(p, drafts, batch_dims=2)
        reject = verify & (u_accept * q_draft >= p_draft)
        rejected = tf.reduce_any(reject, axis=1)
        first = tf.where(rejected, tf.argmax(tf.cast(reject, tf.int32), axis=1,
                                             output_type=tf.int32), length)
        # The rejected position's token: from the residual max(0, p - q), normalised, with q
        # that position's draft distribution rebuilt from its compact form.
        at = tf.minimum(first, length - 1)
        p_at = tf.gather(p, at, batch_dims=1)
        residual = tf.maximum(p_at - _draft_distribution(
            tf.gather(kind, at), tf.gather(drafts, at, batch_dims=1),
            tf.gather(p_prev, tf.minimum(at + offset, length - 1), batch_dims=1), vocab), 0.0)
        residual = tf.where(tf.reduce_sum(residual, -1, keepdims=True) > 0, residual, p_at)
        redrawn = categorical(residual[:, None], u[:, 3 * length:])[:, 0]
        # Positions after it: new drafts from this call's p (q = p: kept as p itself, and
        # q at the draft as one number).
        redraft = categorical(p, u_redraft)
        before, after = j[None, :] < first[:, None], j[None, :] > first[:, None]
        new = tf.where(before, drafts, tf.where(after, redraft, redrawn[:, None]))
        q_draft = tf.where(after, tf.gather(p, redraft, batch_dims=2), q_draft)
        # Every position still open after this call is one drawn from p (the others are
        # fixed and never verified again), so all kept positions refer to this call's p.
        frontier = tf.where(rejected, start + first + 1, tf.maximum(frontier, start + length))
        # Slide the window to the new frontier; positions entering it start as random codes
        # (written with this window's tokens: positions [start, start + 2L), one update).
        shift = tf.minimum(tf.reduce_min(frontier), n - length) - start
        moved = j + shift
        codes = window_codes(codes, start, new)
        # Positions entering the window (start + L + i, i < shift) are drafted from the code
        # one grid row above them, with q its point mass, where that code is already decoded
        # or drafted (before start + L); otherwise from a uniformly random code, q uniform.
        source = start + length + j - row
        known = (source >= 0) & (source < start + length)
        fresh = tf.where(known[None, :],
                         tf.gather(codes, tf.clip_by_value(source, 0, n - 1), axis=1),
                         _random_codes(u_fresh, vocab))
        # Window index m holds position start + shift + m: a kept draft (m + shift < L) or
        # entering one (fresh index m + shift - L).
        kept = (moved < length)[None, :]
        from_kept, from_fresh = tf.minimum(moved, length - 1), tf.maximum(moved - length, 0)
        q_draft = tf.where(kept, tf.gather(q_draft, from_kept, axis=1), tf.gather(
            tf.where(known, 1.0, 1.0 / vocab), from_fresh)[None, :])
        kind = tf.where(kept[0], FROM_P, tf.gather(tf.where(known, POINT, UNIFORM), from_fresh))
        codes = window_codes(codes, start + length, fresh)
        return call + 1, frontier, codes, q_draft, kind, p, shift, cache

    codes = tf.zeros([rows, n], tf.int32)
    codes = window_codes(codes, 0, _random_codes(_uniforms(keys, -1, length), vocab))
    q_draft = tf.fill([rows, length], 1.0 / vocab)
    kind = tf.fill([length], UNIFORM)  # the same for every row
    p_prev = tf.zeros([rows, length, vocab])  # never read before a call stores its p
    frontier = tf.zeros([rows], tf.int32)
    calls, _, codes, *_ = tf.while_loop(
        lambda call, frontier, *_: tf.reduce_min(frontier) < n, body,
        (tf.constant(0), frontier, codes, q_draft, kind, p_prev, tf.constant(0), cache),
        maximum_iterations=n)
    return codes, calls


# A draft's distribution q, by kind: uniform over the codes, a point mass at the draft, or the
# target distribution p of the call that drew it (stored as that call's p [R, L, V] and the
# window shift since; the verification needs q at the draft, kept as a number [R, L], and the
# residual needs the whole q at the one rejected position, rebuilt by `_draft_distribution`).
UNIFORM, POINT, FROM_P = 0, 1, 2


def _draft_distribution(kind, draft, p_row, vocab):
    """q [R, V] of drafts [R] of `kind` [R]; p_row [R, V]: the p of a FROM_P draft."""
    point = tf.one_hot(draft, vocab)
    return tf.where((kind == FROM_P)[:, None], p_row,
                    tf.where((kind == POINT)[:, None], point, 1.0 / vocab))


def _random_codes(u, vocab):
    """Uniformly random codes from uniforms u."""
    return tf.minimum(tf.cast(u * vocab, tf.int32), vocab - 1)
