"""Loads built-in components and third-party plugins (entry point group `zoo.plugins`).

A plugin package declares, in its setup file,

    entry_points={"zoo.plugins": ["myplugin = zoo_myplugin.components"]}

and its module registers components when imported. `ZOO_DISABLE_PLUGIN_AUTOLOAD=1` turns
autoloading off; a plugin that fails to import is reported by name with its error and skipped.
"""

import importlib
import importlib.metadata
import logging
import os
import traceback
from typing import Dict, List

from zoo import registry as _registry

GROUP = "zoo.plugins"
DISABLE_ENV = "ZOO_DISABLE_PLUGIN_AUTOLOAD"

# Sub-packages of zoo whose import registers the built-in components.
BUILTIN_MODULES = (
    "zoo.attention",
    "zoo.tokenizers",
    "zoo.data",
    "zoo.text_encoders",
    "zoo.models",
    "zoo.distribute",
    "zoo.train",
    "zoo.eval",
)

log = logging.getLogger("zoo")

_builtins_loaded = False
_plugins_loaded = False
LOADED: Dict[str, str] = {}  # plugin name -> module
FAILED: Dict[str, str] = {}  # plugin name -> "ErrorType: message"


def load_builtins() -> None:
    """Imports zoo's own component modules (once)."""
    global _builtins_loaded
    if _builtins_loaded:
        return
    for module in BUILTIN_MODULES:
        importlib.import_module(module)
    _builtins_loaded = True


def autoload_disabled() -> bool:
    return os.environ.get(DISABLE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def load_plugins(force: bool = False) -> Dict[str, str]:
    """Imports every `zoo.plugins` entry point (once). Returns {name: error} for failures."""
    global _plugins_loaded
    if _plugins_loaded and not force:
        return dict(FAILED)
    _plugins_loaded = True
    for ep in _entry_points():
        if ep.name in LOADED or (ep.name in FAILED and not force):
            continue
        load_plugin(ep.name, ep.value)
    return dict(FAILED)


def load_plugin(name: str, module: str) -> bool:
    """Imports one plugin module; on failure records and logs the error, returns False."""
    _registry._SOURCE_STACK.append(name)  # noqa: SLF001
    try:
        importlib.import_module(module.split(":")[0])
    except Exception as e:  # noqa: BLE001 -- a broken plugin must not break the zoo
        detail = f"{type(e).__name__}: {e}".strip()
        FAILED[name] = detail
        log.warning("warning: plugin %r failed to import and was skipped (module %s): %s",
                    name, module, detail)
        log.debug("%s", traceback.format_exc())
        return False
    finally:
        _registry._SOURCE_STACK.pop()  # noqa: SLF001
    FAILED.pop(name, None)
    LOADED[name] = module
    return True


def _entry_points() -> List[importlib.metadata.EntryPoint]:
    eps = importlib.metadata.entry_points()
    selected = eps.select(group=GROUP) if hasattr(eps, "select") else eps.get(GROUP, [])
    # One per name: the same distribution may be visible twice (egg-link + dist-info).
    unique = {}
    for ep in selected:
        unique.setdefault(ep.name, ep)
    return sorted(unique.values(), key=lambda ep: ep.name)


def ensure_loaded() -> None:
    """Built-ins always; plugins unless autoloading is disabled."""
    load_builtins()
    if not autoload_disabled():
        load_plugins()
