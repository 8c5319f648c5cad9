"""Plugins: discovered through the `zoo.plugins` entry point group, broken ones isolated."""

import subprocess
import sys

import pytest

from helpers_tools import ROOT, make_plugin_dist, run_tool

GOOD = '''
"""A plugin registering a metric."""
from zoo.registry import METRICS

@METRICS.register("goodplug_mean")
def goodplug_mean(scale=1.0):
    """Mean of values times scale (test plugin)."""
    return lambda xs: scale * sum(xs) / len(xs)
'''

BROKEN = '''
raise ImportError("this plugin needs the missing package 'frobnicate'")
'''


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    site = tmp_path_factory.mktemp("site")
    make_plugin_dist(site, "zoo_goodplug", "goodplug", "zoo_goodplug_mod", GOOD)
    make_plugin_dist(site, "zoo_brokenplug", "brokenplug", "zoo_brokenplug_mod", BROKEN)
    return site


def _py(code, site, **env):
    from helpers_tools import tool_env
    return subprocess.run([sys.executable, "-c", code], env=tool_env(site, **env), cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_good_plugin_loaded_broken_reported(site):
    code = ("import zoo\nfrom zoo import plugins\n"
            "print(zoo.create('metric', 'goodplug_mean', scale=2.0)([1, 3]))\n"
            "print('SOURCE', zoo.get_registry('metric').entry('goodplug_mean').source)\n"
            "print('FAILED', sorted(plugins.FAILED))\n")
    r = _py(code, site)
    assert r.returncode == 0, r.stderr
    assert "4.0" in r.stdout
    assert "SOURCE goodplug" in r.stdout
    assert "FAILED ['brokenplug']" in r.stdout
    assert "brokenplug" in r.stderr and "frobnicate" in r.stderr


def test_autoload_can_be_disabled(site):
    code = ("import zoo\n"
            "print('goodplug_mean' in zoo.list('metric'))\n")
    r = _py(code, site, ZOO_DISABLE_PLUGIN_AUTOLOAD="1")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith("False")
    assert "brokenplug" not in r.stderr


def test_zoo_list_shows_plugin_and_survives_broken_one(site):
    r = run_tool("list", "metric", extra_path=site)
    assert r.returncode == 0, r.stderr
    assert any(line.startswith("metric goodplug_mean") and "[goodplug]" in line
               for line in r.stdout.splitlines()), r.stdout
    assert "plugin 'brokenplug' failed to import" in r.stderr
    assert "frobnicate" in r.stderr
    assert "Traceback" not in r.stderr


def test_plugin_gin_binding(site, tmp_path):
    gin_file = tmp_path / "p.gin"
    gin_file.write_text("goodplug_mean.scale = 10.0\n")
    code = ("import zoo\nfrom zoo import config\n"
            f"config.parse([{str(gin_file)!r}])\n"
            "print(zoo.create('metric', 'goodplug_mean')([1, 2]))\n")
    r = _py(code, site)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith("15.0")
