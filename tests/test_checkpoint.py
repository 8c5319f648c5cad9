"""Checkpoints (zoo.train.checkpoint): manifests as commit records, keep policy, corrupt and
unfinished checkpoints, on a local disk and on TF's in-memory `ram://` file system (a
tf.io.gfile scheme without atomic directory rename, as an object store)."""

import errno
import itertools
import json
import os

import numpy as np
import pytest
import tensorflow as tf

import tiny_task
from zoo.errors import ZooError
from zoo.train import checkpoint as ckpt_lib
from zoo.train import storage
from zoo.train.loop import load_task, train

_RAM = itertools.count()


@pytest.fixture(params=["local", "ram"])
def root(request, tmp_path):
    """A model directory: a local path, or a fresh ram:// one."""
    if request.param == "local":
        return str(tmp_path)
    return f"ram://test_checkpoint/{os.getpid()}-{next(_RAM)}"


def _manager(root, **kw):
    v = tf.Variable([1.0, 2.0, 3.0])
    return v, ckpt_lib.CheckpointManager(tf.train.Checkpoint(v=v), root, **kw)


def _rewrite(path, fn):
    """Replaces a file's bytes with fn(bytes), through tf.io.gfile."""
    data = storage.read_bytes(path)
    storage.remove(path)  # ram:// appends to an existing file
    with tf.io.gfile.GFile(path, "wb") as f:
        f.write(fn(data))


def test_save_writes_a_verified_directory(root):
    v, m = _manager(root)
    path = m.save(7)
    assert path == storage.join(root, "checkpoints", "ckpt-7")
    manifest = ckpt_lib.verify(path)
    assert manifest["step"] == 7
    assert set(manifest["files"]) == set(storage.listdir(path)) - {"manifest.json"}
    assert storage.listdir(storage.join(root, "checkpoints")) == ["ckpt-7"]
    v.assign([0.0, 0.0, 0.0])
    m.restore(7)
    np.testing.assert_array_equal(v.numpy(), [1.0, 2.0, 3.0])


def test_keep_policy_last_n_plus_every_k(root):
    _, m = _manager(root, keep_last=2, keep_every=4)
    for step in range(1, 10):
        m.save(step)
    assert m.steps() == [4, 8, 9]
    assert storage.listdir(storage.join(root, "checkpoints")) == ["ckpt-4", "ckpt-8", "ckpt-9"]


def _data_file(path):
    return storage.join(path, [n for n in storage.listdir(path) if ".data-" in n][0])


@pytest.mark.parametrize("damage", ["truncate", "flip", "manifest"])
def test_corrupt_latest_is_named_and_skipped(root, damage):
    _, m = _manager(root)
    m.save(1)
    latest = m.save(2)
    if damage == "truncate":
        _rewrite(_data_file(latest), lambda b: b[:3])
    elif damage == "flip":  # same size, different bytes: only the CRC notices
        _rewrite(_data_file(latest), lambda b: bytes([b[0] ^ 0xFF]) + b[1:])
    else:
        _rewrite(storage.join(latest, "manifest.json"), lambda b: b[:10])
    reports = []
    step, problems = ckpt_lib.latest_valid(root, report=reports.append)
    assert step == 1
    assert len(problems) == 1 and "ckpt-2" in problems[0] and "falling back" in problems[0]
    assert reports and "ckpt-2" in reports[0]
    with pytest.raises(ckpt_lib.CorruptCheckpointError, match="ckpt-2"):
        ckpt_lib.verify(latest)


def test_unfinished_writes_are_ignored_and_cleaned(root):
    """A directory without its manifest (the process died before the commit record) is no
    checkpoint: never taken for the latest, removed at the next start."""
    _, m = _manager(root)
    m.save(1)
    d = storage.join(root, "checkpoints")
    storage.write_text(storage.join(d, "ckpt-3", "ckpt.index"), "half")
    storage.write_text(storage.join(d, "ckpt-2.tmp-12345", "ckpt.index"), "half")  # old style
    assert ckpt_lib.latest_valid(root) == (1, [])
    assert m.steps() == [1]
    assert m.clean_partial() == ["ckpt-2.tmp-12345", "ckpt-3"]
    assert storage.listdir(d) == ["ckpt-1"]


def test_a_save_that_dies_before_its_manifest_is_not_a_checkpoint(root, monkeypatch):
    """Every write of a save up to the manifest, interrupted: the previous checkpoint stays
    the latest; the next start cleans up and the save succeeds."""
    v, m = _manager(root)
    m.save(1)

    class Died(Exception):
        pass

    def die(self, step, path):
        raise Died()

    monkeypatch.setattr(ckpt_lib.CheckpointManager, "_commit", die)
    v.assign([9.0, 9.0, 9.0])
    with pytest.raises(Died):
        m.save(2)
    assert m.steps() == [1] and ckpt_lib.latest_valid(root)[0] == 1
    assert ckpt_lib.unfinished(root) == ["ckpt-2"]
    monkeypatch.undo()
    assert m.restore_latest() == 1
    np.testing.assert_array_equal(v.numpy(), [1.0, 2.0, 3.0])
    m.clean_partial()
    v.assign([9.0, 9.0, 9.0])
    m.save(2)
    assert m.steps() == [1, 2] and not ckpt_lib.unfinished(root)


def test_training_falls_back_from_corrupt_latest_and_keeps_it(tmp_path, root, capsys):
    kw = dict(batch_size=4, checkpoint_every=5, progress=False, summary_every=0,
              image_summary_every=0)
    run = storage.join(root, "run")
    train(tiny_task.TinyRegression(), str(tmp_path / "ref"), steps=15, **kw)
    train(tiny_task.TinyRegression(), run, steps=10, **kw)
    latest = storage.join(run, "checkpoints", "ckpt-10")
    _rewrite(_data_file(latest), lambda b: b[:10])
    corrupt_bytes = storage.read_bytes(_data_file(latest))
    r = train(tiny_task.TinyRegression(), run, steps=15, **kw)
    err = capsys.readouterr().err
    assert "ckpt-10" in err and "falling back" in err and "truncated" in err
    assert r.start_step == 5
    # the corrupt checkpoint was moved aside (not deleted) when step 10 was saved again
    aside = storage.join(run, "checkpoints", "ckpt-10.corrupt")
    assert storage.read_bytes(_data_file(aside)) == corrupt_bytes
    ref = load_task(tmp_path / "ref")
    for a, b in zip(ref.weights(), r.task.weights()):
        np.testing.assert_allclose(a, b, atol=1e-6, rtol=0)


def test_load_task_skips_corrupt_latest(root):
    train(tiny_task.TinyRegression(), root, steps=6, batch_size=4, checkpoint_every=3,
          progress=False, summary_every=0, image_summary_every=0)
    manifest = storage.join(root, "checkpoints", "ckpt-6", "manifest.json")
    data = json.loads(storage.read_text(manifest))
    name = next(iter(data["files"]))
    data["files"][name][0] += 1
    storage.write_text(manifest, json.dumps(data))
    assert load_task(root).restored_step == 3


def test_failed_write_is_one_line_and_keeps_earlier_checkpoints(root, monkeypatch):
    _, m = _manager(root)
    m.save(1)
    before = storage.listdir(storage.join(root, "checkpoints", "ckpt-1"))

    def disk_full(path, chunk=0):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckpt_lib, "_crc32", disk_full)
    with pytest.raises(ZooError, match=r"could not write checkpoint ckpt-2 .*No space left on "
                                       r"device.*latest: ckpt-1"):
        m.save(2)
    assert storage.listdir(storage.join(root, "checkpoints")) == ["ckpt-1"]  # no leftovers
    assert storage.listdir(storage.join(root, "checkpoints", "ckpt-1")) == before


class _Crash(Exception):
    """Stands for the process dying at that point (nothing after it runs)."""


@pytest.mark.parametrize("point", ["tf_write", "before_manifest", "manifest_write",
                                   "keep_policy"])
def test_a_save_interrupted_at_each_write_keeps_a_valid_latest(root, monkeypatch, point):
    """Interrupt the save of step 3 at each of its writes: the newest valid checkpoint is
    step 2 (or 3 once its manifest is written) and restores the values saved with it; the
    next start cleans up and saves again."""
    v, m = _manager(root, keep_last=1)
    v.assign([2.0, 2.0, 2.0])
    m.save(2)
    v.assign([3.0, 3.0, 3.0])

    def crash(*args, **kwargs):
        raise _Crash(point)

    if point == "tf_write":
        monkeypatch.setattr(tf.train.Checkpoint, "write", crash)
    elif point == "before_manifest":
        monkeypatch.setattr(ckpt_lib.CheckpointManager, "_commit", crash)
    elif point == "manifest_write":
        monkeypatch.setattr(storage, "write_text", crash)
    else:  # the keep policy uncommits checkpoint 2, then dies before removing its files
        monkeypatch.setattr(storage, "rmtree", crash)
    with pytest.raises(_Crash):
        m.save(3)
    monkeypatch.undo()
    committed = 3 if point == "keep_policy" else 2
    assert ckpt_lib.latest_valid(root) == (committed, [])
    v.assign([0.0, 0.0, 0.0])
    assert m.restore_latest() == committed
    np.testing.assert_array_equal(v.numpy(), [float(committed)] * 3)
    m.clean_partial()
    assert not ckpt_lib.unfinished(root)
    m.save(4)
    assert m.steps() == [4]
