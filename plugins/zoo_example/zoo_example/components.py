"""Components of the example plugin, registered with the zoo's registries on import.

    attention example_strided       a strided sparse attention kernel (Child et al. 2019)
    decoder   example_sincos        Parti's decoder with fixed 2-D sine-cosine positions
    model     example_sincos_tiny   Parti-tiny's sizes with that decoder: trains with zoo-train
                                    (`parti.model = 'example_sincos_tiny'`, gin/sincos.gin) and
                                    samples with zoo-sample, with no change to zoo/
"""

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from zoo.attention.base import AttentionKernel, gather_step
from zoo.errors import ZooError
from zoo.models.parti import ImageDecoder, Parti
from zoo.registry import ATTENTION, DECODERS, MODELS


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


# -- a decoder and a model: Parti with fixed 2-D sine-cosine positions --------------------------


def sincos(positions, dim, max_wavelength):
    """Transformer sine-cosine embeddings [..., dim] of integer `positions` (dim even)."""
    half = dim // 2
    freqs = 1.0 / (max_wavelength ** (np.arange(half, dtype=np.float32) / half))
    angles = ops.cast(positions, "float32")[..., None] * ops.convert_to_tensor(freqs)
    return ops.concatenate([ops.sin(angles), ops.cos(angles)], axis=-1)


@DECODERS.register("example_sincos", tiny=dict(image_grid=(2, 2), image_vocab_size=8, layers=1,
                                               width=8, heads=2, mlp_dim=16,
                                               attention=["dense"]))
@keras.saving.register_keras_serializable(package="zoo_example")
class SinCosImageDecoder(ImageDecoder):
    """Parti's decoder with fixed 2-D sine-cosine positions instead of learned row/column tables.

    A code at row r, column c gets sincos(r) in the first half of its width and sincos(c) in
    the second (as MAE / ViT 2-D embeddings do): no position weights, and the embedding of a
    position is defined for any grid.

    Args:
        max_wavelength: float. Longest wavelength of the sinusoids (Transformer: 10000).
        The others: as `zoo.models.parti.ImageDecoder`.
    """

    def __init__(self, *args, max_wavelength=10000.0, **kwargs):
        self.max_wavelength = float(max_wavelength)
        if not self.max_wavelength > 1:
            raise ZooError(f"example_sincos.max_wavelength must be > 1, got {max_wavelength!r}")
        super().__init__(*args, **kwargs)
        if self.width % 4:
            raise ZooError(f"example_sincos needs a width divisible by 4 (two sine-cosine "
                           f"halves), got {self.width}")

    def make_position_embedding(self, dtype):
        pass  # fixed: nothing to learn

    def build_position_embedding(self):
        pass

    def positions(self, index):
        w = self.image_grid[1]
        half = self.width // 2
        emb = ops.concatenate([sincos(index // w, half, self.max_wavelength),
                               sincos(index % w, half, self.max_wavelength)], axis=-1)
        return ops.cast(emb, self.token_embedding.compute_dtype)

    def get_config(self):
        return {**super().get_config(), "max_wavelength": self.max_wavelength}


@keras.saving.register_keras_serializable(package="zoo_example")
class SinCosParti(Parti):
    """Parti whose decoder is `example_sincos` (fixed 2-D sine-cosine positions) by default.

    Args:
        max_wavelength: float. Of the sine-cosine decoder's sinusoids.
        The others: as `zoo.models.parti.Parti` (`decoder` defaults to 'example_sincos').
    """

    def __init__(self, max_wavelength=10000.0, decoder="example_sincos", decoder_options=None,
                 **kwargs):
        self.max_wavelength = float(max_wavelength)
        decoder_options = dict(decoder_options or {})
        if decoder == "example_sincos":
            decoder_options.setdefault("max_wavelength", self.max_wavelength)
        super().__init__(decoder=decoder, decoder_options=decoder_options, **kwargs)

    def get_config(self):
        return {**super().get_config(), "max_wavelength": self.max_wavelength}


# Parti-tiny's sizes (zoo's parti_tiny): the code grid, codebook and text vocabulary are set
# by the parti task from the tokenizers.
TINY = dict(image_grid=(8, 8), image_vocab_size=512, width=256, encoder_layers=2,
            decoder_layers=4, mlp_dim=1024, heads=4, text_vocab_size=1000, max_text_length=64,
            decoder_attention=["row", "column", "row", "conv_shaped"])


@MODELS.register("example_sincos_tiny", builds=SinCosParti)
def example_sincos_tiny(**overrides) -> SinCosParti:
    """Parti-tiny with fixed 2-D sine-cosine positions in its decoder (example plugin)."""
    return SinCosParti(**{**TINY, **overrides})
