"""Row attention (DALL-E): a causal sliding window of w + 1 tokens over a w-wide grid."""

import numpy as np
import tensorflow as tf

from zoo.attention.base import (AttentionKernel, check_grid, mask_bias,
                                scale_queries, softmax_attention)
from zoo.registry import ATTENTION


@ATTENTION.register("row")
class RowAttention(AttentionKernel):
    """Row attention: each token sees itself and the w tokens before it in raster order.

    Sparse: the keys of the queries on grid row r all lie in rows r-1 and r, so each row of
    queries is scored against that band of 2w keys (N * 2w scores instead of N * N).
    """

    name = "row"

    def allowed(self, qr, qc, kr, kc, grid):
        w = grid[1]
        q, k = qr * w + qc, kr * w + kc
        return (k <= q) & (k >= q - w)

    def call(self, q, k, v, grid):
        h, w = check_grid(grid, q.shape[2])
        b_h = tf.shape(q)[:2]
        d, dv = q.shape[-1], v.shape[-1]

        def rows(x, dim):
            return tf.reshape(x, tf.concat([b_h, [h, w, dim]], 0))

        def band(x):  # [B, H, h, w, d] -> [B, H, h, 2w, d]: rows r-1 and r
            # tf.slice, not x[:, :, :-1]: a strided slice's gradient (StridedSliceGrad) is slow
            # on 5-D tensors; a slice's is a Pad. Forward + backward of q, k, v [2, 8, 1024, 64]
            # on a 32x32 grid: 45.9 -> 22.0 ms (2-core AMD EPYC, AVX2, oneDNN; bench/RESULTS.md).
            above = tf.slice(x, [0, 0, 0, 0, 0], [-1, -1, h - 1, -1, -1])
            prev = tf.pad(above, [[0, 0], [0, 0], [1, 0], [0, 0], [0, 0]])
            return tf.concat([prev, x], axis=3)

        qr, kb, vb = rows(scale_queries(q), d), band(rows(k, d)), band(rows(v, dv))
        scores = tf.matmul(qr, kb, transpose_b=True)  # [B, H, h, w, 2w]
        r = np.arange(h)[:, None, None]
        c = np.arange(w)[None, :, None]
        m = np.arange(2 * w)[None, None, :]
        key_row = r - 1 + m // w
        mask = self.block_mask(r, c, key_row, m % w, (h, w))
        out = softmax_attention(scores, vb, bias=mask_bias(mask))
        return tf.reshape(out, tf.concat([b_h, [h * w, dv]], 0))
