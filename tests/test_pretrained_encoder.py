"""Pretrained text encoders: loaded by name into Parti, with clear errors on mismatched weights."""

import numpy as np
import pytest
import tensorflow as tf

import zoo.models  # noqa: F401  (registers parti_tiny)
import zoo.tokenizers  # noqa: F401
import zoo.text_encoders  # noqa: F401
from text_encoder_helpers import TINY_ENCODER, mlm_run
from zoo import config as zoo_config
from zoo.errors import ZooError
from zoo.registry import MODELS, TEXT_ENCODERS, TEXT_TOKENIZERS
from zoo.text_encoders import pretrained


def _assert_same_weights(encoder, reference):
    got = {k: v.numpy() for k, v in pretrained.relative_weights(encoder).items()}
    want = {k: v.numpy() for k, v in pretrained.relative_weights(reference).items()}
    assert set(got) == set(want) and any(k.startswith("layer_0/") for k in got)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)


def test_pretrained_encoder_has_the_trained_weights():
    model_dir, result = mlm_run()
    encoder = TEXT_ENCODERS.create("pretrained", model_dir=model_dir, dropout=0.3)
    _assert_same_weights(encoder, result.task.encoder)  # the block weights included
    assert encoder.width == 32 and encoder.dropout_rate == 0.3 and encoder.trainable
    frozen = TEXT_ENCODERS.create("pretrained", model_dir=model_dir, trainable=False)
    assert not frozen.trainable_weights
    tokens = tf.constant([[5, 6, 7, 1, 0, 0]])
    np.testing.assert_allclose(frozen(tokens, tf.cast(tokens > 0, tf.int32)).numpy(),
                               result.task.encoder(tokens, tf.cast(tokens > 0, tf.int32)).numpy(),
                               atol=1e-6)
    tok = TEXT_TOKENIZERS.create("pretrained_tokenizer", model_dir=model_dir)
    assert tok.vocab_size == result.task.vocab_size and tok.max_length == 16


def test_mismatched_architecture_names_the_weights():
    model_dir, _ = mlm_run()
    wider = {**TINY_ENCODER, "vocab_size": 40, "width": 48}
    with pytest.raises(ZooError) as e:
        TEXT_ENCODERS.create("pretrained", model_dir=model_dir, encoder="parti_encoder",
                             encoder_options=wider)
    msg = str(e.value)
    assert "token_embedding/embeddings (40, 32) in run" in msg and "vs (40, 48) here" in msg
    deeper = {**TINY_ENCODER, "vocab_size": 40, "layers": 2}
    with pytest.raises(ZooError, match=r"16 missing.*not in run .*: "
                                       r"layer_1/self_attention_norm/gamma \(32,\)"):
        TEXT_ENCODERS.create("pretrained", model_dir=model_dir, encoder="parti_encoder",
                             encoder_options=deeper)
    # The same architecture loads.
    same = TEXT_ENCODERS.create("pretrained", model_dir=model_dir, encoder="parti_encoder",
                                encoder_options={**TINY_ENCODER, "vocab_size": 40})
    _assert_same_weights(same, TEXT_ENCODERS.create("pretrained", model_dir=model_dir))


def test_load_from_weights_dict_and_npz(tmp_path):
    model_dir, result = mlm_run()
    source = result.task.encoder
    path = pretrained.export_encoder_weights(source, str(tmp_path / "enc.npz"))
    target = pretrained.build_encoder("parti_encoder", {**TINY_ENCODER, "vocab_size": 40},
                                      "text_encoder")
    pretrained.load_encoder_weights(target, pretrained.read_encoder_weights(path))
    _assert_same_weights(target, source)
    weights = pretrained.read_encoder_weights(path)
    weights["extra/kernel"] = np.zeros((2, 2))
    del weights["final_norm/gamma"]
    with pytest.raises(ZooError, match=r"not in the given weights: final_norm/gamma \(32,\); "
                                       r"only in the given weights: extra/kernel \(2, 2\)"):
        pretrained.load_encoder_weights(target, weights)


def test_parti_takes_a_pretrained_encoder_from_gin(gin_clean):
    model_dir, result = mlm_run()
    zoo_config.parse([], [f"pretrained.model_dir = '{model_dir}'",
                          "parti_tiny.text_encoder = 'pretrained'",
                          "parti_tiny.train_text_encoder = False",
                          "parti_tiny.decoder_layers = 1", "parti_tiny.width = 64",
                          "parti_tiny.decoder_attention = 'dense'",
                          "parti_tiny.mlp_dim = 64", "parti_tiny.max_text_length = 16"],
                     finalize=False)
    model = MODELS.create("parti_tiny")
    model.build()
    assert model.text_projection is not None  # encoder width 32 -> decoder width 64
    _assert_same_weights(model.text_encoder, result.task.encoder)
    frozen = [v.path for v in model.text_encoder.weights]
    trainable = {v.path for v in model.trainable_weights}
    assert frozen and not trainable & set(frozen)
    assert any("text_projection" in p for p in trainable)
    batch = {"text_tokens": tf.constant([[5, 6, 1, 0] + [0] * 12] * 2),
             "text_mask": tf.constant([[1, 1, 1, 0] + [0] * 12] * 2),
             "image_codes": tf.zeros([2, 8, 8], tf.int32)}
    before = [v.numpy() for v in model.text_encoder.weights]
    import keras
    optimizer = keras.optimizers.SGD(0.1)
    with tf.GradientTape() as tape:
        logits = model(batch, training=True)
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
            tf.zeros([2, 64], tf.int32), logits, from_logits=True))
    grads = tape.gradient(loss, model.trainable_weights)
    optimizer.apply_gradients(zip(grads, model.trainable_weights))
    for b, v in zip(before, model.text_encoder.weights):
        np.testing.assert_array_equal(b, v.numpy())


def test_missing_run_errors(tmp_path):
    with pytest.raises(ZooError, match="pretrained.model_dir"):
        TEXT_ENCODERS.create("pretrained")
    with pytest.raises(ZooError, match="does not exist"):
        TEXT_ENCODERS.create("pretrained", model_dir=str(tmp_path / "nope"))
    with pytest.raises(ZooError, match="not a zoo-train model directory"):
        TEXT_ENCODERS.create("pretrained", model_dir=str(tmp_path))
    model_dir, _ = mlm_run()
    with pytest.raises(ZooError, match=r"no checkpoint at step 7 \(have: \[60\]\)"):
        TEXT_ENCODERS.create("pretrained", model_dir=model_dir, step=7)


def test_parti_task_trains_on_a_frozen_pretrained_encoder_and_reloads_without_gin(tmp_path):
    import zoo.data  # noqa: F401
    from text_encoder_helpers import spm_model
    from zoo.train.loop import load_task, train
    from zoo.train.parti_task import PartiTask

    mlm_dir, result = mlm_run()
    task = PartiTask(model="parti_micro", image_tokenizer="vit_vqgan_micro",
                     text_tokenizer=spm_model(),
                     model_options={"text_encoder": "pretrained",
                                    "text_encoder_options": {"model_dir": mlm_dir},
                                    "train_text_encoder": False,
                                    "decoder_attention": "dense"},
                     dataset_options={"max_objects": 1})
    run = train(task=task, model_dir=str(tmp_path / "parti"), steps=2, batch_size=4,
                checkpoint_every=2, summary_every=0, image_summary_every=0, progress=False)
    assert run.step == 2
    reloaded = load_task(str(tmp_path / "parti"))  # from run.json alone: no gin
    _assert_same_weights(reloaded.model.text_encoder, result.task.encoder)
    assert reloaded.model.text_projection is None  # encoder width 32 == parti_micro's
