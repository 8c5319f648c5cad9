"""Sampling settings a run recorded for itself (`sampling.json` in a Parti run directory).

    settings = resolve("runs/mine/parti", temperature=None, guidance_scale=2.0)
    settings.values    # {'temperature': 0.75, 'top_k': 0, 'top_p': 1.0, 'guidance_scale': 2.0}
    settings.describe()
    # 'temperature 0.75 (recorded), top_k 0 (recorded), top_p 1 (default), guidance_scale 2 (flag)'

zoo-demo measures a small grid of settings on held-out captions and writes the best into the
Parti run directory (`record`); zoo-sample, zoo-eval and zoo-export then sample with them unless
a flag overrides one, and print the settings they use at start. A setting nobody recorded nor
passed takes the sampler's default (temperature 1.0, no top-k, no top-p, guidance 1.2).
"""

import dataclasses
import json
import os
from typing import Any, Dict, Optional

from zoo.errors import ZooError

SETTINGS_FILE = "sampling.json"
DEFAULTS = {"temperature": 1.0, "top_k": 0, "top_p": 1.0, "guidance_scale": 1.2}
KEYS = tuple(DEFAULTS)


@dataclasses.dataclass
class Settings:
    """Sampling settings and where each came from ('flag', 'recorded' or 'default')."""

    values: Dict[str, Any]
    sources: Dict[str, str]
    path: Optional[str] = None  # the sampling.json read, if any

    def describe(self) -> str:
        parts = [f"{k} {self.values[k]:g} ({self.sources[k]})" for k in KEYS]
        where = f"; recorded in {self.path}" if self.path and "recorded" in self.sources.values() \
            else ""
        return ", ".join(parts) + where


def path_of(model_dir: str) -> str:
    return os.path.join(os.fspath(model_dir), SETTINGS_FILE)


def recorded(model_dir: Optional[str]) -> Dict[str, Any]:
    """The settings recorded in `model_dir`/sampling.json (only the known keys), or {}."""
    if not model_dir:
        return {}
    path = path_of(model_dir)
    if not os.path.isfile(path):
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise ZooError(f"{path} is unreadable ({e}); fix or delete it (it only holds the "
                       f"recorded sampling settings)") from None
    best = data.get("settings") if isinstance(data, dict) else None
    if not isinstance(best, dict):
        raise ZooError(f"{path} has no 'settings' entry; delete it or record settings with "
                       f"zoo-demo")
    return {k: best[k] for k in KEYS if k in best}


def resolve(model_dir: Optional[str] = None, **overrides) -> Settings:
    """Settings for sampling `model_dir`: flags (non-None `overrides`) over the recorded ones
    over the defaults."""
    unknown = sorted(set(overrides) - set(KEYS))
    if unknown:
        raise ZooError(f"unknown sampling settings {unknown}; known: {', '.join(KEYS)}")
    saved = recorded(model_dir)
    values, sources = {}, {}
    for key in KEYS:
        if overrides.get(key) is not None:
            values[key], sources[key] = overrides[key], "flag"
        elif key in saved:
            values[key], sources[key] = saved[key], "recorded"
        else:
            values[key], sources[key] = DEFAULTS[key], "default"
    values["top_k"] = int(values["top_k"])
    for key in ("temperature", "top_p", "guidance_scale"):
        values[key] = float(values[key])
    return Settings(values, sources, path_of(model_dir) if saved else None)


def record(model_dir: str, settings: Dict[str, Any], measured: Optional[Dict] = None) -> str:
    """Writes `settings` (and how they were chosen) to `model_dir`/sampling.json atomically."""
    unknown = sorted(set(settings) - set(KEYS))
    if unknown:
        raise ZooError(f"unknown sampling settings {unknown}; known: {', '.join(KEYS)}")
    path = path_of(model_dir)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"settings": dict(settings), **(measured or {})}, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)
    return path
