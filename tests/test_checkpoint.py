"""Checkpoints (zoo.train.checkpoint): atomic saves, manifests, keep policy, corrupt fallback."""

import errno
import json
import os

import numpy as np
import pytest
import tensorflow as tf

import tiny_task
from zoo.errors import ZooError
from zoo.train import checkpoint as ckpt_lib
from zoo.train.loop import load_task, train


def _manager(tmp_path, **kw):
    v = tf.Variable([1.0, 2.0, 3.0])
    return v, ckpt_lib.CheckpointManager(tf.train.Checkpoint(v=v), str(tmp_path), **kw)


def test_save_writes_a_verified_directory(tmp_path):
    v, m = _manager(tmp_path)
    path = m.save(7)
    assert path == str(tmp_path / "checkpoints" / "ckpt-7")
    manifest = ckpt_lib.verify(path)
    assert manifest["step"] == 7
    assert set(manifest["files"]) == set(os.listdir(path)) - {"manifest.json"}
    assert not [n for n in os.listdir(tmp_path / "checkpoints") if "tmp" in n]
    v.assign([0.0, 0.0, 0.0])
    m.restore(7)
    np.testing.assert_array_equal(v.numpy(), [1.0, 2.0, 3.0])


def test_keep_policy_last_n_plus_every_k(tmp_path):
    _, m = _manager(tmp_path, keep_last=2, keep_every=4)
    for step in range(1, 10):
        m.save(step)
    assert m.steps() == [4, 8, 9]
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["ckpt-4", "ckpt-8", "ckpt-9"]


def _data_file(path):
    return os.path.join(path, [n for n in os.listdir(path) if ".data-" in n][0])


@pytest.mark.parametrize("damage", ["truncate", "flip", "manifest"])
def test_corrupt_latest_is_named_and_skipped(tmp_path, damage):
    _, m = _manager(tmp_path)
    m.save(1)
    latest = m.save(2)
    if damage == "truncate":
        with open(_data_file(latest), "r+b") as f:
            f.truncate(3)
    elif damage == "flip":  # same size, different bytes: only the CRC notices
        with open(_data_file(latest), "r+b") as f:
            first = f.read(1)
            f.seek(0)
            f.write(bytes([first[0] ^ 0xFF]))
    else:
        os.remove(os.path.join(latest, "manifest.json"))
    reports = []
    step, problems = ckpt_lib.latest_valid(str(tmp_path), report=reports.append)
    assert step == 1
    assert len(problems) == 1 and "ckpt-2" in problems[0] and "falling back" in problems[0]
    assert reports and "ckpt-2" in reports[0]
    if damage != "manifest":
        with pytest.raises(ckpt_lib.CorruptCheckpointError, match="ckpt-2"):
            ckpt_lib.verify(latest)


def test_unfinished_write_is_ignored_and_cleaned(tmp_path):
    _, m = _manager(tmp_path)
    m.save(1)
    partial = tmp_path / "checkpoints" / "ckpt-2.tmp-12345"
    partial.mkdir()
    (partial / "ckpt.index").write_bytes(b"half")
    assert ckpt_lib.latest_valid(str(tmp_path))[0] == 1
    assert m.clean_partial() == ["ckpt-2.tmp-12345"]
    assert not partial.exists() and m.steps() == [1]


def test_training_falls_back_from_corrupt_latest_and_keeps_it(tmp_path, capsys):
    kw = dict(batch_size=4, checkpoint_every=5, progress=False, summary_every=0,
              image_summary_every=0)
    train(tiny_task.TinyRegression(), str(tmp_path / "ref"), steps=15, **kw)
    train(tiny_task.TinyRegression(), str(tmp_path / "run"), steps=10, **kw)
    latest = tmp_path / "run" / "checkpoints" / "ckpt-10"
    with open(_data_file(str(latest)), "r+b") as f:
        f.truncate(10)
    corrupt_bytes = open(_data_file(str(latest)), "rb").read()
    r = train(tiny_task.TinyRegression(), str(tmp_path / "run"), steps=15, **kw)
    err = capsys.readouterr().err
    assert "ckpt-10" in err and "falling back" in err and "truncated" in err
    assert r.start_step == 5
    # the corrupt checkpoint was moved aside (not deleted) when step 10 was saved again
    aside = tmp_path / "run" / "checkpoints" / "ckpt-10.corrupt"
    assert open(_data_file(str(aside)), "rb").read() == corrupt_bytes
    ref = load_task(tmp_path / "ref")
    for a, b in zip(ref.weights(), r.task.weights()):
        np.testing.assert_allclose(a, b, atol=1e-6, rtol=0)


def test_load_task_skips_corrupt_latest(tmp_path):
    train(tiny_task.TinyRegression(), str(tmp_path), steps=6, batch_size=4, checkpoint_every=3,
          progress=False, summary_every=0, image_summary_every=0)
    manifest = tmp_path / "checkpoints" / "ckpt-6" / "manifest.json"
    data = json.loads(manifest.read_text())
    name = next(iter(data["files"]))
    data["files"][name][0] += 1
    manifest.write_text(json.dumps(data))
    assert load_task(tmp_path).restored_step == 3


def test_failed_write_is_one_line_and_keeps_earlier_checkpoints(tmp_path, monkeypatch):
    _, m = _manager(tmp_path)
    m.save(1)
    before = sorted(os.listdir(tmp_path / "checkpoints" / "ckpt-1"))

    def disk_full(path, chunk=0):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckpt_lib, "_crc32", disk_full)
    with pytest.raises(ZooError, match=r"could not write checkpoint ckpt-2 .*No space left on "
                                       r"device.*latest: ckpt-1"):
        m.save(2)
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["ckpt-1"]  # no leftovers
    assert sorted(os.listdir(tmp_path / "checkpoints" / "ckpt-1")) == before
