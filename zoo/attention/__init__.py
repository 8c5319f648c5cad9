"""Attention kernels, registered under the `attention` kind (see `zoo.attention.base`)."""

from zoo.attention import column, conv_shaped, dense, row  # noqa: F401  (registers kernels)
from zoo.attention.base import AttentionKernel, dense_masked_attention  # noqa: F401
