"""Evaluation results: a JSON file for machines and a summary for people.

    results = {"model_dir": ..., "metrics": {"fid": 31.2, "shapes_acceptance": 0.74, ...},
               "samples": [{"prompt": ..., "category": ..., "images": [...], "scores": [...],
                            "accepted": [...]}, ...]}
    json_path, summary_path = write_results(output_dir, results)

The summary lists every metric, the shapes checker's per-feature rates when present, and a
table per grouping (PartiPrompts category and challenge) with counts and per-group metrics.
"""

import json
import math
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

RESULTS_NAME = "results.json"
SUMMARY_NAME = "summary.txt"
GROUP_KEYS = ("category", "challenge")


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.generic,)):
        value = value.item()
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN; null reads as "not available"
    if isinstance(value, Path):
        return str(value)
    return value


def group_stats(samples: List[Dict[str, Any]], key: str) -> Dict[str, Dict[str, Any]]:
    """Per value of `key` (e.g. category): prompts, images, mean score, acceptance rate."""
    groups: Dict[str, Dict[str, list]] = {}
    for s in samples:
        value = s.get(key)
        if not value:
            continue
        g = groups.setdefault(value, {"prompts": 0, "images": 0, "scores": [], "accepted": []})
        g["prompts"] += 1
        g["images"] += len(s.get("images") or ())
        # The evaluation's contrastive score when there is one, else the sampler's scores.
        g["scores"] += [float(x) for x in (s.get("contrastive") or s.get("scores") or ())]
        g["accepted"] += [bool(x) for x in (s.get("accepted") or ()) if x is not None]
    out = {}
    for value, g in groups.items():
        row = {"prompts": g["prompts"], "images": g["images"]}
        if g["scores"]:
            row["mean_score"] = float(np.mean(g["scores"]))
        if g["accepted"]:
            row["acceptance"] = float(np.mean(g["accepted"]))
        out[value] = row
    return out


def add_group_stats(results: Dict[str, Any]) -> Dict[str, Any]:
    """Fills `results["groups"][key]` for every key some sample has."""
    samples = results.get("samples") or []
    groups = {k: group_stats(samples, k) for k in GROUP_KEYS}
    results["groups"] = {k: v for k, v in groups.items() if v}
    return results


def _fmt(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:.1f}"
    return str(value)


def summarize(results: Dict[str, Any]) -> str:
    """A readable multi-line summary of `results`."""
    results = _jsonable(results)
    lines = []
    head = [("model", results.get("model_dir")), ("prompts", results.get("prompts")),
            ("prompt count", results.get("num_prompts")),
            ("samples per prompt", results.get("num_samples")),
            ("guidance scale", results.get("guidance_scale")), ("seed", results.get("seed"))]
    for name, value in head:
        if value is not None:
            lines.append(f"{name + ':':<20} {value}")
    metrics = results.get("metrics") or {}
    if metrics:
        lines.append("")
        lines.append("metrics")
        for name, value in metrics.items():
            if isinstance(value, dict):
                continue
            lines.append(f"  {name:<30} {_fmt(value)}")
        for name, value in metrics.items():
            if isinstance(value, dict):
                lines.append(f"  {name}")
                for k, v in value.items():
                    lines.append(f"    {k:<28} {_fmt(v)}")
    for key, table in (results.get("groups") or {}).items():
        if not table:
            continue
        columns = ["prompts", "images"] + [c for c in ("mean_score", "acceptance")
                                           if any(c in row for row in table.values())]
        width = max(len(key), max(len(v) for v in table)) + 2
        lines.append("")
        lines.append(f"by {key}".ljust(width) + "".join(f"{c:>12}" for c in columns))
        for value, row in table.items():
            lines.append(f"  {value}".ljust(width)
                         + "".join(f"{_fmt(row.get(c)):>12}" for c in columns))
    for name in ("notes",):
        for note in results.get(name) or ():
            lines.append(f"note: {note}")
    return "\n".join(lines) + "\n"


def write_results(output_dir, results: Dict[str, Any]) -> Tuple[Path, Path]:
    """Writes results.json and summary.txt into `output_dir` (atomically); returns their paths."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = _jsonable(add_group_stats(dict(results)))
    json_path, summary_path = out / RESULTS_NAME, out / SUMMARY_NAME
    _atomic_write(json_path, json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    _atomic_write(summary_path, summarize(results))
    return json_path, summary_path


def summary_lines(output_dir, results: Dict[str, Any]) -> str:
    """The summary written to `output_dir`, then where the results, gallery and grid are."""
    out = Path(output_dir)
    text = (out / SUMMARY_NAME).read_text(encoding="utf-8")
    return (f"{text}\nresults: {out / RESULTS_NAME}\ngallery: {out / 'index.html'}\n"
            f"grid:    {results.get('grid')}\n")


def read_results(output_dir) -> Optional[Dict[str, Any]]:
    path = Path(output_dir) / RESULTS_NAME
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
