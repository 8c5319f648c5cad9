"""zoo: a plugin-based Parti (text-to-image) model zoo in TensorFlow 2 / Keras 3.

    import zoo
    zoo.list("attention")                      # ['column', 'conv_shaped', 'dense', 'row']
    attn = zoo.create("attention", "conv_shaped", kernel_size=7)

Importing `zoo` is cheap; the first `create`/`list` imports the built-in components (and so
TensorFlow) and any installed plugins (unless ZOO_DISABLE_PLUGIN_AUTOLOAD=1).
"""

from zoo.errors import UnknownNameError, ZooError
from zoo.registry import REGISTRIES, Registry
from zoo.registry import registry as get_registry

__version__ = "0.1.0"


def create(kind: str, name: str, /, **overrides):
    """Builds the component `name` of `kind` with its gin bindings and `overrides`."""
    from zoo import plugins
    plugins.ensure_loaded()
    return get_registry(kind).create(name, **overrides)


def list(kind: str = None, pattern: str = "*"):  # noqa: A001 -- the public API name
    """Names of `kind` matching `pattern`; with no kind, (kind, name) pairs of every kind."""
    from zoo import plugins
    plugins.ensure_loaded()
    if kind is not None:
        return get_registry(kind).list(pattern)
    return [(k, n) for k in sorted(REGISTRIES) for n in REGISTRIES[k].list(pattern)]


def load_plugins(force: bool = False):
    """Imports installed plugins now; returns {plugin: error} for those that failed."""
    from zoo import plugins
    return plugins.load_plugins(force=force)


__all__ = ["create", "list", "load_plugins", "get_registry", "Registry", "REGISTRIES", "ZooError",
           "UnknownNameError"]
