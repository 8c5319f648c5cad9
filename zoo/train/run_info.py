"""What made a model directory: `run.json` (task, task config, seed, command, versions).

    {"task": "vit_vqgan", "task_config": {...}, "seed": 0, "batch_size": 8,
     "command": "zoo-train --gin_file=...", "versions": {"tensorflow": "2.21.0", ...},
     "created": "...", "sessions": [{"start_step": 0, "command": ..., "time": ...}, ...]}

`check_compatible` refuses to resume a directory made by another task or with another task
config (e.g. another model size), showing a short diff. `write_operative_config` records the
gin config a session ran with. Every file goes through tf.io.gfile (zoo/train/storage.py), so a
model directory may be a bucket.
"""

import datetime
import importlib.metadata
import json
import logging
import platform
import shlex
import sys
from typing import Any, Dict, List, Optional, Sequence

from zoo import compat
from zoo.errors import ZooError
from zoo.train import storage

log = logging.getLogger("zoo")

RUN_FILE = "run.json"
OPERATIVE_CONFIG = "operative_config.gin"
_PACKAGES = ("zoo", "tensorflow", "keras", "tensorflow-text", "gin-config", "numpy",
             "absl-py", "tensorflow-datasets", "sentencepiece")


def package_versions() -> Dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return versions


def command_line() -> str:
    return " ".join(shlex.quote(a) for a in sys.argv) if sys.argv else ""


def normalize(config: Any) -> Any:
    """JSON round trip: tuples become lists, keys strings (what a reload would see)."""
    try:
        return json.loads(json.dumps(config, sort_keys=True))
    except (TypeError, ValueError) as e:
        raise ZooError(f"task config is not JSON-serialisable ({e}); Task.config() must return "
                       f"plain values (numbers, strings, lists, dicts)") from None


def read(model_dir: str) -> Optional[Dict[str, Any]]:
    """run.json of `model_dir` (renamed options under their current names), or None when
    there is none."""
    path = storage.join(model_dir, RUN_FILE)
    if not storage.exists(path):
        return None
    try:
        info = json.loads(storage.read_text(path))
    except Exception as e:  # noqa: BLE001 -- OSError, tf.errors.OpError, ValueError
        raise ZooError(f"{path} is unreadable ({str(e).splitlines()[0]}); fix or move it, or "
                       f"use another --model_dir") from None
    if not isinstance(info, dict) or "task" not in info:
        raise ZooError(f"{path} is not a zoo run file (no 'task' entry); use another --model_dir")
    return compat.upgrade(info)  # options under their current names (zoo.compat)


def write(model_dir: str, info: Dict[str, Any]) -> str:
    text = json.dumps(info, indent=1, sort_keys=True) + "\n"
    return storage.write_text(storage.join(model_dir, RUN_FILE), text)


def tokenizer_run(model_dir: str, what: str = "image tokenizer directory"):
    """(tokenizer name, options) of a trained `vit_vqgan` run directory, from its run.json.

    `what` names the setting in the errors (e.g. 'init_from').
    """
    if not storage.isdir(model_dir):
        raise ZooError(f"{what} {model_dir!r} does not exist, so it is not a zoo-train model "
                       f"directory; train a tokenizer with zoo-train "
                       f"--gin_file=runs/tokenizer_tiny_shapes.gin --model_dir=... and give "
                       f"that directory")
    info = read(model_dir)
    if info is None:
        raise ZooError(f"{what} {model_dir!r} is not a zoo-train model directory (no "
                       f"{RUN_FILE}); give the directory of a trained tokenizer run")
    cfg = info.get("task_config", {})
    if "tokenizer" not in cfg:
        raise ZooError(f"{what} {model_dir!r} is a {info.get('task')!r} run, not an image "
                       f"tokenizer run")
    return cfg["tokenizer"], dict(cfg.get("tokenizer_options") or {})


def write_operative_config(model_dir: str, start_step: int) -> Optional[str]:
    """Writes gin's operative config into `model_dir/operative_config.gin`; a resumed session
    whose config differs writes `operative_config-resume-<step>.gin` instead. Returns the path
    (None when gin has nothing to say)."""
    import gin
    try:
        text = gin.operative_config_str()
        if not text.strip():
            text = gin.config_str()
    except Exception as e:  # noqa: BLE001 -- e.g. a configurable unregistered since its call
        log.warning("zoo: could not write the operative gin config: %r", e)
        return None
    if not text.strip():
        return None
    path = storage.join(model_dir, OPERATIVE_CONFIG)
    if start_step > 0 and storage.exists(path) and storage.read_text(path) != text:
        path = storage.join(model_dir, f"operative_config-resume-{start_step}.gin")
    return storage.write_text(path, text)


def new_info(task_name: str, task_config: Dict[str, Any], seed: int,
             batch_size: int) -> Dict[str, Any]:
    return {
        "task": task_name,
        "task_config": normalize(task_config),
        "seed": int(seed),
        "batch_size": int(batch_size),
        "command": command_line(),
        "versions": package_versions(),
        "created": _now(),
        "sessions": [],
    }


def add_session(info: Dict[str, Any], start_step: int,
                args: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """`info` plus one entry for this session (a start or a resume): the step it started at,
    its command line, the loop's arguments (gin's operative config omits arguments passed
    explicitly, e.g. by --steps) and package versions."""
    info = dict(info)
    session = {"start_step": int(start_step), "command": command_line(), "time": _now(),
               "args": normalize(args or {}), "versions": package_versions()}
    info["sessions"] = list(info.get("sessions", [])) + [session]
    return info


def _now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def flatten(config: Any, prefix: str = "") -> Dict[str, Any]:
    """{'a.b': 1, 'c[0]': 2} from nested dicts and lists."""
    out = {}
    if isinstance(config, dict):
        for k in sorted(config):
            out.update(flatten(config[k], f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(config, list) and config and any(isinstance(v, (dict, list)) for v in config):
        for i, v in enumerate(config):
            out.update(flatten(v, f"{prefix}[{i}]"))
    else:
        out[prefix or "(config)"] = config
    return out


def diff(saved: Any, new: Any, limit: int = 6) -> List[str]:
    """Short lines 'key: saved -> new' for values that differ."""
    a, b = flatten(saved), flatten(new)
    lines = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key, "<absent>"), b.get(key, "<absent>")
        if va != vb:
            lines.append(f"{key}: {_short(va)} -> {_short(vb)}")
    if len(lines) > limit:
        lines = lines[:limit] + [f"... {len(lines) - limit} more"]
    return lines


def _short(v: Any, n: int = 40) -> str:
    s = v if isinstance(v, str) and v == "<absent>" else json.dumps(v)
    return s if len(s) <= n else s[:n - 3] + "..."


def check_compatible(model_dir: str, saved: Dict[str, Any], task_name: str,
                     task_config: Dict[str, Any], seed: int,
                     allow: Sequence[str] = ()) -> List[str]:
    """Raises ZooError when `model_dir` (run.json `saved`) was made by another task/config.

    `allow`: task config keys (dotted, e.g. 'learning_rate' or 'dataset_options') that may
    differ; returns the allowed differences ('key: saved -> new').
    """
    if saved["task"] != task_name:
        raise ZooError(
            f"model_dir {model_dir} was written by task {saved['task']!r}, not {task_name!r}; "
            f"use another --model_dir (nothing was changed)")
    new = normalize(task_config)
    old = saved.get("task_config", {})
    allowed, refused = [], []
    if old != new:
        a, b = flatten(old), flatten(new)
        for key in sorted(set(a) | set(b)):
            if a.get(key, "<absent>") == b.get(key, "<absent>"):
                continue
            line = f"{key}: {_short(a.get(key, '<absent>'))} -> {_short(b.get(key, '<absent>'))}"
            (allowed if _allowed(key, allow) else refused).append(line)
    if refused:
        shown = refused[:6] + ([f"... {len(refused) - 6} more"] if len(refused) > 6 else [])
        raise ZooError(
            f"model_dir {model_dir} holds a {task_name!r} run with another task config "
            f"(saved -> now: {'; '.join(shown)}); resume with the saved config, or use another "
            f"--model_dir, or allow a change with train.allow_config_change = "
            f"['{refused[0].split(':')[0]}'] (nothing was changed)")
    if "seed" in saved and int(saved["seed"]) != int(seed):
        raise ZooError(
            f"model_dir {model_dir} was trained with seed {saved['seed']}, not {seed}; the data "
            f"order depends on it: resume with --seed={saved['seed']} or use another "
            f"--model_dir (nothing was changed)")
    return allowed


def _allowed(key: str, allow: Sequence[str]) -> bool:
    return any(key == a or key.startswith(a + ".") or key.startswith(a + "[") for a in allow)
