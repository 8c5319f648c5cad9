"""Lets the plugin's tests import it from the source tree (no install needed for unit tests)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
