"""The example plugin (plugins/zoo_example) after a real `pip install`: found, listed, usable
from its gin files (its kernel in a Parti model; its own model trained with zoo-train and
sampled with zoo-sample), with no change to zoo/."""

import json
import subprocess
import sys

import pytest

from helpers_tools import ROOT, run_tool, tool_env

PLUGIN = ROOT / "plugins" / "zoo_example"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    target = tmp_path_factory.mktemp("site")
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                        "--no-build-isolation", "--target", str(target), str(PLUGIN)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert list(target.glob("zoo_example-*.dist-info")), list(target.iterdir())
    return target


def test_listed_after_install(site):
    r = run_tool("list", "attention", "decoder", "model", extra_path=site)
    assert r.returncode == 0, r.stderr
    for kind, name in (("attention", "example_strided"), ("decoder", "example_sincos"),
                       ("model", "example_sincos_tiny")):
        line = [ln for ln in r.stdout.splitlines() if ln.startswith(f"{kind} {name} ")]
        assert line and "[example]" in line[0], r.stdout


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


@pytest.mark.slow
def test_plugin_model_trains_and_samples_through_the_tools(site, tmp_path):
    """`parti.model = 'example_sincos_tiny'` (the plugin's gin file): zoo-train builds the
    plugin's model, zoo-train resumes it, zoo-sample draws from it; micro sizes, 2 + 1 steps."""
    from zoo.data import shapes
    from zoo.tokenizers.spm_training import train_sentencepiece
    spm = train_sentencepiece([shapes.caption(0, i) for i in range(300)],
                              str(tmp_path / "spm.model"), vocab_size=48, shrink_to_fit=True)
    gin_file = PLUGIN / "zoo_example" / "gin" / "sincos.gin"
    model_dir = tmp_path / "sincos"
    bindings = [
        "TOKENIZER_DIR = None", "parti.image_tokenizer = 'vit_vqgan_micro'",
        f"SPM_MODEL = '{spm}'", "train.batch_size = 4", "train.checkpoint_every = 2",
        "train.summary_every = 2", "train.image_summary_every = 0",
        "parti.mixed_precision = False", "example_sincos_tiny.width = 32",
        "example_sincos_tiny.mlp_dim = 64", "example_sincos_tiny.heads = 2",
        "example_sincos_tiny.encoder_layers = 1", "example_sincos_tiny.decoder_layers = 2",
        "example_sincos_tiny.decoder_attention = ['row', 'conv_shaped']"]
    args = ["--gin_file=runs/parti_tiny_shapes.gin", f"--gin_file={gin_file}",
            f"--model_dir={model_dir}", "--progress=false",
            *[f"--gin_bindings={b}" for b in bindings]]
    first = run_tool("train", *args, "--steps=2", extra_path=site, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    info = json.loads((model_dir / "run.json").read_text())
    assert info["task_config"]["model"] == "example_sincos_tiny"
    options = info["task_config"]["model_options"]
    assert options["max_wavelength"] == 100.0 and options["width"] == 32  # from the gin files
    assert options["decoder"] == "example_sincos"
    # The run holds the plugin's model: its decoder, no learned row/column position tables.
    code = ("from zoo.train.loop import load_task\n"
            f"task = load_task({str(model_dir)!r})\n"
            "print('DECODER', type(task.model.decoder).__name__)\n"
            "print('TABLES', [w.path for w in task.model.weights if 'row_' in w.path "
            "or 'column_' in w.path])\n")
    r = subprocess.run([sys.executable, "-c", code], env=tool_env(site), cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "DECODER SinCosImageDecoder" in r.stdout and "TABLES []" in r.stdout, r.stdout

    again = run_tool("train", *args, "--steps=3", extra_path=site, timeout=600)  # resumes
    assert again.returncode == 0, again.stderr[-3000:]
    out = tmp_path / "samples"
    sample = run_tool("sample", f"--model_dir={model_dir}", "--prompt=a red circle",
                      "--prompt=two blue squares", "--num_samples=2", f"--output_dir={out}",
                      "--progress=false", extra_path=site, timeout=600)
    assert sample.returncode == 0, sample.stderr[-3000:]
    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert [r["prompt"] for r in rows] == ["a red circle", "two blue squares"]
    images = [out / name for r in rows for name in r["images"]]
    assert len(images) == 4 and all(p.is_file() for p in images)
    from PIL import Image
    assert Image.open(images[0]).size == (16, 16)  # vit_vqgan_micro's images

    # Without the plugin the run's model is unknown, and the message says which it was.
    bare = run_tool("sample", f"--model_dir={model_dir}", "--prompt=a red circle",
                    f"--output_dir={tmp_path / 'bare'}", ZOO_DISABLE_PLUGIN_AUTOLOAD="1")
    assert bare.returncode == 1 and "Traceback" not in bare.stderr
    assert "example_sincos_tiny" in bare.stderr
