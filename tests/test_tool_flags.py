"""One way of defining tool flags: each zoo/tools module defines its flags in `define_flags()`,
which `common.run` calls once, so importing a tool (from a test or another tool) defines none
and two tools that share a flag name (--seed, --output, ...) can live in one process."""

import json
import subprocess
import sys

from helpers_tools import ROOT

# Tools not yet following the convention: none.
PENDING = set()

PROBE = """
import importlib, json, pkgutil, sys
from absl import app, flags, logging  # noqa: F401  (their own flags are not the tools')
import zoo.tools
out = {}
for info in pkgutil.iter_modules(zoo.tools.__path__):
    if info.name == "common":
        continue
    before = set(flags.FLAGS)
    try:
        module = importlib.import_module("zoo.tools." + info.name)
    except flags.DuplicateFlagError as e:  # a flag another tool defined on import too
        out[info.name] = {"at_import": [str(e).split("'")[1]], "define_flags": False}
        continue
    out[info.name] = {"at_import": sorted(set(flags.FLAGS) - before),
                      "define_flags": callable(getattr(module, "define_flags", None))}
print(json.dumps(out))
"""


def test_tools_define_their_flags_when_run_not_on_import():
    r = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True,
                       timeout=300, env={"ZOO_DISABLE_PLUGIN_AUTOLOAD": "1", "PATH": ""})
    assert r.returncode == 0, r.stderr[-2000:]
    tools = json.loads(r.stdout.strip().splitlines()[-1])
    assert {"encode", "export", "train", "train_spm"} <= set(tools)
    at_import = {name for name, t in tools.items() if t["at_import"]}
    assert at_import - PENDING == set(), {n: tools[n] for n in at_import - PENDING}
    missing = {name for name, t in tools.items() if not t["define_flags"]} - PENDING
    assert not missing, f"tools without define_flags(): {missing}"
