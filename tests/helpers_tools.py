"""Helpers for tests that run the tools in subprocesses."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def tool_env(extra_path=None, **env):
    e = dict(os.environ)
    e["TF_CPP_MIN_LOG_LEVEL"] = "3"
    if extra_path:
        e["PYTHONPATH"] = os.pathsep.join([str(extra_path), e.get("PYTHONPATH", "")]).strip(
            os.pathsep)
    e.update({k: str(v) for k, v in env.items()})
    return e


def run_tool(name, *args, extra_path=None, timeout=300, cwd=ROOT, **env):
    """Runs `python -m tools.<name> args...`; returns the CompletedProcess (text)."""
    return subprocess.run([sys.executable, "-m", f"tools.{name}", *map(str, args)],
                          cwd=cwd, env=tool_env(extra_path, **env), capture_output=True,
                          text=True, timeout=timeout)


def make_plugin_dist(site, dist, entry_name, module, source):
    """Writes a minimal installed distribution (dist-info + module) into `site`."""
    site = Path(site)
    site.mkdir(parents=True, exist_ok=True)
    info = site / f"{dist}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[zoo.plugins]\n{entry_name} = {module}\n")
    (site / f"{module}.py").write_text(source)
    return site
