"""zoo-train (zoo/tools/train.py), in process: flags override gin, and each bad input is one
line on stderr, exit code 1, and the model directory's checkpoints untouched.

(End-to-end subprocess runs of the tool are in test_resume.py; --help, a missing gin file and an
unknown configurable for every tool are in test_tools.py.)
"""

import json
import os

import pytest
from absl import flags

import tiny_task
from zoo.tools import common
from zoo.tools import train as train_tool

GIN = """
train.task = 'test_tiny_regression'
train.steps = 4
train.batch_size = 4
train.checkpoint_every = 2
train.summary_every = 0
train.image_summary_every = 0
test_tiny_regression.hidden = 6
"""


@pytest.fixture
def tool(gin_clean, tmp_path, capfd, monkeypatch):
    tiny_task.register()

    def call(*args):
        flags.FLAGS.unparse_flags()
        capfd.readouterr()
        argv = ["zoo-train", "--noprogress", *map(str, args)]
        monkeypatch.setattr("sys.argv", argv)  # what run.json records as the command
        try:
            common.run(train_tool.main, argv=argv)
            code = 0
        except SystemExit as e:
            code = e.code or 0
        out, err = capfd.readouterr()
        return code, out, err

    yield call
    tiny_task.unregister()
    flags.FLAGS.unparse_flags()


@pytest.fixture
def trained(tool, tmp_path):
    """A model dir with checkpoints 2 and 4, and a snapshot function of its files."""
    gin_file = tmp_path / "run.gin"
    gin_file.write_text(GIN)
    model_dir = tmp_path / "m"
    code, out, err = tool(f"--gin_file={gin_file}", f"--model_dir={model_dir}", "--seed=5")
    assert code == 0, err[-2000:]

    def snapshot():
        files = {}
        for root, _, names in os.walk(model_dir):
            for n in names:
                p = os.path.join(root, n)
                if "checkpoints" in p or n == "run.json":
                    files[p] = open(p, "rb").read()
        return files

    return gin_file, model_dir, snapshot


def _one_line_error(code, err, *needles):
    assert code == 1, err[-2000:]
    assert "Traceback" not in err, err[-3000:]
    lines = [line for line in err.splitlines() if ": error: " in line]
    assert len(lines) == 1, err[-3000:]
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def test_trains_with_flag_overrides_and_records_them(trained):
    gin_file, model_dir, _ = trained
    info = json.loads((model_dir / "run.json").read_text())
    assert info["seed"] == 5 and info["task"] == tiny_task.NAME
    assert info["task_config"]["hidden"] == 6
    assert "--seed=5" in info["command"]
    assert info["sessions"][0]["args"]["steps"] == 4
    assert "test_tiny_regression.hidden = 6" in (model_dir / "operative_config.gin").read_text()
    assert sorted(os.listdir(model_dir / "checkpoints")) == ["ckpt-2", "ckpt-4"]


def test_steps_flag_resumes_to_new_total(tool, trained):
    gin_file, model_dir, _ = trained
    code, out, err = tool(f"--gin_file={gin_file}", f"--model_dir={model_dir}", "--seed=5",
                          "--steps=6")
    assert code == 0, err[-2000:]
    assert "steps 4->6" in out and "resumed from" in err


@pytest.mark.parametrize("row", ["gin_syntax", "unknown_binding", "other_model",
                                 "other_size", "other_seed", "zero_batch", "no_task"])
def test_bad_input_is_one_line_and_leaves_checkpoints(tool, trained, tmp_path, row):
    gin_file, model_dir, snapshot = trained
    before = snapshot()
    args = [f"--model_dir={model_dir}", "--seed=5"]
    if row == "gin_syntax":
        bad = tmp_path / "bad.gin"
        bad.write_text(GIN + "train.keep_last = = 3\n")
        line = _one_line_error(*_call(tool, bad, args), "gin syntax error", "bad.gin", "line 9")
        bad.write_text(GIN + "train.keep_last = (3\n")  # unclosed: gin reports the EOF line
        _one_line_error(*_call(tool, bad, args), "gin syntax error", "bad.gin", "line 10")
    elif row == "unknown_binding":
        line = _one_line_error(*_call(tool, gin_file, args + [
            "--gin_bindings=test_tiny_regression.hiden = 3"]), "'hiden'", "did you mean 'hidden'")
    elif row == "other_model":
        line = _one_line_error(*_call(tool, gin_file, args + [
            f"--gin_bindings=train.task = '{tiny_task.OTHER_NAME}'"]),
            f"written by task '{tiny_task.NAME}', not '{tiny_task.OTHER_NAME}'")
    elif row == "other_size":
        line = _one_line_error(*_call(tool, gin_file, args + [
            "--gin_bindings=test_tiny_regression.hidden = 64"]), "hidden: 6 -> 64")
    elif row == "other_seed":
        line = _one_line_error(*_call(tool, gin_file, [f"--model_dir={model_dir}",
                                                       "--seed=6"]), "--seed=5")
    elif row == "zero_batch":
        line = _one_line_error(*_call(tool, gin_file, args + ["--batch_size=0"]),
                               "batch_size must be an integer >= 1")
    else:
        empty = tmp_path / "empty.gin"
        empty.write_text("train.steps = 3\ntrain.batch_size = 2\n")
        line = _one_line_error(*_call(tool, empty, [f"--model_dir={tmp_path / 'new'}"]),
                               "no task given", "train.task")
    assert "In call to configurable" not in line
    assert snapshot() == before


def _call(tool, gin_file, args):
    code, _, err = tool(f"--gin_file={gin_file}", *args)
    return code, err


def test_zoo_train_asks_for_onednn_before_tensorflow_loads(tool, tmp_path, monkeypatch):
    # TensorFlow reads TF_ENABLE_ONEDNN_OPTS once, at import: zoo-train sets it first thing
    # (its Eigen kernels, the default on CPUs without AVX-512 VNNI / AMX, train 1.3x slower).
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    gin_file = tmp_path / "run.gin"
    gin_file.write_text(GIN)
    code, _, err = tool(f"--gin_file={gin_file}", f"--model_dir={tmp_path / 'm'}",
                        "--steps=0")
    assert os.environ.get("TF_ENABLE_ONEDNN_OPTS") == "1", err[-2000:]
    # A setting of the user's is kept (0: Eigen kernels).
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0")
    tool(f"--gin_file={gin_file}", f"--model_dir={tmp_path / 'm2'}", "--steps=0")
    assert os.environ["TF_ENABLE_ONEDNN_OPTS"] == "0"


@pytest.mark.parametrize("setting,expected", [(None, "True"), ("0", "False")])
def test_prefer_onednn_turns_on_tensorflows_onednn_kernels(setting, expected):
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    if setting is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = setting
    code = ("from zoo.tools import common; common.prefer_onednn(); "
            "from tensorflow.python.util import _pywrap_util_port as port; "
            "print('onednn', port.IsMklEnabled())")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"onednn {expected}" in r.stdout, r.stdout
