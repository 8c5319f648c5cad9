"""The Parti model: weight names, attention schedule by name, guidance path, causality, config."""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf

import zoo.models  # noqa: F401
from zoo.attention.base import AttentionKernel
from zoo.errors import UnknownNameError, ZooError
from zoo.models.parti import Parti, dalle_schedule
from zoo.registry import ATTENTION, MODELS, TEXT_ENCODERS


def micro(**overrides):
    keras.utils.set_random_seed(0)
    model = MODELS.create("parti_micro", dropout=0.0, **overrides)
    model.build()
    return model


def batch(model, b=3, seed=0):
    rng = np.random.default_rng(seed)
    length = model.max_text_length
    tokens = rng.integers(3, model.text_vocab_size, (b, length)).astype(np.int32)
    mask = (np.arange(length)[None] < rng.integers(2, length, (b, 1))).astype(np.int32)
    h, w = model.image_grid
    codes = rng.integers(0, model.image_vocab_size, (b, h, w)).astype(np.int32)
    return {"text_tokens": tf.constant(tokens * mask), "text_mask": tf.constant(mask),
            "image_codes": tf.constant(codes)}


def test_weight_names_are_stable_and_descriptive():
    model = micro()
    paths = {v.path for v in model.weights}
    expected = [
        "parti/text_encoder/token_embedding/embeddings",
        "parti/text_encoder/layer_0/self_attention/query/kernel",
        "parti/text_encoder/layer_0/mlp/wi/kernel",
        "parti/text_encoder/final_norm/gamma",
        "parti/unconditional_embedding",
        "parti/decoder/token_embedding/embeddings",
        "parti/decoder/row_embedding/embeddings",
        "parti/decoder/layer_1/self_attention/query/kernel",
        "parti/decoder/layer_1/self_attention/output/kernel",
        "parti/decoder/layer_1/cross_attention/key/kernel",
        "parti/decoder/layer_1/mlp/wi/kernel",
        "parti/decoder/layer_1/mlp/wo/kernel",
        "parti/decoder/layer_1/cross_attention_norm/gamma",
        "parti/decoder/final_norm/beta",
        "parti/decoder/logits/kernel",
    ]
    for path in expected:
        assert path in paths, path
    # The regexes a Megatron-style layout map uses match exactly the intended weights.
    qkv = re.compile(r".*/(self|cross)_attention/(query|key|value)/kernel$")
    mlp_in = re.compile(r".*/mlp/wi/kernel$")
    assert sum(bool(qkv.match(p)) for p in paths) == 3 * (1 + 2 * 2)
    assert sum(bool(mlp_in.match(p)) for p in paths) == 3
    shapes = {v.path: tuple(v.shape) for v in model.weights}
    assert shapes["parti/decoder/layer_1/mlp/wi/kernel"] == (32, 64)
    assert shapes["parti/decoder/logits/kernel"] == (32, 16)
    assert shapes["parti/decoder/token_embedding/embeddings"] == (17, 32)  # + BOS


def test_dalle_schedule():
    assert dalle_schedule(8) == ["row", "row", "column", "row", "row", "row", "column",
                                 "conv_shaped"]
    assert dalle_schedule(12)[10] == "column" and dalle_schedule(12)[-1] == "conv_shaped"
    model = MODELS.create("parti_350m", decoder_layers=3, encoder_layers=1, width=64, heads=2,
                          mlp_dim=64)
    assert model.decoder_attention[0] == "row" and model.decoder_attention[1] == "row"
    assert model.decoder_attention[2]["name"] == "conv_shaped"


def test_decoder_attention_from_gin_by_name(gin_clean):
    import gin
    gin.parse_config("parti_micro.decoder_attention = ['column', 'conv_shaped']\n"
                     "conv_shaped.kernel_size = 3")
    model = MODELS.create("parti_micro")
    kernels = [b.self_attention.attention_kernel for b in model.decoder.blocks]
    assert [type(k).__name__ for k in kernels] == ["ColumnAttention", "ConvShapedAttention"]
    assert kernels[1].kernel_size == 3
    # The resolved architecture rebuilds the same kernels without gin.
    gin.clear_config()
    again = Parti(**model.architecture())
    assert again.decoder.blocks[1].self_attention.attention_kernel.kernel_size == 3


def test_bad_attention_lists_are_clear_errors():
    with pytest.raises(UnknownNameError, match="did you mean 'conv_shaped'"):
        MODELS.create("parti_micro", decoder_attention=["row", "conv_shapd"])
    with pytest.raises(ZooError, match="2 kernels for decoder_layers=3"):
        MODELS.create("parti_micro", decoder_layers=3, decoder_attention=["row", "row"])
    with pytest.raises(ZooError, match="not divisible by heads"):
        MODELS.create("parti_micro", width=30, heads=4)


def test_a_plugin_kernel_plugs_into_the_model_by_name():
    calls = []

    class Everything(AttentionKernel):
        """Dense causal, counting its calls."""

        def allowed(self, qr, qc, kr, kc, grid):
            return np.ones(np.broadcast(qr, kr).shape, bool)

        def call(self, q, k, v, grid):
            calls.append(grid)
            return super().call(q, k, v, grid)

    ATTENTION.register("test_everything")(Everything)
    try:
        model = micro(decoder_attention=["test_everything", "dense"])
        dense = micro(decoder_attention=["dense", "dense"])
        dense.set_weights(model.get_weights())
        data = batch(model)
        np.testing.assert_allclose(model(data).numpy(), dense(data).numpy(), atol=1e-5)
        assert calls and calls[0] == (4, 4)
    finally:
        ATTENTION.unregister("test_everything")


def test_decoder_is_causal_in_raster_order():
    model = micro()
    data = batch(model)
    logits = model(data).numpy()
    codes = data["image_codes"].numpy().reshape(3, -1)
    t = 6
    codes[:, t] = (codes[:, t] + 1) % model.image_vocab_size
    changed = model({**data, "image_codes": tf.constant(codes.reshape(3, 4, 4))}).numpy()
    np.testing.assert_allclose(changed[:, :t + 1], logits[:, :t + 1], atol=1e-6)
    assert np.abs(changed[:, t + 1:] - logits[:, t + 1:]).max() > 1e-4


def test_decoder_step_with_a_mask_for_weights_is_a_clear_error():
    """The earlier step(prev, t, cache, memory_kv, mask) form: the mask lands in `weights`."""
    model = micro()
    data = batch(model, b=2)
    memory, mask = model.encode_text(data["text_tokens"], data["text_mask"])
    cache = model.decoder.init_cache(2)
    prev = tf.fill([2], model.decoder.bos_id)
    with pytest.raises(ZooError, match=r"weights must come from decoder.inference_weights\(\), "
                                       r"got EagerTensor.*step_memory\(memory, memory_mask\)"):
        model.decoder.step(prev, tf.constant(0), cache, model.decoder.memory_kv(memory), mask)
    logits, _ = model.decoder.step(prev, tf.constant(0), cache,
                                   model.decoder.step_memory(memory, mask))
    assert logits.shape == (2, model.image_vocab_size)


def test_unconditional_rows_ignore_the_text():
    model = micro()
    a, b = batch(model, seed=1), batch(model, seed=2)
    b["image_codes"] = a["image_codes"]
    uncond = tf.constant([True, False, True])
    la = model({**a, "unconditional": uncond}).numpy()
    lb = model({**b, "unconditional": uncond}).numpy()
    np.testing.assert_allclose(la[[0, 2]], lb[[0, 2]], atol=1e-6)
    assert np.abs(la[1] - lb[1]).max() > 1e-4
    # ... and differ from the conditional rows of the same text.
    assert np.abs(la[0] - model(a).numpy()[0]).max() > 1e-4


def test_dropout_only_in_training():
    keras.utils.set_random_seed(0)
    model = MODELS.create("parti_micro", dropout=0.5)
    model.build()
    data = batch(model)
    np.testing.assert_allclose(model(data).numpy(), model(data).numpy())
    assert np.abs(model(data, training=True).numpy() - model(data).numpy()).max() > 1e-3


class _WideEncoder(keras.layers.Layer):
    """A stand-in text encoder of another width (like a pretrained one)."""

    def __init__(self, vocab_size=64, **kwargs):
        super().__init__(**kwargs)
        self.width = 24
        self.embed = keras.layers.Embedding(vocab_size, 24)

    def build(self, input_shape=None):
        self.embed.build((None, None))

    def call(self, tokens, mask=None, training=False):
        return self.embed(tokens)


def test_swapped_text_encoder_of_another_width_gets_a_projection():
    TEXT_ENCODERS.register("test_wide_encoder")(_WideEncoder)
    try:
        model = micro(text_encoder="test_wide_encoder")
        paths = {v.path: tuple(v.shape) for v in model.weights}
        assert paths["parti/text_projection/kernel"] == (24, 32)
        assert not any("text_encoder/layer_0" in p for p in paths)
        assert model(batch(model)).shape == (3, 16, 16)
        frozen = micro(text_encoder="test_wide_encoder", train_text_encoder=False)
        trainable = {v.path for v in frozen.trainable_weights}
        assert "parti/text_projection/kernel" in trainable
        assert not any("embed" in p and "text_encoder" in p for p in trainable)
    finally:
        TEXT_ENCODERS.unregister("test_wide_encoder")


def test_config_round_trip_and_keras_save(tmp_path):
    model = micro(decoder_attention=["row", {"name": "conv_shaped", "kernel_size": 5}])
    data = batch(model)
    again = Parti.from_config(model.get_config())
    again.build()
    again.set_weights(model.get_weights())
    np.testing.assert_allclose(again(data).numpy(), model(data).numpy(), atol=1e-6)
    path = str(tmp_path / "parti.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(loaded(data).numpy(), model(data).numpy(), atol=1e-6)
    assert loaded.decoder_attention[1]["kernel_size"] == 5


def test_tf_checkpoint_saves_and_restores_every_weight(tmp_path):
    model = micro()
    keras.utils.set_random_seed(1)
    other = MODELS.create("parti_micro", dropout=0.0)
    other.build()
    path = tf.train.Checkpoint(model=model).write(str(tmp_path / "ckpt"))
    tf.train.Checkpoint(model=other).read(path).assert_existing_objects_matched()
    for a, b, v in zip(model.get_weights(), other.get_weights(), model.weights):
        np.testing.assert_array_equal(a, b, err_msg=v.path)


def test_mixed_precision_keeps_norms_and_logits_in_float32():
    model = micro(mixed_precision=True)
    reference = micro()
    reference.set_weights(model.get_weights())
    data = batch(model)
    logits = model(data)
    assert logits.dtype == tf.float32
    block = model.decoder.blocks[0]
    assert block.mlp.wi.compute_dtype == "bfloat16"
    assert block.mlp_norm.compute_dtype == "float32"
    assert model.decoder.logits.compute_dtype == "float32"
    assert all(v.dtype == "float32" for v in model.weights)
    np.testing.assert_allclose(logits.numpy(), reference(data).numpy(), atol=0.1)


def test_table1_sizes_are_registered():
    for name in ("parti_350m", "parti_750m", "parti_3b", "parti_20b", "parti_tiny",
                 "parti_micro"):
        assert name in MODELS
    assert "parti_encoder" in TEXT_ENCODERS


@pytest.mark.parametrize("dtype", [None, "mixed_bfloat16"])
def test_fused_qkv_projection_is_the_three_layers_with_their_own_gradients(dtype):
    from zoo.layers.transformer import SelfAttention
    keras.utils.set_random_seed(0)
    attention = SelfAttention(16, 2, kernel="row", dtype=dtype)
    attention.build()
    layers = (attention.query, attention.key, attention.value)
    x = tf.random.normal([2, 4, 16])
    kernels = [layer.kernel for layer in layers] + [layer.bias for layer in layers]
    with tf.GradientTape(persistent=True) as tape:
        fused = attention.project_qkv(x)
        apart = [layer(x) for layer in layers]
        weights = tf.random.normal([3, 2, 4, 16])
        fused_loss = sum(tf.reduce_sum(tf.cast(y, tf.float32) * w)
                         for y, w in zip(fused, weights))
        apart_loss = sum(tf.reduce_sum(tf.cast(y, tf.float32) * w)
                         for y, w in zip(apart, weights))
    for a, b in zip(fused, apart):
        assert a.dtype == b.dtype
        np.testing.assert_allclose(np.float32(a), np.float32(b), rtol=1e-2 if dtype else 1e-6,
                                   atol=1e-2 if dtype else 1e-6)
    for a, b in zip(tape.gradient(fused_loss, kernels), tape.gradient(apart_loss, kernels)):
        np.testing.assert_allclose(np.float32(a), np.float32(b), rtol=1e-2 if dtype else 1e-5,
                                   atol=1e-2 if dtype else 1e-5)


def test_fused_qkv_projection_leaves_layers_with_an_activation_alone():
    from zoo.layers.transformer import SelfAttention
    attention = SelfAttention(16, 2, kernel="row")
    attention.build()
    attention.key.activation = keras.activations.relu
    x = tf.random.normal([2, 4, 16])
    np.testing.assert_array_equal(attention.project_qkv(x)[1], attention.key(x))
    assert float(tf.reduce_min(attention.project_qkv(x)[1])) >= 0.0
