"""The keras_hub plugin: real all-MiniLM-L6-v2 weights, offline, behind zoo's interfaces."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from zoo import plugins
from zoo.errors import ZooError
from zoo.registry import TEXT_ENCODERS, TEXT_TOKENIZERS

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def plugin(keras_hub_site):
    plugins.load_builtins()
    plugins.load_plugins(force=True)  # finds the installed entry point
    assert "keras_hub" in plugins.LOADED, plugins.FAILED
    assert "keras_hub_minilm_l6_v2" in TEXT_ENCODERS


@pytest.fixture(scope="module")
def minilm(plugin):
    tok = TEXT_TOKENIZERS.create("keras_hub_minilm_l6_v2", max_length=16)
    enc = TEXT_ENCODERS.create("keras_hub_minilm_l6_v2")
    return tok, enc


def test_mean_pooled_embeddings_unit_norm_and_similar_sentences_closer(minilm):
    from zoo_keras_hub.components import sentence_embeddings
    tok, enc = minilm
    sentences = ["A man is eating food.", "A man is eating a piece of bread.",
                 "The stock market crashed today.", "Someone is having a meal.",
                 "Interest rates rose sharply this quarter."]
    e = np.asarray(sentence_embeddings(tok, enc, sentences))
    assert e.shape == (5, 384)
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    sim = e @ e.T
    # Reference value from sentence-transformers for the first pair: 0.7553.
    assert abs(sim[0, 1] - 0.7553) < 2e-3
    for a, b, unrelated in [(0, 1, 2), (0, 3, 4), (1, 3, 2), (2, 4, 0)]:
        assert sim[a, b] > sim[a, unrelated] + 0.2, (a, b, unrelated, sim)


def test_tokenizer_interface_in_graph(minilm):
    tok, _ = minilm
    out = tok(["A red circle.", "", "word " * 40])
    ids, mask = out["ids"].numpy(), out["mask"].numpy()
    assert ids.shape == mask.shape == (3, 16) and ids.dtype == np.int32
    assert (ids[:, 0] == tok.bos_id).all()
    assert list(ids[1, :3]) == [tok.bos_id, tok.eos_id, tok.pad_id] and mask[1].sum() == 2
    assert ids[2, -1] == tok.eos_id and mask[2].all()
    assert out["truncated"].numpy().tolist() == [False, False, True]
    assert tok.vocab_size == 30522 and tok.mask_id == 103
    assert tok.detokenize(out["ids"])[0].numpy().decode() == "a red circle ."
    # The same ids inside a tf.data pipeline.
    ds = tf.data.Dataset.from_tensor_slices(["A red circle.", ""]).batch(2).map(
        lambda s: tok(s)["ids"])
    np.testing.assert_array_equal(next(iter(ds)).numpy(), ids[:2])


def test_encoder_interface_and_freezing(minilm):
    tok, enc = minilm
    batch = tok(["a blue square", "two green triangles at the top"])
    seq = enc(batch["ids"], batch["mask"], training=False)
    assert seq.shape == (2, 16, 384) and enc.width == 384
    assert enc.trainable_weights
    frozen = TEXT_ENCODERS.create("keras_hub_minilm_l6_v2", trainable=False)
    assert not frozen.trainable_weights and len(frozen.weights) == len(enc.weights)
    np.testing.assert_allclose(frozen(batch["ids"], batch["mask"]).numpy(), seq.numpy(),
                               atol=1e-5)


def test_preset_must_be_a_local_folder(plugin, tmp_path):
    with pytest.raises(ZooError, match="does not exist.*never downloads"):
        TEXT_ENCODERS.create("keras_hub_bert", preset="bert_tiny_en_uncased")
    with pytest.raises(ZooError, match="no config.json"):
        TEXT_TOKENIZERS.create("keras_hub_bert", preset=str(tmp_path))
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(ZooError, match="could not load a BERT backbone from preset folder"):
        TEXT_ENCODERS.create("keras_hub_bert", preset=str(tmp_path))


def test_entry_point_lists_components(keras_hub_site):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(keras_hub_site), os.environ.get("PYTHONPATH", "")]).strip(os.pathsep)}
    r = subprocess.run([sys.executable, "-m", "tools.list", "text_encoder"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = [line for line in r.stdout.splitlines() if "keras_hub_minilm_l6_v2" in line]
    assert lines and "[keras_hub]" in lines[0], r.stdout


@pytest.mark.slow
def test_parti_trains_with_the_minilm_encoder_on_shapes(minilm, tmp_path):
    """zoo-train's Parti stage with MiniLM's WordPiece ids and frozen BERT features feeding
    Parti's cross-attention, on the synthetic shapes data."""
    import zoo.data  # noqa: F401
    import zoo.models  # noqa: F401
    from zoo.train.loop import load_task, train
    from zoo.train.parti_task import PartiTask

    task = PartiTask(model="parti_micro", image_tokenizer="vit_vqgan_micro",
                     text_tokenizer="keras_hub_minilm_l6_v2", condition_drop_rate=0.0,
                     model_options={"text_encoder": "keras_hub_minilm_l6_v2",
                                    "train_text_encoder": False, "decoder_attention": "dense",
                                    "dropout": 0.0},
                     dataset_options={"max_objects": 1, "sizes": ["large"]},
                     schedule_options={"peak": 3e-3, "warmup_steps": 1})
    assert task.config()["model_options"]["text_vocab_size"] == 30522
    first = train(task=task, model_dir=str(tmp_path / "run"), steps=1, batch_size=8,
                  checkpoint_every=1, summary_every=0, image_summary_every=0, progress=False)
    model = first.task.model
    assert model.text_encoder.width == 384 and model.text_projection is not None
    assert int(next(iter(first.task.dataset(8, 0)))["text_tokens"][0, 0]) == 101  # [CLS]
    frozen = {id(v) for v in model.text_encoder.weights}
    assert frozen and not frozen & {id(v) for v in model.trainable_weights}
    initial = first.losses["model"]
    more = train(task=load_task(str(tmp_path / "run")), model_dir=str(tmp_path / "run"),
                 steps=20, batch_size=8, checkpoint_every=20, summary_every=0,
                 image_summary_every=0, progress=False)
    assert more.step == 20 and more.losses["model"] < initial - 0.3, (initial, more.losses)


def test_plugin_gin_file_parses(plugin):
    from pathlib import Path

    import gin

    from zoo import config
    here = Path(__file__).resolve().parents[1] / "gin" / "parti_minilm.gin"
    try:
        config.parse(["runs/parti_tiny_shapes.gin", str(here)], ["TOKENIZER_DIR = '/tmp/x'"],
                     finalize=False)
        assert gin.query_parameter("%SPM_MODEL") == "keras_hub_minilm_l6_v2"  # the tokenizer
        assert config.query("parti_tiny.text_encoder") == "keras_hub_minilm_l6_v2"
    finally:
        gin.clear_config()
