"""Conv-shaped attention (DALL-E's last layer, Parti's decoder): a causal k x k window."""

import numpy as np
import tensorflow as tf

from zoo.attention import native
from zoo.attention.base import (AttentionKernel, check_grid, mask_bias,
                                scale_queries, softmax_attention)
from zoo.errors import ZooError
from zoo.registry import ATTENTION


def _divisor_at_most(n, limit):
    return max(d for d in range(1, min(n, limit) + 1) if n % d == 0)


@ATTENTION.register("conv_shaped")
class ConvShapedAttention(AttentionKernel):
    """Conv-shaped attention: the earlier tokens of the k x k window centred on the query.

    A query at (r, c) sees the k//2 rows above it within k//2 columns either side, and the k//2
    tokens to its left on its own row (plus itself): at most 61 keys for k = 11. The window is
    cut at the grid's borders.

    By default the forward pass runs a fused C++ op scoring exactly the allowed keys (see
    `native`). The pure-TF kernel, used otherwise and for gradients, is sparse too: queries are
    taken in tiles of `block_rows` x `block_cols`; the keys of a tile lie in a window of
    (block_rows + k//2) rows x (block_cols + 2 * (k//2)) columns (all columns when the tile
    spans the grid's width), which is gathered once per tile and scored with one small matmul.
    Scores per query: that window's size instead of N (for k = 11: 7 x 32 = 224 with the
    default 2-row tiles on a 32-wide grid, 9 x 18 = 162 with the default 4 x 8 tiles on wider
    grids, against 1024 and 4096 for dense); memory grows linearly with N.

    Args:
        kernel_size: int, odd. Side of the window (DALL-E and Parti: 11).
        block_rows: int or None. Query tile height (must divide the grid height); None picks the
            largest divisor of the height up to 2 (grids up to 32 wide) or 4 (wider grids).
        block_cols: int or None. Query tile width (must divide the grid width); None picks the
            whole width (grids up to 32 wide) or the largest divisor of the width up to 8.
        native: bool. Run the forward pass with the fused C++ op of `zoo.attention.native`
            (compiled on first use; scores exactly the allowed keys, no gathered windows or
            mask; several times faster than the tiled kernel on CPU). Used for float32 inputs
            with static token and head dimensions, outside XLA-compiled functions, SavedModel
            exports and DTensor meshes, when the op builds; otherwise, and with
            `native=False` or the environment variable ZOO_NATIVE_OPS=0, the pure-TF tiled
            kernel runs; it also runs under a GradientTape (training: forward and backward
            cost the same either way). Gradients are always the tiled kernel's (`tf.gradients`
            over the op recomputes the tiled forward pass).
    """

    name = "conv_shaped"

    def __init__(self, kernel_size=11, block_rows=None, block_cols=None, native=True):
        if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
            raise ZooError(f"conv_shaped.kernel_size must be a positive odd int, got "
                           f"{kernel_size!r}")
        for arg, val in (("block_rows", block_rows), ("block_cols", block_cols)):
            if val is not None and (not isinstance(val, int) or val < 1):
                raise ZooError(f"conv_shaped.{arg} must be a positive int or None, got {val!r}")
        if not isinstance(native, bool):
            raise ZooError(f"conv_shaped.native must be True or False, got {native!r}")
        self.kernel_size = kernel_size
        self.block_rows = block_rows
        self.block_cols = block_cols
        self.native = native

    def get_config(self):
        return {"kernel_size": self.kernel_size, "block_rows": self.block_rows,
                "block_cols": self.block_cols, "native": self.native}

    def allowed(self, qr, qc, kr, kc, grid):
        half = self.kernel_size // 2
        above = (kr < qr) & (kr >= qr - half) & (np.abs(kc - qc) <= half)
        left = (kr == qr) & (kc <= qc) & (kc >= qc - half)
        return above | left

    def _tiles(self, h, w):
        # Measured (bench/attention.py): up to 32 columns, tiles of 2 full rows (one gather of
        # whole grid rows, no transposes) are fastest; wider grids, 4 x 8 tiles.
        full = w <= 32
        bh = self.block_rows or _divisor_at_most(h, 2 if full else 4)
        bw = self.block_cols or (w if full else _divisor_at_most(w, 8))
        if h % bh or w % bw:
            raise ZooError(f"conv_shaped tiles of {bh}x{bw} do not divide the {h}x{w} grid; "
                           f"set conv_shaped.block_rows / block_cols to divisors")
        return bh, bw

    def _plan(self, h, w):
        """Static gather indices [nh, nw, win] and mask [nh, nw, bh * bw, win]."""
        key = (h, w)
        cache = self.__dict__.setdefault("_plans", {})
        if key in cache:
            return cache[key]
        half = self.kernel_size // 2
        bh, bw = self._tiles(h, w)
        nh, nw = h // bh, w // bw
        win_rows = bh + half
        if bw + 2 * half >= w:  # the window spans the whole width: no column padding
            col0 = np.zeros(nw, dtype=np.int64)
            win_cols = w
        else:
            col0 = np.arange(nw) * bw - half
            win_cols = bw + 2 * half
        row0 = np.arange(nh) * bh - half
        kr = row0[:, None, None, None] + np.arange(win_rows)[None, None, :, None]
        kc = col0[None, :, None, None] + np.arange(win_cols)[None, None, None, :]
        kr, kc = np.broadcast_arrays(kr, kc)  # [nh, nw, win_rows, win_cols]
        kr = kr.reshape(nh, nw, -1)
        kc = kc.reshape(nh, nw, -1)
        index = np.clip(kr, 0, h - 1) * w + np.clip(kc, 0, w - 1)
        qr = np.arange(nh)[:, None, None, None] * bh + np.arange(bh)[None, None, :, None]
        qc = np.arange(nw)[None, :, None, None] * bw + np.arange(bw)[None, None, None, :]
        qr, qc = np.broadcast_arrays(qr, qc)  # [nh, nw, bh, bw]
        qr = qr.reshape(nh, nw, -1, 1)
        qc = qc.reshape(nh, nw, -1, 1)
        mask = self.block_mask(qr, qc, kr[:, :, None, :], kc[:, :, None, :], (h, w))
        cache[key] = (bh, bw, index.astype(np.int32), mask)
        return cache[key]

    def call(self, q, k, v, grid):
        h, w = check_grid(grid, q.shape[2])
        self._tiles(h, w)  # bad tiles are an error on either path (gradients use the tiles)
        op = self._native_op(q, k, v)
        if op is None:
            return self._call_tf(q, k, v, (h, w))
        half = self.kernel_size // 2

        @tf.custom_gradient
        def attend(q, k, v):
            def grad(d_out):  # the tiled kernel's gradient, recomputing its forward pass
                with tf.GradientTape() as tape:
                    tape.watch([q, k, v])
                    out = self._call_tf(q, k, v, (h, w))
                return tape.gradient(out, [q, k, v], output_gradients=d_out)
            return op(q, k, v, height=h, width=w, radius=half), grad

        return attend(q, k, v)

    @tf.autograph.experimental.do_not_convert  # trace-time Python (builds, loads, checks)
    def _native_op(self, q, k, v):
        """The fused op when it applies to these inputs (see `native`), else None."""
        if not self.native or any(tf.as_dtype(x.dtype) != tf.float32 for x in (q, k, v)):
            return None
        shapes = [tf.TensorShape(x.shape) for x in (q, k, v)]
        if any(s.rank != 4 or not s[2:].is_fully_defined() for s in shapes):
            return None
        if not native.usable_on(q, k, v):
            return None
        if native.gradient_tape_recording():
            # Under a GradientTape (training) the tiled kernel runs forward and backward: the
            # op's forward plus the tiled kernel's recomputation in the backward pass costs as
            # much, and training keeps one set of numerics whichever process runs it.
            return None
        library = native.load("conv_shaped_attention")
        return None if library is None else library.zoo_conv_shaped_attention

    def _call_tf(self, q, k, v, grid):
        """The pure-TF tiled kernel (gathered key windows, batched matmuls, mask bias)."""
        h, w = grid
        bh, bw, index, mask = self._plan(h, w)
        nh, nw, win = index.shape
        b_h = tf.shape(q)[:2]
        d, dv = q.shape[-1], v.shape[-1]

        def windows(x, dim):  # [B, H, N, d] -> [B, H, nh, nw, win, d]
            if nw == 1:  # full-width tiles: gather whole grid rows (w * d contiguous values)
                rows = tf.reshape(x, tf.concat([b_h, [h, w * dim]], 0))
                x = tf.gather(rows, index[:, 0, ::w].reshape(-1) // w, axis=2)
            else:
                x = tf.gather(x, index.reshape(-1), axis=2)
            return tf.reshape(x, tf.concat([b_h, [nh, nw, win, dim]], 0))

        def tiles(x, dim):  # [B, H, N, d] -> [B, H, nh, nw, bh * bw, d]
            if bh == 1 or nw == 1:
                return tf.reshape(x, tf.concat([b_h, [nh, nw, bh * bw, dim]], 0))
            x = tf.reshape(x, tf.concat([b_h, [nh, bh, nw, bw, dim]], 0))
            x = tf.transpose(x, [0, 1, 2, 4, 3, 5, 6])
            return tf.reshape(x, tf.concat([b_h, [nh, nw, bh * bw, dim]], 0))

        scores = tf.matmul(tiles(scale_queries(q), d), windows(k, d), transpose_b=True)
        out = softmax_attention(scores, windows(v, dv), bias=mask_bias(mask))
        if bh > 1 and nw > 1:
            out = tf.reshape(out, tf.concat([b_h, [nh, nw, bh, bw, dv]], 0))
            out = tf.transpose(out, [0, 1, 2, 4, 3, 5, 6])
        return tf.reshape(out, tf.concat([b_h, [h * w, dv]], 0))
