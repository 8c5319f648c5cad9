"""tf.distribute strategies and DTensor meshes with layout maps (see base.py for the interface).

Importing this package is cheap (no TensorFlow); it registers the gin configurable
`mesh_layout` (mesh + layout rules, see gin/mesh/*.gin).
"""

from zoo.distribute import rules as _rules  # noqa: F401  (registers mesh_layout with gin)
from zoo.distribute.base import STRATEGIES, Distribution
from zoo.distribute.factory import get


def from_flags():
    """The distribution asked for by --strategy/--mesh/--virtual_devices (zoo.distribute.flags)."""
    from zoo.distribute import flags
    return flags.from_flags()


__all__ = ["Distribution", "STRATEGIES", "from_flags", "get"]
