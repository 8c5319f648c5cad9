"""Attention kernels: masks as DESIGN.md defines them, sparse == dense masked, KV-cache steps."""

import numpy as np
import pytest
import tensorflow as tf

import zoo.attention  # noqa: F401
from zoo.attention.base import AttentionKernel, dense_masked_attention
from zoo.errors import UnknownNameError, ZooError
from zoo.registry import ATTENTION

BUILTIN = ["dense", "row", "column", "conv_shaped"]


# -- reference masks, written out from DESIGN.md independently of the kernels ------------------

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


CASES = [("dense", {}), ("row", {}), ("column", {}), ("conv_shaped", {}),
         ("conv_shaped", {"kernel_size": 3}), ("conv_shaped", {"kernel_size": 5}),
         ("conv_shaped", {"block_rows": 2, "block_cols": 4}),
         ("conv_shaped", {"block_rows": 3, "block_cols": 1})]


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


@pytest.mark.parametrize("name,config", CASES[:5])
def test_step_with_cache_equals_full_attention(name, config):
    grid = (6, 8)
    kernel = ATTENTION.create(name, **config)
    q, k, v = _qkv(grid, seed=1)
    full = kernel(q, k, v, grid).numpy()
    step = tf.function(lambda qt, t: kernel.step(qt, k, v, t, grid))
    for t in range(grid[0] * grid[1]):
        out = step(q[:, :, t:t + 1], tf.constant(t)).numpy()
        np.testing.assert_allclose(out[:, :, 0], full[:, :, t], atol=1e-5, err_msg=f"t={t}")


def test_step_ignores_cache_entries_after_t():
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


@pytest.mark.parametrize("name", ["row", "column", "conv_shaped"])
def test_sparse_kernels_never_build_a_dense_score_matrix(name):
    grid, b, heads, d = (32, 32), 1, 1, 4
    n = grid[0] * grid[1]
    spec = tf.TensorSpec([b, heads, n, d], tf.float32)
    kernel = ATTENTION.create(name)
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
