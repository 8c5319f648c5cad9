"""Token selection for the sampler: temperature, top-k and top-p filtering, and the
counter-based noise that makes every sample reproducible.

    logits = filter_logits(logits / temperature, top_k, top_p)
    token = select_tokens(logits, row_keys_for(seed, prompt_ids, num_samples), t, temperature,
                          top_k, top_p)        # argmax(logits + Gumbel noise); argmax at T=0

The Gumbel noise of sample `s` of prompt `p` at position `t` is a hash of (seed, prompt id,
s, t, code) (`row_keys_for` makes the per-row key, `uniform_noise` the uniforms), so samples
do not depend on the batch size or on which prompts share a batch. `zoo.models.sampling` runs
these inside its decode loop; `zoo.models.jacobi` verifies its drafts against `target_probs`
(the distribution `select_tokens` draws from) and draws with `uniform_noise`.
"""

import tensorflow as tf

NEG_INF = -1e9


def _mix32(x):
    """A 32-bit integer hash (lowbias32), on int64 tensors holding uint32 values."""
    m = tf.constant(0xFFFFFFFF, tf.int64)
    x = tf.bitwise.bitwise_and(x, m)
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, 16))
    x = tf.bitwise.bitwise_and(x * 0x7FEB352D, m)
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, 15))
    x = tf.bitwise.bitwise_and(x * 0x846CA68B, m)
    return tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, 16))


def uniform_noise(row_keys, t, vocab):
    """Uniform (0, 1) noise [B, vocab] from per-row int64 keys [B] and position t."""
    t = tf.cast(t, tf.int64)
    base = _mix32(row_keys * 0x9E3779B1 + _mix32(t + 0x632BE5AB))  # [B]
    codes = tf.range(vocab, dtype=tf.int64)
    bits = _mix32(base[:, None] + _mix32(codes * 0x85EBCA77 + 0x27D4EB2F)[None, :])
    return (tf.cast(bits, tf.float32) + 0.5) / 4294967296.0


def filter_logits(logits, top_k=0, top_p=1.0):
    """Keeps the top_k largest logits and the smallest set whose probability reaches top_p."""
    if top_k and top_k < logits.shape[-1]:
        kth = tf.math.top_k(logits, k=top_k).values[:, -1:]
        logits = tf.where(logits < kth, NEG_INF, logits)
    if top_p < 1.0:
        sorted_logits = tf.sort(logits, axis=-1, direction="DESCENDING")
        probs = tf.nn.softmax(sorted_logits, axis=-1)
        before = tf.cumsum(probs, axis=-1, exclusive=True)
        # The smallest kept logit: the last one whose preceding mass is still below top_p.
        kept = tf.reduce_sum(tf.cast(before < top_p, tf.int32), axis=-1, keepdims=True)
        threshold = tf.gather(sorted_logits, tf.maximum(kept - 1, 0), batch_dims=1)
        logits = tf.where(logits < threshold, NEG_INF, logits)
    return logits


def target_probs(logits, temperature, top_k=0, top_p=1.0):
    """The distribution ordinary sampling draws from, float32 [..., V] from logits [..., V]:
    softmax(filtered logits / temperature), or the one-hot argmax at temperature 0."""
    logits = tf.cast(logits, tf.float32)
    vocab = logits.shape[-1]
    if temperature == 0:
        return tf.one_hot(tf.argmax(logits, axis=-1, output_type=tf.int32), vocab)
    flat = tf.reshape(logits, [-1, vocab]) / temperature
    probs = tf.nn.softmax(filter_logits(flat, top_k, top_p), axis=-1)
    return tf.reshape(probs, tf.shape(logits))


def select_tokens(logits, row_keys, t, temperature=1.0, top_k=0, top_p=1.0):
    """Next tokens [B] from logits [B, V]: argmax when temperature is 0, else a sample."""
    if temperature == 0:
        return tf.argmax(logits, axis=-1, output_type=tf.int32)
    logits = filter_logits(logits / temperature, top_k, top_p)
    u = uniform_noise(row_keys, t, logits.shape[-1])
    gumbel = -tf.math.log(-tf.math.log(u))
    return tf.argmax(logits + gumbel, axis=-1, output_type=tf.int32)


def row_keys_for(seed, prompt_ids, num_samples):
    """int64 keys [B * num_samples], prompt-major, from (seed, prompt id, sample index)."""
    prompt_ids = tf.cast(tf.reshape(prompt_ids, [-1]), tf.int64)
    samples = tf.range(num_samples, dtype=tf.int64)
    seed = tf.cast(seed, tf.int64)
    keys = _mix32(_mix32(seed + 0x1B873593) + prompt_ids[:, None] * 0x01000193)
    keys = _mix32(keys + _mix32(samples[None, :] + 0x5BD1E995))
    return tf.reshape(keys, [-1])
