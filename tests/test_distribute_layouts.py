"""zoo.distribute.layouts and zoo-layouts: per-weight layouts and bytes per device, no devices
of the mesh and no weights allocated."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from distribute_helpers import megatron_rules
from zoo.distribute.layouts import format_report, parse_bytes, plan_model
from zoo.errors import ZooError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def rules():
    return megatron_rules()


def test_micro_plan_shards_and_counts_bytes(rules):
    # 512 devices: far more than this machine has; nothing is placed on them.
    report = plan_model("parti_micro", "batch:128,model:4", rules)
    by_path = {r.plan.path: r for r in report.rows if r.plan.kind == "weight"}
    wi = by_path["parti/decoder/layer_0/mlp/wi/kernel"]  # [32, 64] float32 on (None, model)
    assert wi.plan.spec == (None, "model")
    assert (wi.params, wi.bytes_total, wi.bytes_per_device) == (32 * 64, 32 * 64 * 4, 32 * 16 * 4)
    assert by_path["parti/decoder/final_norm/gamma"].plan.spec == (None,)
    slots = [r for r in report.rows if r.plan.kind == "slot"]
    assert slots and report.total("slot") > 0
    assert report.total() == sum(r.bytes_per_device for r in report.rows)
    assert not report.flagged  # nothing over 1M parameters in parti_micro
    text = format_report(report, device_memory=parse_bytes("1GiB"))
    assert "parti/decoder/layer_0/mlp/wi/kernel" in text and "(-, model)" in text
    assert "fits" in text


# parti_micro widened so that the MLP kernels pass 1M parameters (512 x 2048).
WIDE = dict(width=512, mlp_dim=2048, heads=4)


def test_large_replicated_weights_are_flagged(rules):
    bare = plan_model("parti_micro", "batch:2,model:4", [], optimizer=None, overrides=WIDE)
    flagged = {r.plan.path for r in bare.flagged}
    assert flagged == {f"parti/{part}/layer_{i}/mlp/{w}/kernel"
                       for part, n in (("text_encoder", 1), ("decoder", 2))
                       for i in range(n) for w in ("wi", "wo")}
    assert "WARNING: 6 weight(s)" in format_report(bare)
    sharded = plan_model("parti_micro", "batch:2,model:4", rules, optimizer=None,
                         overrides=WIDE)
    assert not sharded.flagged
    assert sharded.total() < bare.total() / 3
    # Without a model axis nothing is flagged (data parallel replicates on purpose).
    assert not plan_model("parti_micro", "batch:8", [], optimizer=None, overrides=WIDE).flagged


def test_indivisible_dimension_is_reported(rules):
    with pytest.raises(ZooError, match=r"'parti/text_encoder/token_embedding/embeddings' of "
                       r"shape \[64, 32\]: dimension 1 \(size 32\) is sharded on mesh axis "
                       r"'model' of size 3"):
        plan_model("parti_micro", "batch:1,model:3", rules, optimizer=None)


def test_memory_sizes():
    assert parse_bytes("16GiB") == 16 * 1024 ** 3
    assert parse_bytes("512M") == 512 * 1024 ** 2
    with pytest.raises(Exception, match="16 gigs"):
        parse_bytes("16 gigs")


def _layouts(*args):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT),
           "ZOO_DISABLE_PLUGIN_AUTOLOAD": "1"}
    return subprocess.run([sys.executable, "-m", "tools.layouts", *args], cwd=str(ROOT),
                          env=env, capture_output=True, text=True, timeout=600)


def test_zoo_layouts_tool():
    proc = _layouts("--model=parti_micro", "--gin_file=mesh/parti_3b_model4.gin",
                    "--device_memory=1GiB")
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert "parti_micro on mesh batch:128,model:4 (512 devices)" in out
    assert "parti/decoder/logits/kernel" in out and "per device:" in out and "fits" in out
