"""Prompt sets: PartiPrompts TSV, plain text files, subsets, and every bad input."""

import collections
import os
import subprocess
import sys
from pathlib import Path

import pytest

from zoo.errors import ZooError
from zoo.eval import prompts as prompts_lib

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def parti_path():
    path = prompts_lib.partiprompts_path()
    assert path.is_file(), f"PartiPrompts.tsv is package data of zoo, but not at {path}"
    return path


@pytest.mark.slow
def test_partiprompts_ship_with_an_installed_zoo(tmp_path):
    """zoo as its package build lays it out (the packages and their declared package data,
    what a wheel holds), away from this checkout, reads PartiPrompts from any directory."""
    site, elsewhere = tmp_path / "site", tmp_path / "elsewhere"
    elsewhere.mkdir()
    r = subprocess.run([sys.executable, "setup.py", "-q", "build_py", "--build-lib", str(site)],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    code = ("import zoo, zoo.eval.prompts as p\n"
            "print('FILE', zoo.__file__)\n"
            "print('PATH', p.partiprompts_path())\n"
            "print('COUNT', len(p.load_prompts('partiprompts')))\n")
    env = {**os.environ, "PYTHONPATH": str(site), "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop(prompts_lib.PARTIPROMPTS_ENV, None)
    r = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    out = dict(line.split(" ", 1) for line in r.stdout.splitlines())
    assert out["FILE"].startswith(str(site)) and out["PATH"].startswith(str(site)), out
    assert out["COUNT"] == "1632"
    assert (site / "zoo" / "eval" / "data" / "LICENSE-PartiPrompts").is_file()


def test_partiprompts_full_set(parti_path):
    prompts = prompts_lib.load_prompts("partiprompts")
    assert len(prompts) == 1632
    categories = collections.Counter(p.category for p in prompts)
    challenges = collections.Counter(p.challenge for p in prompts)
    # Counts published with the set (see its README).
    assert len(categories) == 12 and categories["Animals"] == 314
    assert categories["Indoor Scenes"] == 40
    assert len(challenges) == 11 and challenges["Fine-grained Detail"] == 312
    assert prompts[0] == prompts_lib.Prompt(
        "bond", "Abstract", "Basic", "Biology-inspired concepts with multiple meanings",
        source="PartiPrompts.tsv:2")
    # Quotes are kept: csv's default dialect would strip them from this prompt.
    giggle = [p.text for p in prompts if "G I G G L E" in p.text]
    assert giggle and all(t.startswith('"G I G G L E"') for t in giggle)


def test_tsv_of_the_same_form(tmp_path):
    path = tmp_path / "mine.tsv"
    path.write_text('Prompt\tCategory\tChallenge\tNote\n'
                    '"quoted" start\tArts\tStyle & Format\t\n'
                    'a cat\tAnimals\tBasic\n'          # missing trailing cell is fine
                    'tab\tFood & Beverage\tBasic\tx\n\n', encoding="utf-8")
    prompts = prompts_lib.load_prompts(str(path))
    assert [p.text for p in prompts] == ['"quoted" start', "a cat", "tab"]
    assert prompts[0].note is None and prompts[2].note == "x"
    assert prompts[1].category == "Animals" and prompts[1].challenge == "Basic"
    only_prompt = tmp_path / "only.tsv"
    only_prompt.write_text("Prompt\nx\n", encoding="utf-8")
    assert prompts_lib.load_prompts(str(only_prompt))[0].category is None


def test_text_file_one_prompt_per_line(tmp_path):
    path = tmp_path / "p.txt"
    text = "\ufeffa red circle\r\ntwo blue squares  \nüber café ☕\n\n"
    path.write_bytes(text.encode("utf-8"))
    prompts = prompts_lib.load_prompts(str(path))
    assert [p.text for p in prompts] == ["a red circle", "two blue squares", "über café ☕"]
    assert prompts[1].source == "p.txt:2"


def test_select_is_balanced_and_deterministic(parti_path):
    prompts = prompts_lib.load_prompts("partiprompts")
    subset = prompts_lib.load_prompts("partiprompts", limit=24)
    assert len(subset) == 24
    assert collections.Counter(p.category for p in subset) == {c: 2 for c in
                                                               {p.category for p in prompts}}
    assert subset == prompts_lib.select(prompts, 24)
    # File order is kept.
    index = {id(p): i for i, p in enumerate(prompts)}
    positions = [index[id(p)] for p in prompts_lib.select(prompts, 24)]
    assert positions == sorted(positions)
    plain = [prompts_lib.Prompt(str(i)) for i in range(5)]
    assert [p.text for p in prompts_lib.select(plain, 3)] == ["0", "1", "2"]


@pytest.mark.parametrize("content,match", [
    (b"", r"empty\.txt' is empty"),
    (b"\n \n", r"empty\.txt' is empty"),
    (b"first\n\nthird\n", r"line 2 is empty"),
    (b"first\n   \nthird\n", r"line 2 is empty"),
    (b"ok line\ncaf\xe9\n", r"not UTF-8: byte 0xe9 at byte offset 11 \(line 2\).*UTF-8"),
])
def test_bad_text_files(tmp_path, content, match):
    path = tmp_path / "empty.txt"
    path.write_bytes(content)
    with pytest.raises(ZooError, match=match):
        prompts_lib.load_prompts(str(path))


def test_bad_tsv_files(tmp_path):
    path = tmp_path / "p.tsv"
    path.write_text("Text\tCategory\nx\ty\n", encoding="utf-8")
    with pytest.raises(ZooError, match=r"no 'Prompt' column.*found: 'Text', 'Category'"):
        prompts_lib.load_prompts(str(path))
    path.write_text("Prompt\tCategory\na\tb\n\tArts\n", encoding="utf-8")
    with pytest.raises(ZooError, match=r"line 3 has an empty prompt"):
        prompts_lib.load_prompts(str(path))
    path.write_text("Prompt\tCategory\n", encoding="utf-8")
    with pytest.raises(ZooError, match=r"header but no prompts"):
        prompts_lib.load_prompts(str(path))


def test_missing_and_bad_specs(tmp_path, monkeypatch):
    with pytest.raises(ZooError, match=r"'nope\.txt' does not exist.*partiprompts, shapes"):
        prompts_lib.load_prompts("nope.txt")
    with pytest.raises(ZooError, match="is a directory"):
        prompts_lib.load_prompts(str(tmp_path))
    with pytest.raises(ZooError, match="prompt set must be"):
        prompts_lib.load_prompts("  ")
    monkeypatch.setenv(prompts_lib.PARTIPROMPTS_ENV, str(tmp_path / "P.tsv"))
    with pytest.raises(ZooError, match=r"PartiPrompts file .*P\.tsv' not found \(\$ZOO_PARTI"
                                       r"PROMPTS names it\).*--prompts"):
        prompts_lib.load_prompts("partiprompts")
    path = tmp_path / "p.txt"
    path.write_text("a\nb\n", encoding="utf-8")
    with pytest.raises(ZooError, match="at least 1, got 0"):
        prompts_lib.load_prompts(str(path), limit=0)
