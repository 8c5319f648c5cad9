"""Attention kernels, registered under the `attention` kind."""
