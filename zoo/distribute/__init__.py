"""tf.distribute strategies and DTensor meshes with layout maps (see base.py for the interface)."""

from zoo.distribute.base import STRATEGIES, Distribution, get

__all__ = ["Distribution", "STRATEGIES", "get"]
