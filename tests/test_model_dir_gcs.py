"""A model directory in a bucket: zoo-train on `gs://` (TensorFlow's own GCS file system,
pointed at tests/gcs_standin.py, a local object store behind a TLS proxy in this process) is
SIGKILLed after a checkpoint and inside a checkpoint write, resumed by new processes, and ends
with the weights of an uninterrupted run. An object store has no atomic rename: the manifest
written last is what commits a checkpoint (zoo/train/checkpoint.py)."""

import shutil
import signal
import subprocess
import sys

import pytest

import tiny_task
from gcs_standin import GcsStandin
from helpers_tools import ROOT, make_plugin_dist, tool_env
from test_resume import GIN, KILL_HOOKS, _assert_same_checkpoints
from zoo.train import checkpoint as ckpt_lib
from zoo.train.loop import train

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None,
                                reason="the GCS stand-in makes its certificate with openssl")

BUCKET = "zoo-test-bucket"


@pytest.mark.slow
def test_kill_and_resume_in_a_bucket_matches_uninterrupted(tmp_path):
    site = make_plugin_dist(tmp_path / "site", "zoo_test_tiny", "tiny", "zoo_test_tiny_mod",
                            tiny_task.PLUGIN_SOURCE)
    gin_file = tmp_path / "run.gin"
    gin_file.write_text(GIN)
    model_dir = f"gs://{BUCKET}/runs/tiny"
    with GcsStandin(tmp_path) as gcs:
        env = tool_env(site, **gcs.env())

        def zoo_train(hook=None):
            tool = [KILL_HOOKS, hook] if hook else ["-m", "tools.train"]
            return subprocess.run([sys.executable, *tool, f"--gin_file={gin_file}",
                                   f"--model_dir={model_dir}", "--seed=1", "--noprogress"],
                                  cwd=ROOT, env=env, capture_output=True, text=True,
                                  timeout=600)

        def names():
            return sorted(gcs.objects(BUCKET))

        r = zoo_train("killafter:10")
        assert r.returncode == -signal.SIGKILL, r.stderr[-3000:]
        assert "runs/tiny/checkpoints/ckpt-10/manifest.json" in names()
        assert "runs/tiny/run.json" in names()

        # Killed inside the save of 20: TF's files are in the bucket, the manifest is not.
        r = zoo_train("kill:20")
        assert r.returncode == -signal.SIGKILL, r.stderr[-3000:]
        assert "resumed from gs://" in r.stderr and "ckpt-10" in r.stderr, r.stderr[-3000:]
        assert "runs/tiny/checkpoints/ckpt-20/ckpt.index" in names()
        assert "runs/tiny/checkpoints/ckpt-20/manifest.json" not in names()

        r = zoo_train()
        assert r.returncode == 0, r.stderr[-3000:]
        assert "steps 10->30" in r.stdout, r.stdout
        done = names()
        assert "runs/tiny/checkpoints/ckpt-30/manifest.json" in done
        assert "runs/tiny/operative_config.gin" in done
        assert any(n.startswith("runs/tiny/train/events.out.tfevents") for n in done)
        assert not [n for n in done if n.startswith("runs/tiny/checkpoints/ckpt-20/")
                    and not n.endswith("/")] or "runs/tiny/checkpoints/ckpt-20/manifest.json" \
            in done  # the unfinished write was cleaned up or completed by the resumed run
        local = tmp_path / "downloaded"
        gcs.download(BUCKET, "runs/tiny", str(local))

    assert ckpt_lib.list_steps(str(local))[-1] == 30
    ckpt_lib.verify(ckpt_lib.checkpoint_path(str(local), 30))
    ref = tmp_path / "ref"
    train(tiny_task.TinyRegression(dropout=0.5, two_groups=True), str(ref), steps=30,
          batch_size=8, seed=1, checkpoint_every=10, progress=False, summary_every=0,
          image_summary_every=0)
    n = _assert_same_checkpoints(ckpt_lib.checkpoint_prefix(str(local), 30),
                                 ckpt_lib.checkpoint_prefix(str(ref), 30))
    assert n > 10
