"""The example plugin (plugins/zoo_example) after a real `pip install`: found, listed, usable
from its gin file in a Parti model, with no change to zoo/."""

import subprocess
import sys

import pytest

from helpers_tools import ROOT, run_tool, tool_env

PLUGIN = ROOT / "plugins" / "zoo_example"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    target = tmp_path_factory.mktemp("site")
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                        "--target", str(target), str(PLUGIN)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert list(target.glob("zoo_example-*.dist-info")), list(target.iterdir())
    return target


def test_listed_after_install(site):
    r = run_tool("list", "attention", extra_path=site)
    assert r.returncode == 0, r.stderr
    line = [ln for ln in r.stdout.splitlines() if "example_strided" in ln]
    assert line and line[0].startswith("attention example_strided") and "[example]" in line[0]


@pytest.mark.slow
def test_parti_uses_plugin_kernel_from_its_gin_file(site):
    code = f"""
import numpy as np, tensorflow as tf, zoo, zoo_example, os
from zoo import config
config.parse([os.path.join(zoo_example.GIN_DIR, 'strided.gin')],
             ['example_strided.local = 3'])
model = zoo.create('model', 'parti_tiny', image_grid=(4, 4), image_vocab_size=16, width=32,
                   mlp_dim=64, heads=2, encoder_layers=1, text_vocab_size=20, max_text_length=8)
kinds = [type(b.self_attention.attention_kernel).__name__ for b in model.decoder.blocks]
print('KERNELS', kinds)
print('LOCAL', model.decoder.blocks[0].self_attention.attention_kernel.local)
batch = {{'text_tokens': tf.ones([2, 8], tf.int32), 'text_mask': tf.ones([2, 8], tf.int32),
          'image_codes': tf.zeros([2, 4, 4], tf.int32)}}
logits = model(batch)
print('LOGITS', tuple(logits.shape), bool(np.isfinite(logits.numpy()).all()))
"""
    r = subprocess.run([sys.executable, "-c", code], env=tool_env(site), cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "KERNELS ['StridedAttention', 'StridedAttention', 'StridedAttention', " \
           "'ConvShapedAttention']" in r.stdout, r.stdout
    assert "LOCAL 3" in r.stdout, r.stdout  # the command-line binding reached the kernel
    assert "LOGITS (2, 16, 16) True" in r.stdout, r.stdout
