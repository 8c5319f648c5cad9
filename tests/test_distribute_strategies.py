"""zoo.distribute strategies and flags: start-up errors, per-replica data, a two-process
MultiWorkerMirroredStrategy run on localhost, and the flags through zoo-train."""

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from zoo import distribute
from zoo.errors import ZooError

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent


def test_unknown_strategy_suggests():
    with pytest.raises(ZooError, match="did you mean 'mirrored'"):
        distribute.get(strategy="mirored")


def test_tpu_requested_without_a_tpu(monkeypatch):
    monkeypatch.delenv("TPU_NAME", raising=False)
    with pytest.raises(ZooError) as e:
        distribute.get(strategy="tpu")
    assert "found 0 devices" in str(e.value) and "--tpu=NAME" in str(e.value)


def test_multi_worker_needs_a_cluster(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ZooError, match="TF_CONFIG"):
        distribute.get(strategy="multi_worker")
    with pytest.raises(ZooError, match="--worker_index=2 is outside the 2 workers"):
        distribute.get(strategy="multi_worker", workers=["127.0.0.1:1", "127.0.0.1:2"],
                       worker_index=2)


def test_mirrored_on_more_devices_than_exist():
    with pytest.raises(ZooError, match="16 devices, but only 8 CPU device"):
        distribute.get(strategy="mirrored", num_devices=16)


def test_mirrored_replicas_get_their_rows_of_each_global_batch():
    dist = distribute.get(strategy="mirrored", num_devices=4)
    assert dist.num_replicas == 4
    ds = tf.data.Dataset.range(3).map(lambda s: {"x": tf.range(8) + 100 * tf.cast(s, tf.int32),
                                                "s": s})
    batches = iter(dist.distribute_dataset(ds))
    for step in range(2):
        batch = next(batches)
        parts = dist.strategy.experimental_local_results(batch["x"])
        got = np.concatenate([p.numpy() for p in parts])
        np.testing.assert_array_equal(got, np.arange(8) + 100 * step)
        np.testing.assert_array_equal(dist.gather(batch["x"]).numpy(), got)
    with pytest.raises(ZooError, match="not divisible by the 4 data-parallel replicas"):
        dist.check_batch_size(6)


def _free_ports(n):
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


WORKER = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf
    tf.config.optimizer.set_experimental_options({{"disable_meta_optimizer": True}})  # compiles faster
    sys.path.insert(0, {tests!r})
    from distribute_helpers import TinyPartiTask, host_values
    from zoo import distribute
    from zoo.train.loop import train
    dist = distribute.get(strategy="multi_worker", workers={workers!r}, worker_index={index})
    result = train(task=TinyPartiTask(), model_dir={model_dir!r}, steps=3, batch_size=8,
                   seed=0, distribution=dist, progress=False, summary_every=1,
                   checkpoint_every=3)
    np.savez({out!r}, *host_values(dist, result.task.model.weights))
    print("RESULT", json.dumps(dict(replicas=dist.num_replicas, chief=dist.is_chief,
                                    loss=result.losses["main"])))
""")


@pytest.mark.slow
def test_two_worker_multi_worker_mirrored_run_on_localhost(tmp_path):
    from distribute_helpers import TinyPartiTask, host_values
    from zoo.train.loop import train
    workers = [f"127.0.0.1:{p}" for p in _free_ports(2)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT)}
    env.pop("TF_CONFIG", None)
    procs = []
    for i in range(2):
        code = WORKER.format(tests=str(TESTS), workers=workers, index=i,
                             model_dir=str(tmp_path / "run"), out=str(tmp_path / f"w{i}.npz"))
        procs.append(subprocess.Popen([sys.executable, "-c", code], env=env, cwd=str(tmp_path),
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True))
    results = []
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
        line = [x for x in out.splitlines() if x.startswith("RESULT ")][-1]
        results.append(json.loads(line[len("RESULT "):]))
    assert [r["replicas"] for r in results] == [2, 2]
    assert [r["chief"] for r in results] == [True, False]
    assert (tmp_path / "run" / "checkpoints" / "ckpt-3").is_dir()
    w0, w1 = (np.load(tmp_path / f"w{i}.npz") for i in range(2))
    for k in w0.files:
        np.testing.assert_array_equal(w0[k], w1[k])
    # The same run on one device: same loss and weights.
    single = train(task=TinyPartiTask(), model_dir=str(tmp_path / "single"), steps=3,
                   batch_size=8, seed=0, progress=False, checkpoint_every=3)
    assert abs(single.losses["main"] - results[0]["loss"]) < 1e-4
    ref = host_values(distribute.get(), single.task.model.weights)
    for k, b in zip(w0.files, ref):
        np.testing.assert_allclose(w0[k], b, atol=1e-4)


def _tool(args, tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT),
           "ZOO_DISABLE_PLUGIN_AUTOLOAD": "1"}
    return subprocess.run([sys.executable, "-m", "tools.train", *args], cwd=str(ROOT),
                          env=env, capture_output=True, text=True, timeout=600)


def test_train_tool_reports_a_mesh_that_does_not_fit_the_devices(tmp_path):
    proc = _tool(["--gin_bindings=train.task='parti'", f"--model_dir={tmp_path / 'run'}",
                  "--virtual_devices=8", "--mesh=batch:4,model:4", "--steps=1",
                  "--batch_size=8"], tmp_path)
    assert proc.returncode == 1, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert "mesh batch:4,model:4 has 4 x 4 = 16 devices but 8 CPU device(s)" in last, last
