"""zoo-export: the SavedModel, loaded in a fresh process that imports only tensorflow and
tensorflow_text, gives the same images as zoo-sample for the same seed."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from helpers_parti_run import tiny_parti_run
from helpers_tools import run_tool
from zoo.errors import ZooError

PROMPTS = ["a red circle at the top left", "a blue square on the right",
           "a big green triangle in the middle " * 8]  # the last one is truncated (16 tokens)

LOADER = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (registers the SentencePiece ops)
    path, out, prompts = sys.argv[1], sys.argv[2], tf.constant(json.loads(sys.argv[3]))
    model = tf.saved_model.load(path)
    generate = model.signatures["generate"]
    guided = generate(prompts=prompts, seed=tf.constant(7, tf.int64),
                      num_samples=tf.constant(2), guidance_scale=tf.constant(1.2))
    plain = generate(prompts=prompts, seed=tf.constant(9, tf.int64),
                     num_samples=tf.constant(3), guidance_scale=tf.constant(1.0))
    default = model.signatures["serving_default"](prompts=prompts)
    np.savez(out, guided=guided["images"].numpy(), plain=plain["images"].numpy(),
             default=default["images"].numpy(), truncated=guided["truncated"].numpy(),
             png=tf.io.decode_png(guided["png"][1, 1]).numpy(),
             codes_shape=np.array(guided["codes"].shape))
    print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] == "zoo")))
""")


def in_process_images(model_dir, seed, num_samples, guidance_scale):
    from zoo.eval.evaluate import to_uint8
    from zoo.models.sampling import TextToImage
    pipe = TextToImage.from_model_dir(model_dir, guidance_scale=guidance_scale,
                                      weights="float32")
    images, _ = pipe(PROMPTS, num_samples=num_samples, seed=seed)
    return to_uint8(images)


@pytest.mark.slow
def test_export_round_trip_matches_zoo_sample(tmp_path):
    run = tiny_parti_run()
    model_dir = str(run / "parti")
    sample_dir = tmp_path / "samples"
    args = [f"--prompt={p}" for p in PROMPTS]
    r = run_tool("sample", f"--model_dir={model_dir}", *args, "--num_samples=2", "--seed=7",
                 "--guidance_scale=1.2", f"--output_dir={sample_dir}", "--noprogress",
                 "--weights=float32")  # the export's default (auto) on this float32 model
    assert r.returncode == 0, r.stderr[-3000:]
    export_dir = tmp_path / "export"
    r = run_tool("export", f"--model_dir={model_dir}", f"--output_dir={export_dir}",
                 "--guidance_scale=1.5", "--num_samples=2", "--seed=3")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "serving_default" in r.stdout
    info = json.loads((export_dir / "zoo_export.json").read_text())
    assert info["checkpoint_step"] == 2 and info["guidance_scale"] == 1.5
    assert info["weights"] == "auto"

    script = tmp_path / "load.py"
    script.write_text(LOADER)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    proc = subprocess.run([sys.executable, str(script), str(export_dir), str(tmp_path / "o.npz"),
                           json.dumps(PROMPTS)], capture_output=True, text=True, timeout=300,
                          cwd=str(tmp_path), env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []  # zoo never imported
    got = np.load(tmp_path / "o.npz")

    # Same seed as zoo-sample: the same PNGs, pixel for pixel.
    assert got["guided"].shape == (3, 2, 16, 16, 3) and got["guided"].dtype == np.uint8
    rows = [json.loads(line) for line in (sample_dir / "samples.jsonl").read_text().splitlines()]
    for p, row in enumerate(rows):
        for s, name in enumerate(row["images"]):
            png = np.asarray(Image.open(sample_dir / name).convert("RGB"))
            np.testing.assert_array_equal(got["guided"][p, s], png, err_msg=name)
    np.testing.assert_array_equal(got["png"], got["guided"][1, 1])
    assert got["codes_shape"].tolist() == [3, 2, 4, 4]
    assert got["truncated"].tolist() == [False, False, True]
    # Guidance 1 (the sampler's unguided path) and serving_default's exported defaults.
    np.testing.assert_array_equal(got["plain"], in_process_images(model_dir, 9, 3, 1.0))
    np.testing.assert_array_equal(got["default"], in_process_images(model_dir, 3, 2, 1.5))
    assert not np.array_equal(got["guided"], got["default"])  # the settings matter


def test_bad_inputs(tmp_path):
    from zoo.models.export import build_serving_module, export, export_model_dir

    with pytest.raises(ZooError, match=r"--model_dir '.*nope' does not exist"):
        export_model_dir(str(tmp_path / "nope"))
    with pytest.raises(ZooError, match="--model_dir is required"):
        export_model_dir(None)
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(ZooError, match="exists and is not an exported model"):
        export(object(), tmp_path)
    assert (tmp_path / "precious.txt").read_text() == "keep me"

    import keras

    from zoo.registry import MODELS
    keras.utils.set_random_seed(0)
    model = MODELS.create("parti_micro", decoder_attention="dense")
    with pytest.raises(ZooError, match="num_samples must be a positive int"):
        build_serving_module(model, None, None, num_samples=0)
    with pytest.raises(ZooError, match="top_p"):
        build_serving_module(model, None, None, top_p=0.0)
    with pytest.raises(ZooError, match="one of auto, float32, bfloat16, int8; got 'fp16'"):
        build_serving_module(model, None, None, weights="fp16")


def test_upsampler_runs_in_the_graph():
    """With an upsampler the served images are the upsampled ones, as in zoo-sample."""
    import keras
    import tensorflow as tf

    from zoo.eval.evaluate import to_uint8
    from zoo.models.export import build_serving_module
    from zoo.models.sampling import TextToImage
    from zoo.registry import IMAGE_TOKENIZERS, MODELS, UPSAMPLERS
    from zoo.tokenizers.text import SentencePieceTokenizer

    spm = str(tiny_parti_run() / "spm.model")
    keras.utils.set_random_seed(1)  # before the tokenizer (it clears TF's kernel cache)
    text_tokenizer = SentencePieceTokenizer(spm, max_length=16)
    model = MODELS.create("parti_micro", image_vocab_size=64, decoder_attention="dense",
                          text_vocab_size=text_tokenizer.vocab_size)
    model.build()
    image_tokenizer = IMAGE_TOKENIZERS.create("vit_vqgan_micro")
    upsampler = UPSAMPLERS.create("wdsr_tiny")
    module = build_serving_module(model, text_tokenizer, image_tokenizer,
                                  upsampler=upsampler.upsample, weights="float32")
    got = module.generate(tf.constant(PROMPTS[:2]), tf.constant(4, tf.int64), tf.constant(1),
                          tf.constant(1.2))["images"].numpy()
    assert got.shape == (2, 1, 32, 32, 3)
    pipe = TextToImage(model, text_tokenizer, image_tokenizer, upsampler=upsampler,
                       guidance_scale=1.2, weights="float32")
    expected, _ = pipe(PROMPTS[:2], num_samples=1, seed=4)
    np.testing.assert_array_equal(got, to_uint8(expected))
