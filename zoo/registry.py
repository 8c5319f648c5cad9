"""The component registry: one `Registry` per kind of component, the names users write in gin.

    ATTENTION = Registry("attention")
    ATTENTION.register("conv_shaped")(ConvShapedAttention)   # a duplicate name raises
    ATTENTION.create("conv_shaped", kernel_size=7)           # gin bindings, then overrides
    ATTENTION.resolve("conv_shaped", {"kernel_size": 7})     # those arguments, as plain JSON
    ATTENTION.get("conv_shapd")  # UnknownNameError: unknown attention 'conv_shapd'; did you mean ...

Every registered component is also a gin configurable under its registry name, in module
`zoo.<kind>`, so a gin file can say `conv_shaped.kernel_size = 7` (or
`attention.conv_shaped.kernel_size = 7` when two kinds share a name). A binding of an argument
the component does not take is an error when the gin file is parsed, naming the valid ones.
"""

import dataclasses
import fnmatch
import inspect
import re
from typing import Any, Callable, Dict, List, Optional, Union

import gin

from zoo.errors import UnknownNameError, ZooError, suggest

# Keras layers accept these through **kwargs; allow binding them too.
_LAYER_KWARGS = ("name", "dtype", "trainable")


@dataclasses.dataclass
class Entry:
    """One registered component."""

    kind: str
    name: str
    obj: Callable  # the class or builder function, as registered
    factory: Callable  # gin-wrapped factory that applies bindings
    params: Optional[List[str]]  # accepted argument names; None means anything goes
    summary: str
    source: str  # "zoo" or the plugin's name
    tiny: Union[Dict[str, Any], Callable[[], Dict[str, Any]], None] = None
    needs: Optional[str] = None
    builds: Optional[type] = None  # the class a size builder builds

    def signature(self):
        return self.factory.__signature__

    def tiny_overrides(self) -> Dict[str, Any]:
        """The declared overrides that make a small instance (tests), {} when none."""
        tiny = self.tiny() if callable(self.tiny) else self.tiny
        return dict(tiny or {})


def _first_line(obj):
    doc = inspect.getdoc(obj) or ""
    return doc.strip().splitlines()[0].strip() if doc.strip() else ""


def _signature_of(obj, builds=None):
    """The signature users may bind: the builder's, or that of the class it builds.

    A class whose `__init__` passes `**kwargs` on to its parent's takes the parent's
    arguments too (a plugin's `class MyParti(Parti)` adding one argument)."""
    sig = inspect.signature(obj.__init__ if inspect.isclass(obj) else obj)
    params = [p for p in sig.parameters.values() if p.name != "self"]
    has_var_kw = any(p.kind is p.VAR_KEYWORD for p in params)
    named = [p for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
    parent = _parent_with_init(obj) if inspect.isclass(obj) and has_var_kw else None
    if parent is not None:
        inner = _signature_of(parent)
        seen = {p.name for p in named}
        named += [p for p in inner.parameters.values()
                  if p.name not in seen and p.kind is not p.VAR_KEYWORD]
        has_var_kw = any(p.kind is p.VAR_KEYWORD for p in inner.parameters.values())
    elif builds is not None and has_var_kw:
        # A size builder `def vit_vqgan_small(**overrides)`: it takes what the class takes.
        inner = _signature_of(builds)
        seen = {p.name for p in named}
        named += [p for p in inner.parameters.values() if p.name not in seen]
        has_var_kw = False
    elif has_var_kw and inspect.isclass(obj) and _is_keras_layer(obj):
        seen = {p.name for p in named}
        named += [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=None)
                  for k in _LAYER_KWARGS if k not in seen]
        has_var_kw = False
    kinds_order = sorted(named, key=lambda p: (p.kind, p.default is not inspect.Parameter.empty))
    # Keyword-only is the safe common form for a factory.
    params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in kinds_order]
    if has_var_kw:
        params.append(inspect.Parameter("kwargs", inspect.Parameter.VAR_KEYWORD))
    return inspect.Signature(params)


def _parent_with_init(cls):
    """The nearest base class defining `__init__` that is not Keras's or `object`."""
    for base in cls.__mro__[1:]:
        if "__init__" not in vars(base):
            continue
        if base is object or base.__module__.split(".")[0] == "keras":
            return None
        return base
    return None


def _is_keras_layer(cls):
    return any(c.__name__ in ("Layer", "Operation") and c.__module__.startswith("keras")
               for c in cls.__mro__)


class Registry:
    """Components of one kind, by name.

    Args:
        kind: str. The kind's name, e.g. "attention"; used in messages and as the gin module
            (`zoo.<kind>`).
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: Dict[str, Entry] = {}

    # -- registering -------------------------------------------------------------------------

    def register(self, name: str, *, builds: Optional[type] = None, summary: Optional[str] = None,
                 source: Optional[str] = None, tiny=None, needs: Optional[str] = None):
        """Decorator registering a class or builder function under `name`.

        Args:
            name: the registry name (lowercase, `<family>_<size>[_<variant>]`).
            builds: for a builder taking `**overrides`, the class it builds; its arguments
                become the builder's bindable arguments.
            summary: one line for `zoo-list`; defaults to the first docstring line.
            source: who registered it; defaults to the plugin being loaded, else "zoo".
            tiny: overrides (a dict, or a function returning one) that make a small instance
                in seconds, for a component too big to build in a test or with required
                arguments. The registry-wide tests (tests/test_registered_components.py)
                build every component from its defaults or from these.
            needs: what the component needs from outside to be built (a file, a run
                directory, a prepared dataset), in words; the registry-wide tests then check
                that building it without that is a one-line ZooError.
        """
        if not isinstance(name, str) or not name or name != name.strip():
            raise ZooError(f"registry name must be a non-empty string, got {name!r}")

        def decorator(obj):
            if name in self._entries:
                old = self._entries[name]
                raise ZooError(
                    f"{self.kind} {name!r} is already registered (by {old.source}: "
                    f"{_qualname(old.obj)}); pick another name, e.g. prefix it with your "
                    f"plugin's name")
            sig = _signature_of(obj, builds)
            accepts_any = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
            params = None if accepts_any else list(sig.parameters)

            def factory(**kwargs):
                return obj(**kwargs)

            factory.__name__ = name
            factory.__qualname__ = name
            factory.__doc__ = inspect.getdoc(obj)
            factory.__signature__ = sig
            factory.__module__ = f"zoo.{self.kind}"
            gin_factory = gin.external_configurable(
                factory, name=name, module=f"zoo.{self.kind}")
            self._entries[name] = Entry(
                kind=self.kind, name=name, obj=obj, factory=gin_factory, params=params,
                summary=summary or _first_line(obj) or (_first_line(builds) if builds else ""),
                source=source or _current_source(), tiny=tiny, needs=needs, builds=builds)
            return obj

        return decorator

    # -- looking up --------------------------------------------------------------------------

    def entry(self, name: str) -> Entry:
        if not isinstance(name, str):
            raise ZooError(f"{self.kind} name must be a string, got {name!r} "
                           f"({type(name).__name__})")
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; "
                f"{suggest(name, self._entries, what=self.kind)}") from None

    def get(self, name: str) -> Callable:
        """The registered class or function."""
        return self.entry(name).obj

    def create(self, name: str, /, **overrides) -> Any:
        """Builds `name` with its gin bindings, then `overrides` on top."""
        entry = self.entry(name)
        if entry.params is not None:
            unknown = [k for k in overrides if k not in entry.params]
            if unknown:
                raise UnknownNameError(
                    f"{self.kind} {name!r} got unknown argument {unknown[0]!r}; "
                    f"{suggest(unknown[0], entry.params, what='argument')}")
        try:
            return entry.factory(**overrides)
        except TypeError as e:
            missing = _missing_arguments(e, entry)
            if not missing:
                raise
            raise ZooError(
                f"{self.kind} {name!r} needs argument{'s' if len(missing) > 1 else ''} "
                f"{', '.join(missing)}: bind {name}.{missing[0]} = ... in a gin file (or pass "
                f"{missing[0]}=...)") from None
        except ZooError as e:
            # gin appends "In call to configurable ..." lines; user errors stay one line.
            text = str(e).split("\n  In call to configurable")[0].strip()
            if text == str(e):
                raise
            cls = UnknownNameError if isinstance(e, UnknownNameError) else ZooError
            raise cls(text).with_traceback(e.__traceback__) from None

    def create_with_defaults(self, name: str, config: Optional[Dict[str, Any]] = None, /,
                             **defaults) -> Any:
        """`create(name, **config)`, adding each of `defaults` (unless None) that the component
        takes and `config` does not set: how a model hands its sizes to its registered parts
        (Parti's text encoder and decoder) whatever those parts are."""
        args = dict(config or {})
        params = self.entry(name).params
        for key, value in defaults.items():
            if key not in args and value is not None and (params is None or key in params):
                args[key] = value
        return self.create(name, **args)

    def bindings(self, name: str) -> Dict[str, Any]:
        """The gin bindings in force for `name` (empty when none)."""
        self.entry(name)
        try:
            return dict(gin.get_bindings(f"zoo.{self.kind}.{name}"))
        except (ValueError, KeyError):
            return {}

    def resolve(self, name: str, overrides: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        """The arguments `create(name)` would get: gin bindings, then `overrides` on top.

        What a task records in run.json so that `create(name, **resolved)` rebuilds the same
        component without gin. Tuples become lists (JSON has no tuples); a value JSON cannot
        hold (e.g. a gin `@reference`) is an error naming the binding, since the run could
        not be rebuilt from its records.
        """
        args = {**self.bindings(name), **dict(overrides or {})}
        for key, value in args.items():
            if not is_json_value(value):
                raise ZooError(
                    f"{self.kind} {name!r} argument {key!r} = {value!r} is not a plain value "
                    f"(str, number, bool, None, list or dict of them); run.json cannot record "
                    f"it, so the run could not be rebuilt: bind a plain value")
        return {k: as_json(v) for k, v in args.items()}

    def list(self, pattern: str = "*") -> List[str]:
        """Sorted names matching a shell-style pattern."""
        return sorted(n for n in self._entries if fnmatch.fnmatchcase(n, pattern))

    def entries(self) -> List[Entry]:
        return [self._entries[n] for n in self.list()]

    def unregister(self, name: str) -> None:
        """Removes `name` (for tests and interactive re-definition)."""
        self.entry(name)
        del self._entries[name]
        try:
            gin.config._REGISTRY.pop(f"zoo.{self.kind}.{name}")  # noqa: SLF001
        except (AttributeError, KeyError):
            pass

    def __contains__(self, name):
        return name in self._entries

    def __iter__(self):
        return iter(self.list())

    def __len__(self):
        return len(self._entries)

    def __repr__(self):
        return f"Registry({self.kind!r}, {len(self)} entries)"


def _missing_arguments(error: TypeError, entry: Entry) -> List[str]:
    """The component's own arguments a "missing ... required ... argument" TypeError names."""
    first = str(error).split("\n")[0]
    if " required " not in first or "missing" not in first:
        return []
    names = re.findall(r"'([A-Za-z_][A-Za-z0-9_]*)'", first.split("argument", 1)[-1])
    params = entry.params if entry.params is not None else list(entry.signature().parameters)
    return names if names and all(n in params for n in names) else []


def is_json_value(value) -> bool:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return True
    if isinstance(value, (list, tuple)):
        return all(is_json_value(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and is_json_value(v) for k, v in value.items())
    return False


def as_json(value):
    """Tuples as lists, all the way down."""
    if isinstance(value, (list, tuple)):
        return [as_json(v) for v in value]
    if isinstance(value, dict):
        return {k: as_json(v) for k, v in value.items()}
    return value


def _qualname(obj):
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


# Set by zoo.plugins while a plugin module is imported, so entries know their source.
_SOURCE_STACK: List[str] = []


def _current_source():
    return _SOURCE_STACK[-1] if _SOURCE_STACK else "zoo"


# -- the kinds ---------------------------------------------------------------------------------

IMAGE_TOKENIZERS = Registry("image_tokenizer")
TEXT_TOKENIZERS = Registry("text_tokenizer")
TEXT_ENCODERS = Registry("text_encoder")
DECODERS = Registry("decoder")
ATTENTION = Registry("attention")
UPSAMPLERS = Registry("upsampler")
MODELS = Registry("model")
DATASETS = Registry("dataset")
METRICS = Registry("metric")
TASKS = Registry("task")  # training stages for the one training loop
SCORERS = Registry("scorer")  # image-text scorers used for reranking and evaluation
FEATURE_NETWORKS = Registry("feature_network")  # perceptual loss / FID features
DISCRIMINATORS = Registry("discriminator")
OPTIMIZERS = Registry("optimizer")
SCHEDULES = Registry("schedule")

REGISTRIES: Dict[str, Registry] = {
    r.kind: r for r in (IMAGE_TOKENIZERS, TEXT_TOKENIZERS, TEXT_ENCODERS, DECODERS, ATTENTION,
                        UPSAMPLERS, MODELS, DATASETS, METRICS, TASKS, SCORERS, FEATURE_NETWORKS,
                        DISCRIMINATORS, OPTIMIZERS, SCHEDULES)
}


def registry(kind: str) -> Registry:
    """The registry of one kind, e.g. `registry("attention")`."""
    try:
        return REGISTRIES[kind]
    except KeyError:
        raise UnknownNameError(
            f"unknown component kind {kind!r}; {suggest(kind, REGISTRIES, what='kind')}") from None
