"""Components of the example plugin, registered with the zoo's registries on import."""

import tensorflow as tf

from zoo.attention.base import AttentionKernel, gather_step
from zoo.errors import ZooError
from zoo.registry import ATTENTION


@ATTENTION.register("example_strided")
class StridedAttention(AttentionKernel):
    """Strided sparse attention (Child et al. 2019): the last `local` tokens and every `stride`-th.

    A query at position t sees the keys t-local+1 .. t (a local window) and the keys t - j*stride
    for j >= 1 (a strided summary of everything before it), both causal in raster order. With
    stride = grid width the strided part is column attention, so one kernel mixes row-like and
    column-like context.

    Args:
        local: int. Size of the causal local window, the query included.
        stride: int or None. Distance between strided keys; None means the grid width.
    """

    name = "example_strided"

    def __init__(self, local=8, stride=None):
        if int(local) < 1:
            raise ZooError(f"example_strided.local must be >= 1, got {local}")
        if stride is not None and int(stride) < 1:
            raise ZooError(f"example_strided.stride must be >= 1 or None, got {stride}")
        self.local = int(local)
        self.stride = None if stride is None else int(stride)

    def _stride(self, grid):
        return self.stride or grid[1]

    def allowed(self, qr, qc, kr, kc, grid):
        w = grid[1]
        q, k = qr * w + qc, kr * w + kc
        d = q - k
        return (d >= 0) & ((d < self.local) | (d % self._stride(grid) == 0))

    def step(self, q, k_cache, v_cache, t, grid):
        # Sparse decoding: gather only the local window and the strided keys of position t.
        h, w = grid
        n, s = h * w, self._stride(grid)
        t = tf.cast(t, tf.int32)
        local = t - tf.range(self.local)
        strided = t - s * tf.range(1, (n + s - 1) // s + 1)
        pos = tf.concat([local, strided], 0)
        valid = pos >= 0
        if self.local > s:  # a strided key inside the local window would be counted twice
            valid &= tf.concat([tf.ones([self.local], bool), (t - pos[self.local:]) >= self.local], 0)
        return gather_step(q, k_cache, v_cache, tf.maximum(pos, 0), valid)

    def get_config(self):
        return {"local": self.local, "stride": self.stride}
