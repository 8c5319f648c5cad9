"""Every gin file in gin/ parses (with every component registered) and names real things."""

from pathlib import Path

import gin
import pytest

from zoo import config

GIN_FILES = sorted(str(p.relative_to(config.GIN_DIR)) for p in config.GIN_DIR.rglob("*.gin"))


def test_there_are_gin_files():
    assert GIN_FILES, f"no gin files under {config.GIN_DIR}"


@pytest.mark.parametrize("path", GIN_FILES)
def test_gin_file_parses(path, gin_clean):
    config.parse([path], finalize=False)
    assert gin.config_str() is not None


@pytest.mark.parametrize("path", GIN_FILES)
def test_gin_file_opens_with_a_comment(path):
    first = (config.GIN_DIR / path).read_text().lstrip().splitlines()[0]
    assert first.startswith("#"), f"{path} should start with a comment saying what it is"
