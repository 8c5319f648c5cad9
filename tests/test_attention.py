"""Attention kernels: masks as docs/architecture.md defines them, sparse == dense masked, KV-cache
steps."""

import logging
import shutil

import numpy as np
import pytest
import tensorflow as tf

import zoo.attention  # noqa: F401
from zoo.attention import native
from zoo.attention.base import AttentionKernel, dense_masked_attention
from zoo.errors import UnknownNameError, ZooError
from zoo.registry import ATTENTION

BUILTIN = ["dense", "row", "column", "conv_shaped"]


# -- reference masks, written out from docs/architecture.md independently of the kernels -------

def reference_mask(name, h, w, k=11):
    n = h * w
    m = np.zeros((n, n), bool)
    for i in range(n):
        r, c = divmod(i, w)
        for j in range(i + 1):
            kr, kc = divmod(j, w)
            if name == "dense":
                ok = True
            elif name == "row":  # the query and the w tokens just before it
                ok = i - j <= w
            elif name == "column":  # every earlier token in the same column
                ok = kc == c
            elif name == "conv_shaped":  # k//2 rows above within k//2 columns; k//2 to the left
                half = k // 2
                ok = (r - half <= kr < r and abs(kc - c) <= half) or (kr == r and c - kc <= half)
            m[i, j] = ok
    return m


@pytest.mark.parametrize("name", BUILTIN)
@pytest.mark.parametrize("grid", [(5, 7), (12, 12), (1, 6), (7, 1)])
def test_masks_match_design(name, grid):
    kernel = ATTENTION.create(name)
    np.testing.assert_array_equal(kernel.mask(grid), reference_mask(name, *grid))


def test_conv_shaped_has_61_keys_inside_a_32x32_grid():
    mask = ATTENTION.create("conv_shaped").mask((32, 32))
    counts = mask.sum(1).reshape(32, 32)
    assert counts[10:, 5:27].min() == counts[10:, 5:27].max() == 61
    assert counts[0, 0] == 1 and counts.max() == 61


def test_row_mask_reaches_into_previous_row():
    mask = ATTENTION.create("row").mask((4, 8))
    assert mask[8 + 3].nonzero()[0].tolist() == list(range(3, 12))  # w + 1 = 9 keys


# -- sparse kernels equal dense masked attention ---------------------------------------------

def _qkv(grid, seed=0, b=2, heads=3, d=8):
    rng = np.random.default_rng(seed)
    n = grid[0] * grid[1]
    return [tf.constant(rng.normal(size=(b, heads, n, d)).astype(np.float32)) for _ in range(3)]


# conv_shaped runs its native op by default (when it builds); native=False is the tiled TF
# kernel, whose query tiles block_rows x block_cols only matter there.
CASES = [("dense", {}), ("row", {}), ("column", {}), ("conv_shaped", {}),
         ("conv_shaped", {"kernel_size": 3}), ("conv_shaped", {"kernel_size": 5}),
         ("conv_shaped", {"native": False}), ("conv_shaped", {"kernel_size": 3, "native": False}),
         ("conv_shaped", {"block_rows": 2, "block_cols": 4, "native": False}),
         ("conv_shaped", {"block_rows": 3, "block_cols": 1, "native": False})]


@pytest.mark.parametrize("name,config", CASES)
@pytest.mark.parametrize("grid", [(6, 12), (12, 8), (3, 4)])
def test_sparse_call_equals_dense_masked(name, config, grid):
    kernel = ATTENTION.create(name, **config)
    if "block_rows" in config and (grid[0] % config["block_rows"]
                                   or grid[1] % config["block_cols"]):
        pytest.skip("tiles do not divide this grid")
    q, k, v = _qkv(grid)
    ref = dense_masked_attention(q, k, v, reference_mask(name, *grid, config.get(
        "kernel_size", 11)))
    np.testing.assert_allclose(kernel(q, k, v, grid).numpy(), ref.numpy(), atol=1e-5)


@pytest.fixture(params=["native", "tensorflow"])
def decode_path(request, monkeypatch):
    """Decode steps through the fused native op, or the TensorFlow ops that XLA, SavedModels
    and DTensor meshes use (ZOO_NATIVE_OPS=0)."""
    if request.param == "tensorflow":
        monkeypatch.setenv("ZOO_NATIVE_OPS", "0")
    elif native.load("cached_attention") is None:
        pytest.skip("native ops unavailable here")
    return request.param


def _ops(fn, *args):
    return {op.type for op in tf.function(fn).get_concrete_function(*args).graph
            .get_operations()}


@pytest.mark.parametrize("name,config", CASES[:5])
@pytest.mark.parametrize("grid", [(6, 8), (16, 16)])
def test_step_with_cache_equals_full_attention(name, config, grid, decode_path):
    kernel = ATTENTION.create(name, **config)
    q, k, v = _qkv(grid, seed=1)
    full = kernel(q, k, v, grid).numpy()
    step = tf.function(lambda qt, t: kernel.step(qt, k, v, t, grid))
    for t in range(grid[0] * grid[1]):
        out = step(q[:, :, t:t + 1], tf.constant(t)).numpy()
        np.testing.assert_allclose(out[:, :, 0], full[:, :, t], atol=1e-5, err_msg=f"t={t}")


def test_steps_gather_only_the_keys_of_sparse_patterns():
    # Every built-in sparse kernel decodes from its key table (K keys per position, not N).
    grid = (16, 16)
    for name, keys in [("row", 17), ("column", 16), ("conv_shaped", 61)]:
        index, valid = ATTENTION.create(name).key_table(grid)
        assert index.shape == valid.shape == (256, keys), name
        mask = ATTENTION.create(name).mask(grid)
        for t in (0, 17, 130, 255):
            assert sorted(index[t][valid[t]]) == list(np.flatnonzero(mask[t])), (name, t)
    assert ATTENTION.create("dense").key_table(grid) is None  # the whole cache instead


def test_sparse_steps_run_the_fused_op_where_native_ops_run(decode_path):
    grid = (16, 16)
    q, k, v = _qkv(grid)
    kernel = ATTENTION.create("row")
    step = _ops(lambda t: kernel.step(q[:, :, :1], k, v, t, grid), tf.constant(3))
    window = _ops(lambda t: kernel.window_step(q[:, :, :4], k, v, t, grid), tf.constant(3))
    fused = decode_path == "native"
    assert ("ZooCachedAttention" in step) is fused and ("ZooCachedAttention" in window) is fused
    assert ("BatchMatMulV2" in step) is not fused


@pytest.mark.parametrize("name,config", CASES[:5])
@pytest.mark.parametrize("length", [1, 5, 16])
def test_window_step_equals_full_attention(name, config, length, decode_path):
    # Several queries at once against the cache (speculative decoding's model calls).
    grid = (6, 8) if name != "conv_shaped" else (16, 16)  # conv_shaped: a table at 16x16
    kernel = ATTENTION.create(name, **config)
    q, k, v = _qkv(grid, seed=3)
    full = kernel(q, k, v, grid).numpy()
    window = tf.function(lambda qt, t: kernel.window_step(qt, k, v, t, grid))
    for t in range(0, grid[0] * grid[1] - length + 1, 7 if grid[0] < 16 else 37):
        out = window(q[:, :, t:t + length], tf.constant(t)).numpy()
        np.testing.assert_allclose(out, full[:, :, t:t + length], atol=1e-5, err_msg=f"t={t}")


def test_a_large_window_split_over_threads_equals_full_attention(decode_path):
    # 2 x 8 heads x 64 queries with 33 keys each of 64 dimensions: enough work (cost 2^23.04)
    # for the native op to split its query rows over the intra-op threads.
    grid = (32, 32)
    kernel = ATTENTION.create("row")
    q, k, v = _qkv(grid, seed=4, heads=8, d=64)
    full = kernel(q, k, v, grid).numpy()
    out = kernel.window_step(q[:, :, 500:564], k, v, tf.constant(500), grid).numpy()
    np.testing.assert_allclose(out, full[:, :, 500:564], atol=1e-5)


def test_window_step_ignores_cache_entries_after_the_window(decode_path):
    grid = (4, 4)
    q, k, v = _qkv(grid, seed=2)
    k_bad = tf.concat([k[:, :, :9], 1e3 * tf.ones_like(k[:, :, 9:])], axis=2)
    v_bad = tf.concat([v[:, :, :9], 1e3 * tf.ones_like(v[:, :, 9:])], axis=2)
    for name in BUILTIN:
        kernel = ATTENTION.create(name)
        a = kernel.window_step(q[:, :, 6:9], k, v, tf.constant(6), grid)
        b = kernel.window_step(q[:, :, 6:9], k_bad, v_bad, tf.constant(6), grid)
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6, err_msg=name)


def test_step_ignores_cache_entries_after_t(decode_path):
    grid = (4, 4)
    q, k, v = _qkv(grid, seed=2)
    k_bad = tf.concat([k[:, :, :7], 1e3 * tf.ones_like(k[:, :, 7:])], axis=2)
    v_bad = tf.concat([v[:, :, :7], 1e3 * tf.ones_like(v[:, :, 7:])], axis=2)
    for name in BUILTIN:
        kernel = ATTENTION.create(name)
        a = kernel.step(q[:, :, 6:7], k, v, tf.constant(6), grid)
        b = kernel.step(q[:, :, 6:7], k_bad, v_bad, tf.constant(6), grid)
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6, err_msg=name)


def _largest_intermediate(fn, *args):
    graph = tf.function(fn).get_concrete_function(*args).graph
    sizes = [int(np.prod(t.shape.as_list())) for op in graph.get_operations()
             for t in op.outputs if t.shape.is_fully_defined() and t.dtype == tf.float32]
    return max(sizes)


@pytest.mark.parametrize("name,config", [("row", {}), ("column", {}), ("conv_shaped", {}),
                                         ("conv_shaped", {"native": False})])
def test_sparse_kernels_never_build_a_dense_score_matrix(name, config):
    grid, b, heads, d = (32, 32), 1, 1, 4
    n = grid[0] * grid[1]
    spec = tf.TensorSpec([b, heads, n, d], tf.float32)
    kernel = ATTENTION.create(name, **config)
    largest = _largest_intermediate(lambda q, k, v: kernel(q, k, v, grid), spec, spec, spec)
    assert largest <= 0.25 * n * n, (name, largest)
    dense = ATTENTION.create("dense")
    assert _largest_intermediate(lambda q, k, v: dense(q, k, v, grid), spec, spec, spec) >= n * n


def test_bf16_inputs_stay_close_to_float32():
    grid = (8, 8)
    q, k, v = _qkv(grid, seed=3)
    kernel = ATTENTION.create("conv_shaped")
    low = kernel(*(tf.cast(x, tf.bfloat16) for x in (q, k, v)), grid)
    assert low.dtype == tf.bfloat16
    np.testing.assert_allclose(tf.cast(low, tf.float32).numpy(), kernel(q, k, v, grid).numpy(),
                               atol=0.05)


# -- conv_shaped's native op ---------------------------------------------------------------------

def _uses_native_op(kernel, q, k, v, grid, jit_compile=False):
    fn = tf.function(lambda q, k, v: kernel(q, k, v, grid), jit_compile=jit_compile)
    graph = fn.get_concrete_function(q, k, v).graph
    return any(op.type == "ZooConvShapedAttention" for op in graph.get_operations())


@pytest.fixture
def native_library(monkeypatch, caplog):
    """The op library; fails (never skips) when g++ exists but the op does not build."""
    monkeypatch.delenv("ZOO_NATIVE_OPS", raising=False)
    if shutil.which(native.COMPILER) is None:
        pytest.skip(f"{native.COMPILER} is not installed")
    library = native.load("conv_shaped_attention")
    if library is None:  # build again to show why (the loader warns once per process)
        monkeypatch.setattr(native, "_LIBRARIES", {})
        monkeypatch.setattr(logging.getLogger("zoo"), "propagate", True)
        with caplog.at_level(logging.WARNING, logger="zoo"):
            native.load("conv_shaped_attention")
        pytest.fail(f"the native conv_shaped op did not build or load: {caplog.text}")
    return library


@pytest.mark.parametrize("grid,kernel_size,b,d,dv", [
    ((6, 12), 11, 2, 20, 20),  # square-ish, head_dim not a multiple of 16
    ((12, 8), 11, 1, 64, 64),  # the specialised head_dim
    ((3, 4), 11, 2, 8, 8),  # grid smaller than the kernel
    ((5, 5), 3, 3, 32, 32),
    ((9, 7), 3, 2, 5, 12),  # value dim != key dim
    ((1, 7), 11, 2, 8, 8),
    ((7, 1), 3, 2, 8, 8),
    ((4, 6), 1, 2, 8, 8),  # kernel_size 1: each token sees itself
])
def test_native_conv_shaped_equals_dense_masked(native_library, grid, kernel_size, b, d, dv):
    kernel = ATTENTION.create("conv_shaped", kernel_size=kernel_size)
    q, k, _ = _qkv(grid, seed=4, b=b, d=d)
    v = _qkv(grid, seed=5, b=b, d=dv)[2]
    assert _uses_native_op(kernel, q, k, v, grid)
    ref = dense_masked_attention(q, k, v, reference_mask("conv_shaped", *grid, kernel_size))
    np.testing.assert_allclose(kernel(q, k, v, grid).numpy(), ref.numpy(), atol=1e-5)
    graph_out = tf.function(lambda q, k, v: kernel(q, k, v, grid))(q, k, v)
    np.testing.assert_allclose(graph_out.numpy(), ref.numpy(), atol=1e-5)


def test_native_op_rejects_bad_shapes(native_library):
    q, k, v = _qkv((3, 4), d=8)
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError), match="12 tokens|3x5"):
        native_library.zoo_conv_shaped_attention(q, k, v, height=3, width=5, radius=1)
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError), match="shape"):
        native_library.zoo_conv_shaped_attention(q, k[..., :4], v, height=3, width=4,
                                                 radius=1)


def test_native_gradients_equal_the_tf_kernel(native_library):
    grid = (5, 6)
    q, k, v = _qkv(grid, seed=5, d=12)
    upstream = _qkv(grid, seed=6, d=12)[0]  # a non-uniform output gradient
    fast = ATTENTION.create("conv_shaped", kernel_size=5)
    reference = ATTENTION.create("conv_shaped", kernel_size=5, native=False)

    def tape_gradients(kernel):
        def fn(q, k, v):
            with tf.GradientTape() as tape:
                tape.watch([q, k, v])
                out = kernel(q, k, v, grid)
            return tape.gradient(out, [q, k, v], output_gradients=upstream)
        return fn

    # tf.gradients over a graph holding the op: the op's custom gradient (the tiled kernel's).
    graph_fn = tf.function(lambda q, k, v: tf.gradients(fast(q, k, v, grid), [q, k, v],
                                                        grad_ys=upstream))
    assert any(op.type == "ZooConvShapedAttention"
               for op in graph_fn.get_concrete_function(q, k, v).graph.get_operations())
    want = [g.numpy() for g in tf.function(tape_gradients(reference))(q, k, v)]
    for got, ref in zip(graph_fn(q, k, v), want):
        np.testing.assert_allclose(got.numpy(), ref, atol=1e-5)
    # Under a GradientTape (training) the tiled kernel runs, eagerly and traced: the same
    # gradients, and no op in the traced graph.
    traced = tf.function(tape_gradients(fast))
    assert not any(op.type == "ZooConvShapedAttention"
                   for op in traced.get_concrete_function(q, k, v).graph.get_operations())
    for fn in (tape_gradients(fast), traced):
        for got, ref in zip(fn(q, k, v), want):
            np.testing.assert_allclose(got.numpy(), ref, atol=1e-5)


def test_the_tf_kernel_runs_when_native_is_off_or_cannot_apply(native_library, monkeypatch):
    grid = (4, 5)
    q, k, v = _qkv(grid)
    assert _uses_native_op(ATTENTION.create("conv_shaped"), q, k, v, grid)
    off = ATTENTION.create("conv_shaped", native=False)
    assert off.get_config()["native"] is False
    assert not _uses_native_op(off, q, k, v, grid)
    # Mixed precision, and XLA-compiled functions (the op has no XLA kernel).
    low = [tf.cast(x, tf.bfloat16) for x in (q, k, v)]
    assert not _uses_native_op(ATTENTION.create("conv_shaped"), *low, grid)
    assert not _uses_native_op(ATTENTION.create("conv_shaped"), q, k, v, grid, jit_compile=True)
    monkeypatch.setenv("ZOO_NATIVE_OPS", "0")
    assert not _uses_native_op(ATTENTION.create("conv_shaped"), q, k, v, grid)


def test_conv_shaped_on_a_dtensor_mesh_matches_one_device(native_library):
    """The op has no DTensor layout rules: on a mesh the TF kernel runs."""
    from zoo import distribute
    dist = distribute.get(mesh="batch:8", layout_rules=[])
    grid = (4, 5)
    q, k, v = _qkv(grid, b=8, heads=2)
    kernel = ATTENTION.create("conv_shaped", kernel_size=3)
    want = kernel(q, k, v, grid).numpy()
    args = [dist.distribute_values(x) for x in (q, k, v)]
    got = dist.gather(dist.run(tf.function(lambda q, k, v: kernel(q, k, v, grid)), *args))
    np.testing.assert_allclose(got.numpy(), want, atol=1e-5)


def test_saved_models_do_not_need_the_op_library(native_library, tmp_path):
    grid = (3, 4)
    q, k, v = _qkv(grid, b=1)
    kernel = ATTENTION.create("conv_shaped", kernel_size=3)
    module = tf.Module()
    module.attend = tf.function(lambda q, k, v: kernel(q, k, v, grid),
                                input_signature=[tf.TensorSpec(q.shape, tf.float32)] * 3)
    want = module.attend(q, k, v)  # traced outside the save: the native op
    tf.saved_model.save(module, str(tmp_path))
    assert b"ZooConvShapedAttention" not in (tmp_path / "saved_model.pb").read_bytes()
    got = tf.saved_model.load(str(tmp_path)).attend(q, k, v)
    np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-5)


@pytest.mark.parametrize("compiler", ["zoo-no-such-compiler", "false"])
def test_a_failing_build_falls_back_with_one_warning(compiler, monkeypatch, tmp_path, caplog):
    monkeypatch.delenv("ZOO_NATIVE_OPS", raising=False)
    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(native, "_LIBRARIES", {})
    monkeypatch.setattr(native, "COMPILER", compiler)
    monkeypatch.setattr(logging.getLogger("zoo"), "propagate", True)
    grid = (4, 5)
    q, k, v = _qkv(grid)
    kernel = ATTENTION.create("conv_shaped", kernel_size=3)
    with caplog.at_level(logging.WARNING, logger="zoo"):
        outs = [kernel(q, k, v, grid) for _ in range(2)]
        assert not _uses_native_op(kernel, q, k, v, grid)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "pure-TF kernel" in warnings[0]
    assert ("not found" if compiler != "false" else "exited with") in warnings[0]
    ref = dense_masked_attention(q, k, v, reference_mask("conv_shaped", *grid, 3))
    for out in outs:
        np.testing.assert_allclose(out.numpy(), ref.numpy(), atol=1e-5)
    assert not list(tmp_path.rglob("*.so"))  # no half-written library left behind


# -- plugins and errors ------------------------------------------------------------------------

def test_a_plugin_kernel_with_only_a_pattern_works_by_name():
    class Diagonal(AttentionKernel):
        """Each token sees the earlier tokens on its diagonal."""

        def allowed(self, qr, qc, kr, kc, grid):
            return kr - kc == qr - qc

    ATTENTION.register("test_diagonal")(Diagonal)
    try:
        kernel = ATTENTION.create("test_diagonal")
        grid = (4, 5)
        q, k, v = _qkv(grid)
        mask = kernel.mask(grid)
        assert mask[6].nonzero()[0].tolist() == [0, 6]
        np.testing.assert_allclose(kernel(q, k, v, grid).numpy(),
                                   dense_masked_attention(q, k, v, mask).numpy(), atol=1e-6)
        out = kernel.step(q[:, :, 6:7], k, v, tf.constant(6), grid)
        np.testing.assert_allclose(out[:, :, 0].numpy(), kernel(q, k, v, grid)[:, :, 6].numpy(),
                                   atol=1e-5)
    finally:
        ATTENTION.unregister("test_diagonal")


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ZooError, match="kernel_size must be a positive odd int"):
        ATTENTION.create("conv_shaped", kernel_size=4)
    with pytest.raises(ZooError, match="conv_shaped.native must be True or False, got 'yes'"):
        ATTENTION.create("conv_shaped", native="yes")
    with pytest.raises(UnknownNameError, match="did you mean 'conv_shaped'"):
        ATTENTION.create("conv_shapd")
    with pytest.raises(UnknownNameError, match="kernel_sise"):
        ATTENTION.create("conv_shaped", kernel_sise=3)
    with pytest.raises(ZooError, match="do not divide"):
        q, k, v = _qkv((4, 6))
        ATTENTION.create("conv_shaped", block_cols=4)(q, k, v, (4, 6))
    with pytest.raises(ZooError, match="needs 25 tokens"):
        q, k, v = _qkv((4, 6))
        ATTENTION.create("row")(q, k, v, (5, 5))


def test_gin_binds_a_kernel_argument(gin_clean):
    import gin
    gin.parse_config("conv_shaped.kernel_size = 5")
    assert ATTENTION.create("conv_shaped").kernel_size == 5
