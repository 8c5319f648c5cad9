"""Kill-and-resume (issue 9): `zoo-train` subprocesses SIGKILLed after a checkpoint and during a
checkpoint write, restarted with the same command, end with the weights of an uninterrupted run.

The kills are made deterministic by tests/kill_hooks.py, which runs zoo-train with two
methods of the checkpoint manager wrapped (the production code has no hook): the process
SIGKILLs itself right after checkpoint N is complete ("killafter:N") or inside the save of
checkpoint N, after TF wrote the files and before the manifest ("kill:N"), or pauses there
("sleep:N:seconds") so that the test SIGKILLs it from outside.
"""

import os
import signal
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import tiny_task
from helpers_tools import ROOT, make_plugin_dist, tool_env

KILL_HOOKS = str(ROOT / "tests" / "kill_hooks.py")
from zoo.train import checkpoint as ckpt_lib
from zoo.train import run_info
from zoo.train.loop import load_task, task_class, train

GIN = """
train.task = 'test_tiny_regression'
train.steps = 30
train.batch_size = 8
train.checkpoint_every = 10
train.summary_every = 5
test_tiny_regression.dropout = 0.5
test_tiny_regression.two_groups = True
"""


def _command(model_dir, gin_file, hook=None):
    """zoo-train (`python -m tools.train`, or through tests/kill_hooks.py with a hook) with
    the same flags every time."""
    tool = [KILL_HOOKS, hook] if hook else ["-m", "tools.train"]
    return [sys.executable, *tool, f"--gin_file={gin_file}", f"--model_dir={model_dir}",
            "--seed=1", "--noprogress"]


def _zoo_train(site, model_dir, gin_file, hook=None):
    return subprocess.run(_command(model_dir, gin_file, hook), cwd=ROOT, env=tool_env(site),
                          capture_output=True, text=True, timeout=300)


def test_kill_after_and_during_checkpoint_then_resume_matches_uninterrupted(tmp_path):
    site = make_plugin_dist(tmp_path / "site", "zoo_test_tiny", "tiny", "zoo_test_tiny_mod",
                            tiny_task.PLUGIN_SOURCE)
    gin_file = tmp_path / "run.gin"
    gin_file.write_text(GIN)
    model_dir = tmp_path / "run"

    # (a) SIGKILL right after checkpoint 10 is complete.
    r = _zoo_train(site, model_dir, gin_file, hook="killafter:10")
    assert r.returncode == -signal.SIGKILL, r.stderr[-3000:]
    assert ckpt_lib.list_steps(str(model_dir)) == [10]

    # (b) restarted with the same command, SIGKILLed from outside (as by a scheduler) while
    # it writes checkpoint 20: the hook makes the save pause there and say so.
    with open(tmp_path / "b.err", "w") as err:
        proc = subprocess.Popen(_command(model_dir, gin_file, "sleep:20:120"), cwd=ROOT,
                                env=tool_env(site), stdout=subprocess.PIPE, stderr=err,
                                text=True)
        try:
            for line in proc.stdout:
                if "in checkpoint write of step 20" in line:
                    os.kill(proc.pid, signal.SIGKILL)
                    break
            assert proc.wait(timeout=300) == -signal.SIGKILL
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.stdout.close()
    stderr = (tmp_path / "b.err").read_text()
    assert "resumed from" in stderr and "ckpt-10" in stderr
    assert ckpt_lib.unfinished(str(model_dir)) == ["ckpt-20"]  # files, no manifest
    assert ckpt_lib.list_steps(str(model_dir)) == [10]  # the half-written one is not a ckpt

    # restarted again: resumes from 10 (not the half-written 20) and finishes.
    r = _zoo_train(site, model_dir, gin_file)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "steps 10->30" in r.stdout
    assert not ckpt_lib.unfinished(str(model_dir))

    # An uninterrupted run with the same seed (in this process, same ops) gives the same weights.
    ref = train(tiny_task.TinyRegression(dropout=0.5, two_groups=True), str(tmp_path / "ref"),
                steps=30, batch_size=8, seed=1, checkpoint_every=10, progress=False,
                summary_every=0, image_summary_every=0)
    tiny_task.register()  # run.json names the task by its registry name
    try:
        resumed = load_task(model_dir)
    finally:
        tiny_task.unregister()
    assert resumed.restored_step == 30
    for a, b in zip(ref.task.weights(), resumed.weights()):
        np.testing.assert_allclose(a, b, atol=1e-6, rtol=0)


def _assert_same_checkpoints(a, b, atol=1e-6):
    """Every tensor (weights, optimizer slots, step, RNG state) of two checkpoints agrees."""
    ra, rb = tf.train.load_checkpoint(a), tf.train.load_checkpoint(b)
    keys = sorted(k for k in ra.get_variable_to_shape_map() if "OBJECT_GRAPH" not in k)
    assert keys == sorted(k for k in rb.get_variable_to_shape_map() if "OBJECT_GRAPH" not in k)
    for k in keys:
        x, y = ra.get_tensor(k), rb.get_tensor(k)
        if x.dtype.kind in "fc":
            np.testing.assert_allclose(x, y, atol=atol, rtol=0, err_msg=k)
        else:
            np.testing.assert_array_equal(x, y, err_msg=k)
    return len(keys)


def _zoo_train_in_process(model_dir, gin_file, capfd):
    """The same command as `_zoo_train`, run by zoo-train's main in this process."""
    from absl import flags

    from zoo.tools import common
    from zoo.tools import train as train_tool
    flags.FLAGS.unparse_flags()
    capfd.readouterr()
    try:
        common.run(train_tool.main, argv=["zoo-train", f"--gin_file={gin_file}",
                                          f"--model_dir={model_dir}", "--seed=1",
                                          "--noprogress"])
        code = 0
    except SystemExit as e:
        code = e.code or 0
    finally:
        flags.FLAGS.unparse_flags()
    out, err = capfd.readouterr()
    return code, out, err


def kill_and_resume(tmp_path, capfd, gin_text, steps, every):
    """Runs zoo-train in a subprocess SIGKILLed while writing its final checkpoint (so
    checkpoint steps-every is the last complete one), restarts the same command (in this
    process, to save a TF start-up), and compares the final checkpoint with an uninterrupted
    run of the same task config and seed. Returns the number of tensors compared."""
    gin_file = tmp_path / "run.gin"
    gin_file.write_text(gin_text)
    model_dir = tmp_path / "run"
    r = _zoo_train(None, model_dir, gin_file, hook=f"kill:{steps}")
    assert r.returncode == -signal.SIGKILL, r.stderr[-3000:]
    assert ckpt_lib.list_steps(str(model_dir))[-1] == steps - every
    code, out, err = _zoo_train_in_process(model_dir, gin_file, capfd)
    assert code == 0, err[-3000:]
    assert f"steps {steps - every}->{steps}" in out, out

    info = run_info.read(str(model_dir))
    keras.utils.set_random_seed(info["seed"])  # as zoo-train, which seeds before making it
    task = task_class(info["task"])(**info["task_config"])
    train(task, str(tmp_path / "ref"), steps=steps, batch_size=info["batch_size"],
          seed=info["seed"], checkpoint_every=every, progress=False, summary_every=0,
          image_summary_every=0)
    return _assert_same_checkpoints(ckpt_lib.checkpoint_prefix(str(model_dir), steps),
                                    ckpt_lib.checkpoint_prefix(str(tmp_path / "ref"), steps))


TOKENIZER_GIN = """
train.task = 'vit_vqgan'
train.steps = 4
train.batch_size = 2
train.checkpoint_every = 2
train.summary_every = 2
train.image_summary_every = 0
vit_vqgan.tokenizer = 'vit_vqgan_micro'
vit_vqgan.feature_network = 'tiny_conv'
vit_vqgan.warmup_steps = 2
vit_vqgan.total_steps = 10
"""


@pytest.mark.slow
def test_kill_and_resume_tokenizer_stage(tmp_path, gin_clean, capfd):
    """The real ViT-VQGAN task (generator + discriminator groups, quantizer usage state)."""
    assert kill_and_resume(tmp_path, capfd, TOKENIZER_GIN, steps=4, every=2) > 20



PARTI_GIN = """
train.task = 'parti'
train.steps = 4
train.batch_size = 2
train.checkpoint_every = 2
train.summary_every = 2
train.image_summary_every = 0
parti.model = 'parti_micro'
parti.image_tokenizer = 'vit_vqgan_micro'
parti.text_tokenizer = '{spm}'
"""


@pytest.mark.slow
def test_kill_and_resume_transformer_stage(tmp_path, gin_clean, capfd):
    """The real Parti task (Adafactor, condition dropping from (seed, step), text tokenized
    in-graph, image codes from a frozen tokenizer), at its micro size."""
    from zoo.data import shapes
    from zoo.tokenizers.spm_training import train_sentencepiece
    spm = train_sentencepiece([shapes.caption(0, i) for i in range(300)],
                              str(tmp_path / "spm.model"), vocab_size=60, shrink_to_fit=True)
    assert kill_and_resume(tmp_path, capfd, PARTI_GIN.format(spm=spm), steps=4, every=2) > 20
