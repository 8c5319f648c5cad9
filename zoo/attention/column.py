"""Column attention (DALL-E): each token sees the earlier tokens in its grid column."""

import numpy as np
import tensorflow as tf

from zoo.attention.base import (AttentionKernel, check_grid, mask_bias,
                                scale_queries, softmax_attention)
from zoo.registry import ATTENTION


@ATTENTION.register("column")
class ColumnAttention(AttentionKernel):
    """Column attention: each token sees itself and every earlier token in the same column.

    Sparse: a transpose to [w, h] makes each column a causal sequence of h tokens
    (N * h scores instead of N * N).
    """

    name = "column"

    def allowed(self, qr, qc, kr, kc, grid):
        return (kc == qc) & (kr <= qr)

    def call(self, q, k, v, grid):
        h, w = check_grid(grid, q.shape[2])
        b_h = tf.shape(q)[:2]
        d, dv = q.shape[-1], v.shape[-1]

        def columns(x, dim):  # [B, H, N, d] -> [B, H, w, h, d]
            return tf.transpose(tf.reshape(x, tf.concat([b_h, [h, w, dim]], 0)),
                                [0, 1, 3, 2, 4])

        scores = tf.matmul(columns(scale_queries(q), d), columns(k, d),
                           transpose_b=True)  # [B, H, w, h, h]
        causal = mask_bias(np.tril(np.ones((h, h), dtype=bool)))
        out = softmax_attention(scores, columns(v, dv), bias=causal)  # [B, H, w, h, dv]
        out = tf.transpose(out, [0, 1, 3, 2, 4])
        return tf.reshape(out, tf.concat([b_h, [h * w, dv]], 0))
