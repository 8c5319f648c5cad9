"""The example plugin's kernel: its pattern, and its sparse decoding step equals dense masked."""

import numpy as np
import pytest
import tensorflow as tf

import zoo
from zoo.attention.base import dense_masked_attention
from zoo.errors import ZooError


@pytest.fixture(scope="module")
def kernel_cls():
    import zoo_example.components as c
    return c.StridedAttention


def test_pattern(kernel_cls):
    m = kernel_cls(local=2, stride=3).mask((3, 3))
    # position 7 sees itself, 6 (local) and 4, 1 (stride 3)
    assert sorted(np.nonzero(m[7])[0].tolist()) == [1, 4, 6, 7]
    assert not np.triu(m, 1).any()  # causal
    assert np.diag(m).all()


def test_default_stride_is_grid_width(kernel_cls):
    m = kernel_cls(local=1).mask((4, 5))
    assert sorted(np.nonzero(m[17])[0].tolist()) == [2, 7, 12, 17]


@pytest.mark.parametrize("local,stride", [(3, 4), (6, 4), (1, None)])
def test_step_matches_dense(kernel_cls, local, stride):
    kern = kernel_cls(local=local, stride=stride)
    grid = (4, 4)
    rng = np.random.default_rng(0)
    q, k, v = (tf.constant(rng.normal(size=(2, 2, 16, 8)), tf.float32) for _ in range(3))
    full = dense_masked_attention(q, k, v, kern.mask(grid))
    for t in range(16):
        out = kern.step(q[:, :, t:t + 1], k, v, tf.constant(t), grid)
        np.testing.assert_allclose(out.numpy(), full[:, :, t:t + 1].numpy(), atol=1e-5)
    np.testing.assert_allclose(kern(q, k, v, grid).numpy(), full.numpy(), atol=1e-5)


def test_bad_arguments(kernel_cls):
    with pytest.raises(ZooError, match="local must be >= 1"):
        kernel_cls(local=0)
