"""Every tool: `--help` works, and bad gin input fails with one line and exit code 1."""

import re
from pathlib import Path

import pytest

from helpers_tools import ROOT, run_tool


def _tools():
    text = (ROOT / "setup.py").read_text()
    names = re.search(r"TOOLS = \[(.*?)\]", text, re.S).group(1)
    return re.findall(r'"(\w+)"', names)


TOOLS = _tools()
GIN_TOOLS = [t for t in TOOLS if t not in ("list",)]


def test_every_tool_has_wrapper_and_module():
    for t in TOOLS:
        assert (ROOT / "tools" / f"{t}.py").exists(), t
        assert (ROOT / "zoo" / "tools" / f"{t}.py").exists(), t


@pytest.mark.parametrize("tool", TOOLS)
def test_help(tool):
    r = run_tool(tool, "--help")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "--gin_file" in r.stdout + r.stderr


def _assert_one_line_error(r, *needles):
    assert r.returncode == 1, (r.returncode, r.stdout[-1000:], r.stderr[-3000:])
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    errors = [line for line in r.stderr.splitlines() if ": error: " in line]
    assert len(errors) == 1, r.stderr[-3000:]
    for n in needles:
        assert n in errors[0], errors[0]


@pytest.mark.parametrize("tool", GIN_TOOLS)
def test_missing_gin_file(tool, tmp_path):
    r = run_tool(tool, "--gin_file=no_such_file.gin", f"--model_dir={tmp_path / 'm'}")
    _assert_one_line_error(r, "no_such_file.gin", "not found")


@pytest.mark.parametrize("tool", GIN_TOOLS)
def test_typo_in_binding(tool, tmp_path):
    r = run_tool(tool, "--gin_bindings=no_such_component.kernel_size = 3",
                 f"--model_dir={tmp_path / 'm'}")
    _assert_one_line_error(r, "no_such_component")


def test_list_prints_kind_name_summary():
    r = run_tool("list")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines and all(re.match(r"^[a-z_]+ \S+", line) for line in lines)


def test_list_unknown_kind():
    r = run_tool("list", "atention")
    _assert_one_line_error(r, "unknown component kind 'atention'", "attention")


def test_list_params_prints_each_side_of_a_tokenizer_as_the_papers_count():
    """The ViT-VQGAN table counts one side (Small: 32M), Parti's Table 1 the layers without
    embeddings (350M): zoo-list --params prints those next to the total."""
    r = run_tool("list", "image_tokenizer", "model", "--params")
    assert r.returncode == 0, r.stderr[-2000:]
    lines = {line.split()[1]: line for line in r.stdout.splitlines()}

    def millions(text):
        return float(text[:-1]) * {"K": 1e-3, "M": 1.0, "B": 1e3}[text[-1]]

    sides = re.search(r"\(([\d,]+)\) params: encoder (\S+) \+ quantizer (\S+) \+ decoder (\S+)$",
                      lines["vit_vqgan_small"])
    assert sides, lines["vit_vqgan_small"]
    total = int(sides.group(1).replace(",", "")) / 1e6
    encoder, quantizer, decoder = (millions(sides.group(i)) for i in (2, 3, 4))
    assert abs(encoder + quantizer + decoder - total) < 0.02
    assert abs(encoder / 32 - 1) < 0.05 and abs(decoder / 32 - 1) < 0.05  # the paper's 32M
    large = re.search(r"encoder (\S+) \+ quantizer \S+ \+ decoder (\S+)$",
                      lines["vit_vqgan_small_large"])
    assert millions(large.group(1)) == encoder and abs(millions(large.group(2)) / 599 - 1) < 0.05
    parti = re.search(r"params \((\S+) without embeddings\)$", lines["parti_350m"])
    assert parti and abs(millions(parti.group(1)) / 350 - 1) < 0.05, lines["parti_350m"]
