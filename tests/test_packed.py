"""Inference weights: packing, bfloat16 / int8 weight-only quantization, the fused native matmul,
and the in-place KV-cache write."""

import concurrent.futures
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from zoo.errors import ZooError
from zoo.layers import packed
from zoo.layers.transformer import new_cache, write_cache


def _dense(units, inputs, seed, activation=None, dtype=None):
    keras.utils.set_random_seed(seed)
    layer = keras.layers.Dense(units, activation=activation, dtype=dtype,
                               bias_initializer="random_normal")
    layer.build((None, inputs))
    return layer


@pytest.fixture(scope="module")
def layers():
    # K = 40 and N = 24 + 8: neither a multiple of the op's 16 lanes.
    return [_dense(24, 40, 0), _dense(8, 40, 1)]


def _reference(layers, x):
    return np.concatenate([layer(x).numpy() for layer in layers], axis=-1)


def _bf16_reference(layers, x):
    """Products of the rows and weights rounded to bfloat16, summed exactly, plus the bias."""
    round16 = lambda a: tf.cast(tf.cast(a, tf.bfloat16), tf.float64).numpy()  # noqa: E731
    return np.concatenate([round16(x) @ round16(layer.kernel) + layer.bias.numpy()
                           for layer in layers], axis=-1)


def test_float32_packing_is_the_layers_side_by_side(layers):
    x = tf.random.stateless_normal([5, 40], [1, 2])
    lin = packed.pack(layers, "float32")
    assert lin.units == 32 and lin.kernel.dtype == tf.float32
    np.testing.assert_allclose(lin(x).numpy(), _reference(layers, x), atol=1e-5)
    # Any leading shape.
    np.testing.assert_allclose(lin(tf.reshape(x, [5, 1, 40])).numpy()[:, 0],
                               _reference(layers, x), atol=1e-5)


def test_int8_quantization_is_per_column_and_round_to_nearest():
    w = tf.constant([[1.0, -0.5, 0.0], [-2.0, 0.25, 0.0], [0.5, 0.1, 0.0]])
    q, scale = packed.quantize_int8(w)
    assert q.dtype == tf.int8
    np.testing.assert_allclose(scale.numpy(), [2 / 127, 0.5 / 127, 1.0])  # empty column: 1
    np.testing.assert_array_equal(q.numpy()[:, 0], [64, -127, 32])  # 63.5 rounds to even: 64
    np.testing.assert_allclose((tf.cast(q, tf.float32) * scale).numpy(), w.numpy(),
                               atol=np.max(scale.numpy()[:2]) / 2)


@pytest.mark.parametrize("mode", ["bfloat16", "int8"])
@pytest.mark.parametrize("rows", [1, 3, 5, 9])
def test_fused_op_equals_tensorflow_on_the_same_weights(layers, mode, rows):
    if packed.native_library() is None:
        pytest.skip("native ops unavailable here")
    x = tf.random.stateless_normal([rows, 40], [3, rows])
    fused = packed.pack(layers, mode, native=True)
    plain = packed.pack(layers, mode, native=False)
    assert fused.panels and not plain.panels
    assert fused.kernel.dtype == (tf.bfloat16 if mode == "bfloat16" else tf.int8)
    assert fused.kernel.shape == (2, 40, 16)  # 32 columns in panels of 16
    got = fused(x).numpy()
    assert got.shape == (rows, 32)
    # int8: the same dequantized values either way, accumulated in float32.
    # bfloat16: both round the rows to bfloat16; TensorFlow's matmul also rounds its output.
    if mode == "int8":
        np.testing.assert_allclose(got, plain(x).numpy(), atol=1e-4)
    else:
        np.testing.assert_allclose(got, plain(x).numpy(), atol=0.02, rtol=0.01)
        np.testing.assert_allclose(got, _bf16_reference(layers, x), atol=1e-4)
    # Close to float32 (weight-only quantization error).
    np.testing.assert_allclose(got, _reference(layers, x), atol=0.1, rtol=0.05)


@pytest.mark.parametrize("mode", ["bfloat16", "int8"])
def test_fused_op_adds_the_bias_and_applies_the_gelu(mode):
    if packed.native_library() is None:
        pytest.skip("native ops unavailable here")
    layer = _dense(40, 24, 8, activation="gelu")  # Keras' exact (erf) gelu
    x = 3.0 * tf.random.stateless_normal([4, 24], [8, 9])
    fused = packed.pack([layer], mode, activation=layer.activation, native=True)
    plain = packed.pack([layer], mode, activation=layer.activation)
    graph = tf.function(fused).get_concrete_function(tf.TensorSpec([4, 24])).graph
    assert [op.type for op in graph.get_operations()].count("ZooSmallMatmul") == 1
    assert not {"AddV2", "Erf", "Erfc"} & {op.type for op in graph.get_operations()}
    tolerance = dict(atol=1e-4) if mode == "int8" else dict(atol=0.02, rtol=0.01)
    np.testing.assert_allclose(fused(x).numpy(), plain(x).numpy(), **tolerance)


@pytest.mark.parametrize("mode", ["bfloat16", "int8"])
def test_fused_op_applies_the_layer_norm_before_the_product(mode):
    if packed.native_library() is None:
        pytest.skip("native ops unavailable here")
    keras.utils.set_random_seed(10)
    norm = keras.layers.LayerNormalization(epsilon=1e-6, gamma_initializer="random_normal",
                                           beta_initializer="random_normal")
    norm.build((None, 24))
    layer = _dense(40, 24, 9)
    x = 2.0 + 3.0 * tf.random.stateless_normal([5, 24], [10, 11])
    fused = packed.pack([layer], mode, native=True, norm=norm)
    plain = packed.pack([layer], mode, norm=norm)
    graph = tf.function(fused).get_concrete_function(tf.TensorSpec([5, 24])).graph
    assert not {"Mean", "Rsqrt"} & {op.type for op in graph.get_operations()}
    tolerance = dict(atol=1e-4) if mode == "int8" else dict(atol=0.02, rtol=0.01)
    np.testing.assert_allclose(fused(x).numpy(), plain(x).numpy(), **tolerance)


def test_fused_bfloat16_handles_an_odd_inner_size_and_any_number_of_rows():
    if packed.native_library() is None:
        pytest.skip("native ops unavailable here")
    layer = _dense(20, 7, 5)  # K = 7: the pair layout pads a zero row
    rows = tf.random.stateless_normal([12, 7], [6, 7])
    fused = packed.pack([layer], "bfloat16", native=True)
    assert fused.kernel.shape == (2, 8, 16)
    np.testing.assert_allclose(fused(rows).numpy(), _bf16_reference([layer], rows), atol=1e-4)
    # Each row's result does not depend on the others (no batch-size-dependent rounding).
    for m in (1, 3, 7):
        np.testing.assert_array_equal(fused(rows[:m]).numpy(), fused(rows).numpy()[:m])


@pytest.mark.parametrize("mode", ["bfloat16", "int8"])
def test_large_products_are_split_over_helper_threads_with_the_same_result(mode):
    """Weights over the op's threshold (128 KB) are cut into shards of columns that the calling
    thread and the op's spinning helper threads claim; every column must come out as if one
    thread computed it, also when several threads call the op at once (one holds the helpers,
    the others run on their own threads)."""
    if packed.native_library() is None:
        pytest.skip("native ops unavailable here")
    layer = _dense(1000, 301, 12)  # odd K, N not a multiple of 16: 600 KB of bfloat16
    fused = packed.pack([layer], mode, native=True)
    assert fused.kernel.shape[0] * fused.kernel.shape[1] * 16 * fused.kernel.dtype.size > 2 ** 17
    inputs = [tf.random.stateless_normal([2, 301], [13, i]) for i in range(6)]
    if mode == "bfloat16":
        np.testing.assert_allclose(fused(inputs[0]).numpy(), _bf16_reference([layer], inputs[0]),
                                   atol=1e-4)
    else:
        plain = packed.pack([layer], mode)
        np.testing.assert_allclose(fused(inputs[0]).numpy(), plain(inputs[0]).numpy(), atol=1e-4)
    expected = [fused(x).numpy() for x in inputs]
    call = tf.function(lambda x: fused(x))
    with concurrent.futures.ThreadPoolExecutor(4) as threads:
        for _ in range(5):
            for got, want in zip(threads.map(lambda x: call(x).numpy(), inputs), expected):
                np.testing.assert_array_equal(got, want)
    if os.path.isdir("/proc/self/task") and (os.cpu_count() or 1) > 1:
        names = set()
        for task in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{task}/comm", encoding="utf-8") as f:
                    names.add(f.read().strip())
            except FileNotFoundError:  # a thread (not the op's: they live on) that just ended
                continue
        assert "zoo-matmul" in names, names


@pytest.mark.parametrize("shape", [(7, 20), (40, 32), (301, 1000)])
def test_native_bfloat16_layout_equals_the_tensorflow_one(shape):
    """The native packing (one pass, float32 in) lays out and rounds every weight exactly as
    tf.cast + the pad / transpose layout: odd K, N off the 16 lanes, a split large kernel,
    ties (round to even), infinities, NaN, -0 and subnormals."""
    if packed.native_library() is None:
        pytest.skip("native ops unavailable here")
    rng = np.random.default_rng(shape[0])
    values = rng.standard_normal(shape).astype(np.float32)
    flat = values.reshape(-1)
    flat[:8] = [np.inf, -np.inf, -0.0, 1e-40, -3e-39, 3.4e38, 1.0 + 2.0 ** -8, 1.0 + 3 * 2.0 ** -8]
    kernel = tf.constant(values)
    native = packed.native_library().zoo_pack_bfloat16(kernel)
    reference = packed._panels(tf.cast(kernel, tf.bfloat16))
    assert native.dtype == tf.bfloat16 and native.shape == reference.shape
    bits = lambda t: tf.bitcast(t, tf.uint16).numpy()  # noqa: E731
    np.testing.assert_array_equal(bits(native), bits(reference))
    flat[8] = np.nan
    nan = packed.native_library().zoo_pack_bfloat16(tf.constant(values))
    assert np.isnan(tf.cast(nan, tf.float32).numpy()).sum() == 1
    # pack() lays float32 weights out natively.
    graph = tf.function(lambda k: packed._panels(k)).get_concrete_function(
        tf.TensorSpec(shape)).graph
    assert "ZooPackBfloat16" in {op.type for op in graph.get_operations()}


def test_fused_op_is_used_in_the_graph_and_reads_compact_weights(layers):
    if packed.native_library() is None:
        pytest.skip("native ops unavailable here")
    lin = packed.pack(layers, "int8", native=True)
    graph = tf.function(lambda x: lin(x)).get_concrete_function(
        tf.TensorSpec([2, 40])).graph
    assert "ZooSmallMatmul" in [op.type for op in graph.get_operations()]
    assert packed.nbytes(lin) < packed.nbytes(packed.pack(layers, "float32")) / 3


def test_native_is_not_used_under_xla_or_for_many_rows(layers):
    assert not packed.use_native(packed.NATIVE_MAX_ROWS + 1)
    xla = tf.function(lambda: tf.constant(packed.use_native(2)), jit_compile=True)
    assert not bool(xla())


def test_the_row_limit_follows_the_cpu(monkeypatch, tmp_path):
    # AMX bfloat16 tiles make oneDNN win from 4 rows on; elsewhere the fused op keeps 64 rows.
    import builtins
    real_open = builtins.open
    for flags, amx in (("fpu avx512f avx512_bf16 amx_bf16 amx_tile", True),
                       ("fpu avx2 avx512f avx512_bf16", False)):
        cpuinfo = tmp_path / "cpuinfo"
        cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
        monkeypatch.setattr(builtins, "open", lambda path, *a, **k: real_open(
            cpuinfo if path == "/proc/cpuinfo" else path, *a, **k))
        assert packed.cpu_has_amx_bf16() is amx
    monkeypatch.setattr(builtins, "open", real_open)
    assert packed.NATIVE_MAX_ROWS == (packed.NATIVE_MAX_ROWS_AMX if packed.cpu_has_amx_bf16()
                                      else packed.NATIVE_MAX_ROWS_OTHER)
    assert (packed.NATIVE_MAX_ROWS_AMX, packed.NATIVE_MAX_ROWS_OTHER) == (2, 64)


def test_mixed_precision_layers_keep_bfloat16_weights_in_auto_mode():
    layer = _dense(8, 16, 2, dtype="mixed_bfloat16")
    lin = packed.pack([layer], "auto")
    assert lin.kernel.dtype == tf.bfloat16 and lin.compute_dtype == tf.float32
    x = tf.random.stateless_normal([3, 16], [4, 5])
    np.testing.assert_allclose(lin(x).numpy(), tf.cast(layer(x), tf.float32).numpy(),
                               atol=0.05)


def test_unknown_mode_is_a_clear_error(layers):
    with pytest.raises(ZooError, match=r"one of auto, float32, bfloat16, int8; got 'fp16'"):
        packed.pack(layers, "fp16")


def test_cache_writes_in_place_and_equal_a_slice_update():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(2, 3, 10, 4)).astype(np.float32)
    new = tf.constant(rng.normal(size=(2, 3, 4, 4)).astype(np.float32))
    want = base.copy()
    want[:, :, 5:9] = new.numpy()

    @tf.function
    def write(t):
        cache = new_cache([2, 3, 10, 4], tf.float32) + base  # a buffer of the function's own
        return write_cache(cache, new, t)

    np.testing.assert_array_equal(write(tf.constant(5)).numpy(), want)
    graph = write.get_concrete_function(tf.constant(5)).graph
    assert "InplaceUpdate" in [op.type for op in graph.get_operations()]
    # Eager, too; and a fresh cache never holds an earlier call's values.
    cache = write_cache(new_cache([2, 3, 10, 4], tf.float32), new, 5)
    np.testing.assert_array_equal(cache.numpy()[:, :, 5:9], new.numpy())
    assert not new_cache([2, 3, 10, 4], tf.float32).numpy().any()
    # Under XLA, a dynamic_update_slice.
    xla = tf.function(lambda t: write_cache(tf.zeros([2, 3, 10, 4]) + base, new, t),
                      jit_compile=True)
    np.testing.assert_array_equal(xla(tf.constant(5)).numpy(), want)
