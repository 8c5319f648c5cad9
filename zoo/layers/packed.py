"""Inference weights: a decoder's projections packed once per sampling call, in the precision
sampling reads them in.

A decode step does a few hundred operations on one token per row and reads every decoder
weight once, so on a CPU it is bound by memory traffic, not arithmetic. The sampler therefore
reads the weights through `Linear`s made once per call (outside the decode loop) from the
model's Keras `Dense` layers:

- the query, key and value projections of a self-attention layer are one matrix
  [width, 3 * width] (one matmul instead of three);
- the weights are stored in the precision chosen by `WEIGHT_MODES`:

  `auto`      the model's own compute dtype (float32; bfloat16 for a mixed-precision model);
  `float32`   float32 weights;
  `bfloat16`  bfloat16 weights (half the bytes);
  `int8`      int8 weights with one float32 scale per output column (a quarter of the bytes;
              symmetric, round to nearest): weight-only quantization.

Activations stay float32 in every mode (products accumulate in float32; LayerNorms, GELU,
attention, the KV cache and the logits are float32): the step's elementwise work is small,
and bfloat16 elementwise ops are slower on CPU (GELU 3x, measured). bfloat16 and int8 weights
go through the fused native op `zoo_small_matmul` (reads the compact weights directly) where
native ops run and a product has at most `NATIVE_MAX_ROWS` rows (one guided prompt);
elsewhere (more rows, XLA, a SavedModel, DTensor, no compiler) `bfloat16` uses TensorFlow's
(oneDNN's) bfloat16 matmul (its inputs rounded to bfloat16) and `int8` multiplies by the
dequantized float32 weights (the same values, dequantized once per call: no bandwidth saved
there).

    weights = decoder.inference_weights("bfloat16")   # inside the tf.function, once
    logits, cache = decoder.step(prev, t, cache, decoder.step_memory(memory, mask), weights)
"""

from typing import NamedTuple, Optional, Sequence, Tuple

import keras
import tensorflow as tf

from zoo.errors import ZooError

WEIGHT_MODES = ("auto", "float32", "bfloat16", "int8")

# Rows up to which the fused op is used (a memory-bound product wants the compact weights;
# with more rows oneDNN's blocked kernels win, on a CPU with AMX bfloat16 units early).
# Measured (`python bench/sampling.py --phases=matmul`, the peer configuration's decode-step
# products, bench/RESULTS.md): on a 2-core Xeon with AMX, bfloat16 fused / oneDNN 4.8 / 7.2 ms
# at 2 rows (one guided prompt), 7.6 / 7.6 at 4, 25 / 8.9 at 16, 93 / 16 at 64; int8 fused
# 6.8 ms at 2 rows against float32's 9.0, 46 against 17 at 16 rows. Without AMX oneDNN has no
# fast bfloat16 matmul: on a 2-core AMD EPYC with AVX2 (no AVX-512), with the op's own
# helper threads and its many-row tile, the fused op wins at every row count to 64 (bfloat16
# fused / TensorFlow bfloat16 / float32: 2.28 / 13.48 / 12.99 ms at 2 rows, 8.83 / 23.50 /
# 19.45 at 16, 17.14 / 33.53 / 24.36 at 32, 33.19 / 52.90 / 38.79 at 64). The Xeon figures
# above predate the helper threads (the op was then split over TensorFlow's intra-op pool).
NATIVE_MAX_ROWS_AMX, NATIVE_MAX_ROWS_OTHER = 2, 64


def cpu_has_amx_bf16() -> bool:
    """Whether this CPU has AMX bfloat16 tiles (Linux: /proc/cpuinfo; elsewhere assumed not)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            return any(line.startswith("flags") and " amx_bf16" in line for line in f)
    except OSError:
        return False


NATIVE_MAX_ROWS = NATIVE_MAX_ROWS_AMX if cpu_has_amx_bf16() else NATIVE_MAX_ROWS_OTHER


def check_mode(mode):
    if mode not in WEIGHT_MODES:
        raise ZooError(f"sampling weights must be one of {', '.join(WEIGHT_MODES)}; got "
                       f"{mode!r}")
    return mode


def quantize_int8(kernel):
    """(int8 [K, N], float32 scale [N]): symmetric per-column quantization of `kernel`."""
    kernel = tf.cast(kernel, tf.float32)
    scale = tf.reduce_max(tf.abs(kernel), axis=0) / 127.0
    scale = tf.where(scale > 0, scale, 1.0)
    q = tf.cast(tf.clip_by_value(tf.round(kernel / scale), -127.0, 127.0), tf.int8)
    return q, scale


class Linear(NamedTuple):
    """y = activation(x @ kernel * scale + bias), packed for inference.

    kernel: [K, N] (float32, bfloat16 or int8), or for the fused op (`panels` True) the same
        weights in panels of 16 output columns, [ceil(N / 16), K, 16] (each panel contiguous,
        N padded with zero columns).
    bias: [N] in compute_dtype (float32 padded like the panels for the fused op), or None.
    scale: float32 [N] (padded like the panels) for int8 weights, else None.
    compute_dtype: the dtype y comes out in (float32 for the sampler's weights).
    units: N.
    """

    kernel: tf.Tensor
    bias: Optional[tf.Tensor]
    scale: Optional[tf.Tensor]
    compute_dtype: tf.DType
    units: int
    panels: bool = False
    activation: Optional[object] = None
    norm: Optional[Tuple] = None  # (gamma, beta, epsilon) of a LayerNorm applied to x first

    def __call__(self, x):
        """x [..., K] -> [..., N] (decode steps pass [rows, K]: no reshapes)."""
        flat = x if x.shape.rank == 2 else tf.reshape(x, [-1, x.shape[-1]])
        y = self._fused(flat) if self.panels else self._tensorflow(flat)
        if x.shape.rank == 2:
            return y
        return tf.reshape(y, tf.concat([tf.shape(x)[:-1], [self.units]], 0))

    def _tensorflow(self, x):
        if self.norm is not None:
            x = layer_norm(x, self.norm)
        y = tf.cast(tf.matmul(tf.cast(x, self.kernel.dtype), self.kernel), self.compute_dtype)
        if self.bias is not None:
            y = y + self.bias
        return y if self.activation is None else self.activation(y)

    def _fused(self, x):
        """The native op: LayerNorm, the product, the bias and a GELU in one op."""
        empty = tf.zeros([0], tf.float32)
        fused = self.activation is None or self.activation is keras.activations.gelu
        gamma, beta, epsilon = self.norm if self.norm is not None else (empty, empty, 1e-6)
        y = native_library().zoo_small_matmul(
            tf.cast(x, tf.float32), self.kernel, empty if self.scale is None else self.scale,
            empty if self.bias is None else self.bias, gamma, beta, epsilon=epsilon,
            activation="gelu" if self.activation is not None and fused else "none")
        if self.kernel.shape[0] * 16 != self.units:
            y = y[:, :self.units]
        y = tf.cast(y, self.compute_dtype)
        return y if fused else self.activation(y)


def layer_norm(x, norm):
    """A Keras LayerNormalization over the last axis from its (gamma, beta, epsilon) read once
    per call (`norm_params`) instead of at every decode step."""
    gamma, beta, epsilon = norm
    return keras.ops.layer_normalization(x, gamma, beta, epsilon=epsilon)


def norm_params(layer):
    """(gamma, beta, epsilon) of a Keras LayerNormalization, float32."""
    return (tf.cast(tf.convert_to_tensor(layer.gamma), tf.float32),
            tf.cast(tf.convert_to_tensor(layer.beta), tf.float32), float(layer.epsilon))


def native_library():
    """The op library of the fused compact-weight matmul, or None."""
    from zoo.attention import native
    return native.load("small_matmul")


def use_native(rows=None, *tensors) -> bool:
    """Whether `pack(..., native=True)` should be used here: native ops run in this context
    (not under XLA, in a SavedModel or on DTensor), the library builds, and the products have
    at most NATIVE_MAX_ROWS rows (None: unknown, assumed few)."""
    from zoo.attention import native
    if rows is not None and rows > NATIVE_MAX_ROWS:
        return False
    return native.usable_on(*tensors) and native_library() is not None


def _panels(kernel):
    """[K, N] -> the fused op's panels of 16 columns (N padded with zero columns): int8
    [ceil(N / 16), K, 16]; bfloat16 (from bfloat16 or float32 weights, rounded to nearest even)
    [ceil(N / 16), K + K % 2, 16] with each pair of rows interleaved (for the pair dot product;
    K padded with a zero row). float32 weights are laid out by the native op in one pass (the
    cast, pad and transpose below took 37.5 ms of a sampling call at the peer configuration)."""
    if kernel.dtype == tf.float32:
        library = native_library()
        if library is not None:
            return library.zoo_pack_bfloat16(kernel)
        kernel = tf.cast(kernel, tf.bfloat16)
    k, n = kernel.shape
    pad = -n % 16
    if kernel.dtype == tf.int8:
        if pad:
            kernel = tf.pad(kernel, [[0, 0], [0, pad]])
        return tf.transpose(tf.reshape(kernel, [k, (n + pad) // 16, 16]), [1, 0, 2])
    kernel = tf.pad(kernel, [[0, k % 2], [0, pad]])
    pairs, panels = (k + k % 2) // 2, (n + pad) // 16
    kernel = tf.transpose(tf.reshape(kernel, [pairs, 2, panels, 16]), [2, 0, 3, 1])
    return tf.reshape(kernel, [panels, 2 * pairs, 16])


def pack(layers: Sequence, mode: str, activation=None, native=False, dtype=tf.float32,
         norm=None) -> Linear:
    """One `Linear` computing the Keras Dense `layers` side by side (outputs concatenated).

    native: lay bfloat16 / int8 weights out for the fused op (see `use_native`).
    dtype: the dtype of the outputs (and of the bias and activation).
    norm: a Keras LayerNormalization applied to the inputs first (fused into the op).
    """
    check_mode(mode)
    first = layers[0]
    if mode == "auto":
        weight_dtype = tf.as_dtype(first.compute_dtype)
    elif mode == "int8":
        weight_dtype = tf.float32
    else:
        weight_dtype = tf.as_dtype(mode)
    dtype = tf.as_dtype(dtype)
    kernels = [tf.convert_to_tensor(layer.kernel) for layer in layers]
    kernel = tf.concat(kernels, 1) if len(kernels) > 1 else kernels[0]
    units = int(kernel.shape[1])
    bias = None
    if first.use_bias:
        biases = [tf.convert_to_tensor(layer.bias) for layer in layers]
        bias = tf.cast(tf.concat(biases, 0) if len(biases) > 1 else biases[0], dtype)
    scale = None
    bfloat16_panels = bool(native) and weight_dtype == tf.bfloat16  # rounded while laid out
    if mode == "int8":
        kernel, scale = quantize_int8(kernel)
        if not native:  # dequantized once: the values the fused op multiplies by
            kernel, scale = tf.cast(kernel, tf.float32) * scale, None
    elif not bfloat16_panels:
        kernel = tf.cast(kernel, weight_dtype)
    panels = bfloat16_panels or (bool(native) and mode == "int8")
    if panels:  # the op's layout; its float32 bias and scale padded like its columns
        kernel = _panels(kernel)
        pad = [[0, -units % 16]]
        if scale is not None:
            scale = tf.pad(scale, pad, constant_values=1.0)
        if bias is not None:
            bias = tf.pad(tf.cast(bias, tf.float32), pad)
    norm = norm_params(norm) if norm is not None else None
    return Linear(kernel, bias, scale, dtype, units, panels, activation, norm)


def nbytes(linear: Linear) -> int:
    """Bytes of the packed weights (kernel, scale, bias) one product reads."""
    total = 0
    for t in (linear.kernel, linear.scale, linear.bias):
        if t is not None:
            total += t.shape.num_elements() * t.dtype.size
    return total
