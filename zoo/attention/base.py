"""The attention-kernel interface: causal attention patterns over an h x w grid of image tokens.

A kernel is the weight-free core of a self-attention layer: given per-head queries, keys and
values it returns softmax(q k^T / sqrt(d)) v over the keys each query may see. The projections,
heads and KV cache live in `zoo.layers.transformer`; the model builds one kernel per decoder
layer by registry name (`ATTENTION.create(name, **config)`), so a plugin kernel plugs in the
same way as the built-ins:

    from zoo.attention.base import AttentionKernel
    from zoo.registry import ATTENTION

    @ATTENTION.register("myplugin_diagonal")
    class Diagonal(AttentionKernel):
        '''Each token sees itself and the earlier tokens on its diagonal.'''
        def allowed(self, qr, qc, kr, kc, grid):
            return (kr - kc == qr - qc) & (kr <= qr)

Positions are raster order over the grid: token t sits at row t // w, column t % w. Every
pattern is causal (a query never sees a later token) and includes the query itself.

The interface (all tensors [batch, heads, tokens, head_dim]; `grid` is a static (h, w) with
h * w == tokens):

- `allowed(qr, qc, kr, kc, grid)`: the pattern, on numpy integer arrays of query/key rows and
  columns (broadcasting); True where the query may see the key. This defines the semantics.
- `mask(grid)`: the dense [N, N] boolean mask built from `allowed` (for tests and fallbacks).
- `call(q, k, v, grid)`: attention for a full sequence (training, uncached decoding).
  The base class computes dense masked attention; sparse kernels override it and compute only
  the keys each query may see.
- `step(q, k_cache, v_cache, t, grid)`: one new query at position `t` (scalar int tensor, the
  same for the whole batch) against the key/value cache [B, H, N, d] whose positions <= t are
  filled; returns [B, H, 1, d]. The base class attends to the keys position t may see through
  a static table derived from the mask (`key_table`; the whole cache with row t of the mask
  for dense patterns), in one fused native op where native ops run, so kernels need not
  override it.
- `window_step(q, k_cache, v_cache, t, grid)`: L queries at positions t .. t + L - 1
  (t + L <= N; parallel decoding) -> [B, H, L, d]. The base class slices the smallest run of
  cache positions that holds every key of the window (its length is static: L plus how far
  back the pattern reaches) and applies the mask there; kernels need not override it.
- `get_config()`: constructor arguments (JSON-able), so a model can rebuild its kernels.

A kernel that only defines `allowed` is correct (dense masked) and decodes fast (the step's
key table); overriding `call` makes training fast. `dense_masked_attention` is the reference
the built-in kernels are tested against.
"""

import math
from typing import Any, Dict, Tuple

import numpy as np
import tensorflow as tf

# Kernels compute softmax in float32; masked scores get this value (exp underflows to 0).
MASK_VALUE = -1e9

Grid = Tuple[int, int]


def check_grid(grid, tokens=None) -> Tuple[int, int]:
    """(h, w) as ints; errors if it does not match `tokens`."""
    from zoo.errors import ZooError
    try:
        h, w = (int(g) for g in grid)
    except (TypeError, ValueError):
        raise ZooError(f"attention grid must be (height, width), got {grid!r}") from None
    if h <= 0 or w <= 0:
        raise ZooError(f"attention grid sides must be positive, got {grid!r}")
    if tokens is not None and tokens != h * w:
        raise ZooError(f"attention over a {h}x{w} grid needs {h * w} tokens, got {tokens}")
    return h, w


def scale_queries(q):
    """q / sqrt(head_dim): scaling the queries costs N * d, scaling the scores N * keys."""
    return q * tf.cast(1.0 / math.sqrt(q.shape[-1]), q.dtype)


def mask_bias(mask) -> tf.Tensor:
    """A static boolean mask as an additive float32 bias: 0 where seen, MASK_VALUE elsewhere
    (one broadcast add instead of a select over the scores)."""
    return tf.constant(np.where(np.asarray(mask, bool), 0.0, MASK_VALUE).astype(np.float32))


def softmax_attention(scores, v, valid=None, bias=None):
    """softmax(scores) v with scores [..., q, k] already scaled.

    Keys are masked by `valid` (bool, broadcast against the scores) or by an additive `bias`
    from `mask_bias`. The softmax runs in float32 whatever the compute dtype (mixed precision
    keeps it stable); the weighted sum runs in v's dtype.
    """
    scores = tf.cast(scores, tf.float32)
    if valid is not None:
        scores = tf.where(valid, scores, MASK_VALUE)
    if bias is not None:
        scores = scores + bias
    # Softmax over a 2-D view: oneDNN's CPU softmax refuses rank > 5 (tiled kernels are 6-D).
    probs = tf.reshape(tf.nn.softmax(tf.reshape(scores, [-1, tf.shape(scores)[-1]])),
                       tf.shape(scores))
    return tf.matmul(tf.cast(probs, v.dtype), v)


def dense_masked_attention(q, k, v, mask):
    """Reference attention: every query scored against every key, then `mask` [N, N] applied."""
    scores = tf.matmul(scale_queries(q), k, transpose_b=True)
    if isinstance(mask, np.ndarray):
        return softmax_attention(scores, v, bias=mask_bias(mask))
    return softmax_attention(scores, v, tf.convert_to_tensor(mask))


class AttentionKernel:
    """Base class of attention kernels: dense masked attention from the `allowed` pattern.

    Subclasses define `allowed` and, to be fast, override `call` and `step`. Constructor
    arguments must be explicit keyword parameters (they become gin-bindable) and be returned
    by `get_config`.
    """

    name = "attention"  # set by subclasses for messages

    def allowed(self, qr, qc, kr, kc, grid: Grid):
        raise NotImplementedError(f"{type(self).__name__} must define allowed()")

    # -- masks -------------------------------------------------------------------------------

    def mask(self, grid: Grid) -> np.ndarray:
        """bool [N, N]: mask[i, j] is True when position i may see position j."""
        return _cached_mask(self, tuple(check_grid(grid)))

    def _mask_uncached(self, grid):
        h, w = grid
        pos = np.arange(h * w)
        qr, qc = (pos // w)[:, None], (pos % w)[:, None]
        kr, kc = (pos // w)[None, :], (pos % w)[None, :]
        m = np.asarray(self.allowed(qr, qc, kr, kc, grid), dtype=bool)
        m = np.broadcast_to(m, (h * w, h * w))
        # Causality and self-attention are part of the contract, whatever `allowed` says.
        return (m & (pos[None, :] <= pos[:, None])) | np.eye(h * w, dtype=bool)

    def block_mask(self, qr, qc, kr, kc, grid: Grid) -> np.ndarray:
        """The pattern for gathered keys, on integer arrays of query/key rows and columns
        (broadcasting). Keys outside the grid (padding of a gathered window) are never seen."""
        h, w = grid
        qr, qc, kr, kc = (np.asarray(a) for a in (qr, qc, kr, kc))
        inside = (kr >= 0) & (kr < h) & (kc >= 0) & (kc < w)
        krc, kcc = np.clip(kr, 0, h - 1), np.clip(kc, 0, w - 1)
        m = np.asarray(self.allowed(qr, qc, krc, kcc, grid), dtype=bool)
        q_pos, k_pos = qr * w + qc, krc * w + kcc
        return inside & ((m & (k_pos <= q_pos)) | (k_pos == q_pos))

    # -- attention -------------------------------------------------------------------------------

    def call(self, q, k, v, grid: Grid):
        """Attention for full sequences: q, k, v [B, H, N, d] -> [B, H, N, d]."""
        h, w = check_grid(grid, q.shape[2])
        return dense_masked_attention(q, k, v, self.mask((h, w)))

    def __call__(self, q, k, v, grid: Grid):
        return self.call(q, k, v, grid)

    def step(self, q, k_cache, v_cache, t, grid: Grid):
        """One query at position t: q [B, H, 1, d], caches [B, H, N, d] -> [B, H, 1, d].

        Sparse patterns (each position sees at most a quarter of the grid) gather only the
        keys position t sees, from a static table of every position's keys (`key_table`);
        denser ones attend over the whole cache with row t of the mask."""
        h, w = check_grid(grid, k_cache.shape[2])
        table = self.key_table((h, w))
        if table is not None:
            index, valid = table
            op = _cached_attention_op(q, k_cache, v_cache)
            if op is not None:
                return op(q, k_cache, v_cache, index, valid, tf.cast(t, tf.int32))
            return gather_step(q, k_cache, v_cache, tf.gather(tf.constant(index), t),
                               bias=tf.gather(mask_bias(valid), t))
        row = tf.gather(tf.constant(self.mask((h, w))), t)  # [N]
        scores = tf.matmul(scale_queries(q), k_cache, transpose_b=True)
        return softmax_attention(scores, v_cache, row[None, None, None, :])

    def key_table(self, grid: Grid):
        """(index int32 [N, K], valid bool [N, K]): the keys each position sees (padded with
        position 0, not valid), K the most any position sees; None when K > N / 4 (the whole
        cache is cheaper to score than a table that size)."""
        mask = self.mask(tuple(check_grid(grid)))
        keys = int(mask.sum(axis=1).max())
        if keys * 4 > mask.shape[0]:
            return None
        key = ("table", type(self), tuple(sorted(self.get_config().items())), mask.shape)
        if key not in _MASKS:
            # Stable sort puts each row's seen positions first, in increasing order.
            index = np.argsort(~mask, axis=1, kind="stable")[:, :keys].astype(np.int32)
            valid = np.take_along_axis(mask, index, axis=1)
            index = np.where(valid, index, 0).astype(np.int32)
            index.setflags(write=False)
            valid.setflags(write=False)
            _MASKS[key] = (index, valid)
        return _MASKS[key]

    def window_step(self, q, k_cache, v_cache, t, grid: Grid):
        """Queries at positions t .. t + L - 1: q [B, H, L, d], caches [B, H, N, d] filled up to
        t + L - 1 (t + L <= N) -> [B, H, L, d]."""
        h, w = check_grid(grid, k_cache.shape[2])
        n, length = h * w, q.shape[2]
        table = self.key_table((h, w))
        op = _cached_attention_op(q, k_cache, v_cache) if table is not None else None
        if op is not None:
            return op(q, k_cache, v_cache, *table, tf.cast(t, tf.int32))
        mask = self.mask((h, w))
        span = min(n, _lookback(mask) + length)  # keys [t - lookback, t + L) cover the window
        t = tf.cast(t, tf.int32)
        rows = tf.gather(tf.constant(mask), t + tf.range(length))  # [L, N]
        if span == n:  # the whole cache
            keys, values, valid = k_cache, v_cache, rows
        else:
            start = tf.clip_by_value(t + length - span, 0, n - span)
            keys = tf.slice(k_cache, [0, 0, start, 0], [-1, -1, span, -1])
            values = tf.slice(v_cache, [0, 0, start, 0], [-1, -1, span, -1])
            valid = tf.slice(rows, [0, start], [length, span])
        bias = tf.where(valid, 0.0, MASK_VALUE)  # [L, span]: cheaper than a select over heads
        scores = tf.matmul(scale_queries(q), keys, transpose_b=True)
        return softmax_attention(scores, values, bias=bias)

    def get_config(self) -> Dict[str, Any]:
        return {}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


def _cached_mask(kernel, grid):
    key = (type(kernel), tuple(sorted(kernel.get_config().items())), grid)
    if key not in _MASKS:
        m = kernel._mask_uncached(grid)  # noqa: SLF001
        m.setflags(write=False)
        if len(_MASKS) > 64:
            _MASKS.clear()
        _MASKS[key] = m
    return _MASKS[key]


_MASKS: Dict[Any, np.ndarray] = {}


@tf.autograph.experimental.do_not_convert  # trace-time Python (builds, loads, checks)
def _cached_attention_op(q, k_cache, v_cache):
    """The fused decode-step attention (`native/cached_attention.cc`: one op instead of the
    gathers, matmuls and masked softmax) when it applies here, else None: float32 inputs,
    native ops usable (not under XLA, in a SavedModel or on DTensor), no GradientTape."""
    from zoo.attention import native
    if any(tf.as_dtype(x.dtype) != tf.float32 for x in (q, k_cache, v_cache)):
        return None
    if not native.usable_on(q, k_cache, v_cache) or native.gradient_tape_recording():
        return None
    library = native.load("cached_attention")
    return None if library is None else library.zoo_cached_attention


def _lookback(mask) -> int:
    """How far back the pattern reaches: max over queries i of i - (its earliest key)."""
    earliest = np.argmax(mask, axis=1)  # every row sees itself, so a True exists
    return int(np.max(np.arange(mask.shape[0]) - earliest))


def gather_step(q, k_cache, v_cache, index, valid=None, bias=None):
    """Attention of one query over the cache entries `index` [K] (int), those seen given by
    `valid` [K] (bool) or an additive `bias` [K] (0 seen, MASK_VALUE not; cheaper)."""
    keys = tf.gather(k_cache, index, axis=2)  # [B, H, K, d]
    values = tf.gather(v_cache, index, axis=2)
    scores = tf.matmul(scale_queries(q), keys, transpose_b=True)
    if bias is not None:
        return softmax_attention(scores, values, bias=bias)
    return softmax_attention(scores, values, valid[None, None, None, :])
