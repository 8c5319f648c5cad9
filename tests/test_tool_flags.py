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


def test_sampling_tools_share_one_definition_of_the_sampling_flags():
    from zoo.layers.packed import WEIGHT_MODES
    from zoo.tools import common
    assert common.WEIGHT_MODES == WEIGHT_MODES
    r = subprocess.run([sys.executable, "-c", """
import json
from absl import flags
from zoo.tools import eval as ev, export, sample
out = {}
for tool in (sample, ev, export):
    before = set(flags.FLAGS)
    tool.define_flags()
    fl = flags.FLAGS
    out[tool.__name__] = {n: [fl[n].help, fl[n].default] for n in ("temperature", "top_k",
                          "top_p", "guidance_scale", "weights", "jacobi_window", "xla") if n in fl}
    for name in set(fl) - before:  # the next tool defines its own
        delattr(fl, name)
print(json.dumps(out))
"""], cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env={"ZOO_DISABLE_PLUGIN_AUTOLOAD": "1", "PATH": ""})
    assert r.returncode == 0, r.stderr[-2000:]
    tools = json.loads(r.stdout.strip().splitlines()[-1])
    sample, ev, export = (tools[f"zoo.tools.{n}"] for n in ("sample", "eval", "export"))
    assert set(sample) == set(ev) == {"temperature", "top_k", "top_p", "guidance_scale",
                                      "weights", "jacobi_window", "xla"}
    assert sample == ev  # one definition: the same help text
    assert set(export) == {"temperature", "top_k", "top_p", "guidance_scale"}
    # --weights: no value of its own (None), the sampler's default: bfloat16 with the cache,
    # the model's own (auto) where decoding runs without it.
    help_text, default = sample["weights"]
    assert default is None
    assert "default bfloat16 where decoding is KV-cached" in help_text
    assert "auto where it is not" in help_text
