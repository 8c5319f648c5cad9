"""Gin plumbing: finding gin files, parsing them with one-line errors, saving operative configs."""

import contextlib
import logging
import os
import re
import tokenize
from pathlib import Path
from typing import Iterable, List, Optional, Sequence

import gin

from zoo.errors import UnknownNameError, ZooError, suggest

# The project's gin folder (next to the zoo package in a source checkout / editable install).
PROJECT_ROOT = Path(__file__).resolve().parents[1]
GIN_DIR = PROJECT_ROOT / "gin"
GIN_PATH_ENV = "ZOO_GIN_PATH"  # extra folders to search, os.pathsep-separated


def search_paths() -> List[Path]:
    """Where gin files and includes are looked for, after the working directory."""
    extra = [Path(p) for p in os.environ.get(GIN_PATH_ENV, "").split(os.pathsep) if p]
    return extra + [GIN_DIR, PROJECT_ROOT]


def resolve_gin_file(path: str) -> str:
    """`path` as given (relative to the working directory), else in the gin search path."""
    candidates = [Path(path)]
    if not Path(path).is_absolute():
        candidates += [base / path for base in search_paths()]
        if not path.endswith(".gin"):
            candidates += [base / (path + ".gin") for base in search_paths()]
    for c in candidates:
        if c.is_file():
            return str(c)
    where = ", ".join(dict.fromkeys(str(p) for p in [Path.cwd()] + search_paths()))
    raise ZooError(f"gin file {path!r} not found; looked in {where} "
                   f"(list them with: ls {GIN_DIR})")


def _register_search_paths():
    for p in search_paths():
        if p.is_dir():
            gin.add_config_file_search_path(str(p))
    _guard_package_reader()


def _guard_package_reader():
    """gin's package-resource reader takes `include 'runs/x.gin'` for module `runs`; when the
    working directory is on sys.path (`python -m ...`) and holds a `runs/` folder, that is a
    namespace package without a file, and gin crashes ("expected str ... not NoneType")
    instead of trying the next search path. Its existence check answers False there."""
    readers = gin.config._FILE_READERS  # noqa: SLF001
    for i, (reader, exists) in enumerate(readers):
        if getattr(exists, "__name__", "") == "system_path_file_exists":
            def guarded(path, _exists=exists):
                try:
                    return _exists(path)
                except TypeError:  # a namespace package: no file of its own
                    return False
            guarded.__name__ = "guarded_system_path_file_exists"
            readers[i] = (reader, guarded)


def known_configurables() -> List[str]:
    """Every name gin knows (registry components and other configurables)."""
    names = set()
    for key, _ in gin.config._REGISTRY.items():  # noqa: SLF001
        names.add(key.split(".")[-1])
    return sorted(names)


def parse(gin_files: Sequence[str] = (), bindings: Iterable[str] = (), *,
          finalize: bool = True, clear: bool = True) -> None:
    """Parses gin files then bindings; any error becomes a one-line ZooError.

    Components (built-ins and plugins) must be registered before this is called.
    """
    files = [resolve_gin_file(f) for f in gin_files]  # a missing file fails fast, before TF
    from zoo import plugins
    plugins.ensure_loaded()
    _register_search_paths()
    if clear:
        gin.clear_config()
    for f in files:
        try:
            with _quiet_include_search():
                gin.parse_config_file(f)
        except Exception as e:  # noqa: BLE001
            raise translate_gin_error(e, where=f) from None
    for b in bindings:
        for line in _split_binding(b):
            try:
                gin.parse_config(line)
            except Exception as e:  # noqa: BLE001
                raise translate_gin_error(e, where=f"--gin_bindings={line!r}") from None
    if finalize:
        try:
            gin.finalize()
        except Exception as e:  # noqa: BLE001
            raise translate_gin_error(e, where="gin config") from None


@contextlib.contextmanager
def _quiet_include_search():
    """gin logs every search-path miss while resolving an `include` as an error; mute it."""
    logger = logging.getLogger()  # gin logs through the root logger
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _split_binding(binding: str) -> List[str]:
    # A flag may carry several bindings separated by newlines.
    return [line for line in binding.splitlines() if line.strip()]


_NO_CONFIGURABLE = re.compile(r"No configurable matching (?:reference )?'@?([^'()]+?)(?:\(\))?'")
_NO_PARAM = re.compile(r"Configurable '([^']+)' doesn't have a parameter named '([^']+)'")
_IN_FILE = re.compile(r'In file "([^"]+)", line (\d+)')
_MACRO = re.compile(r"No value supplied for macro '?%?([^'\s]+)'?|Unable to find macro '?%?([^'\s]+)")


def translate_gin_error(e: BaseException, where: str) -> ZooError:
    """Turns gin's exception into one line naming the file/binding, the value and the fix."""
    if isinstance(e, ZooError):
        return e
    msg = str(e)
    loc = where
    m = _IN_FILE.search(msg)
    if m:
        loc = f"{m.group(1)}, line {m.group(2)}"
    if isinstance(e, tokenize.TokenError) and len(e.args) == 2 and isinstance(e.args[1], tuple):
        # e.g. an unclosed bracket: ('EOF in multi-line statement', (line, col)).
        return ZooError(f"gin syntax error in {where}, line {e.args[1][0]}: {e.args[0]} "
                        f"(an unclosed bracket or string?)")
    if isinstance(e, SyntaxError):
        filename = getattr(e, "filename", None) or where
        lineno = getattr(e, "lineno", None)
        text = (getattr(e, "text", None) or "").strip()
        head = f"{filename}, line {lineno}" if lineno else filename
        detail = e.msg if getattr(e, "msg", None) else msg.splitlines()[0]
        return ZooError(f"gin syntax error in {head}: {detail}" + (f": {text!r}" if text else ""))
    m = _NO_PARAM.search(msg)
    if m:
        selector, param = m.group(1), m.group(2)
        valid = _params_of(selector)
        hint = suggest(param, valid, what="argument") if valid else ""
        from zoo import compat
        new_name = compat.new_name_of(param)
        if new_name and new_name in valid:
            hint = f"it was renamed {new_name!r}: write {selector}.{new_name}"
        return UnknownNameError(f"{loc}: {selector!r} has no argument {param!r}"
                                + (f"; {hint}" if hint else ""))
    m = _NO_CONFIGURABLE.search(msg)
    if m:
        name = m.group(1).strip()
        short = name.split(".")[-1]
        return UnknownNameError(f"{loc}: unknown configurable {name!r}; "
                                f"{suggest(short, known_configurables(), what='configurable')}")
    if "Required bindings" in msg or "REQUIRED" in msg:
        first = msg.strip().splitlines()[0]
        return ZooError(f"{loc}: {first} (bind it in a gin file or with --gin_bindings)")
    first = msg.strip().splitlines()[0] if msg.strip() else type(e).__name__
    return ZooError(f"{loc}: {first}")


def _params_of(selector: str) -> List[str]:
    try:
        configurable = gin.config._REGISTRY.get_match(selector)  # noqa: SLF001
    except Exception:  # noqa: BLE001
        return []
    if configurable is None:
        return []
    import inspect
    try:
        sig = inspect.signature(configurable.wrapped)
    except (TypeError, ValueError):
        return []
    return [p for p in sig.parameters if p not in ("self", "args", "kwargs")]


def write_operative_config(model_dir: str, name: str = "operative_config.gin") -> str:
    """Writes gin's operative config (what was actually used) into `model_dir`."""
    os.makedirs(model_dir, exist_ok=True)
    path = os.path.join(model_dir, name)
    text = gin.operative_config_str()
    if not text.strip():
        text = gin.config_str()
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
    return path


def query(name: str, default=None):
    """A gin macro or binding's value, or `default` when unbound."""
    try:
        return gin.query_parameter(name)
    except ValueError:
        return default


def bound(selector: str) -> Optional[dict]:
    try:
        return gin.get_bindings(selector)
    except ValueError:
        return None
