"""Keras 3 building blocks shared by the models."""

from zoo.layers import legacy  # noqa: F401  (old Keras names stay loadable)
