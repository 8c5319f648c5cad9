"""Dense causal attention: every token sees every earlier token (the text-free reference)."""

import numpy as np
import tensorflow as tf

from zoo.attention.base import (AttentionKernel, check_grid, mask_bias, scale_queries,
                                softmax_attention)
from zoo.registry import ATTENTION


@ATTENTION.register("dense")
class DenseAttention(AttentionKernel):
    """Dense causal attention: each token sees itself and all earlier tokens."""

    name = "dense"

    def allowed(self, qr, qc, kr, kc, grid):
        w = grid[1]
        return kr * w + kc <= qr * w + qc

    def call(self, q, k, v, grid=None):
        n = q.shape[2]
        if grid is not None:
            check_grid(grid, n)
        causal = mask_bias(np.tril(np.ones((n, n), dtype=bool)))
        scores = tf.matmul(scale_queries(q), k, transpose_b=True)
        return softmax_attention(scores, v, bias=causal)

    def step(self, q, k_cache, v_cache, t, grid=None):
        n = k_cache.shape[2]
        valid = tf.range(n) <= tf.cast(t, tf.int32)
        scores = tf.matmul(scale_queries(q), k_cache, transpose_b=True)
        return softmax_attention(scores, v_cache, valid[None, None, None, :])
