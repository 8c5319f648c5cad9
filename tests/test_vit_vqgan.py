"""Tests of zoo.tokenizers.vit_vqgan: the encode/decode API, its errors, sizes, saving."""

import numpy as np
import pytest
import tensorflow as tf

import zoo
from zoo.errors import ZooError
from zoo.registry import IMAGE_TOKENIZERS
from zoo.tokenizers.vit_vqgan import (SIZES, ViTVQGAN, param_counts, paper_param_count,
                                      vit_vqgan_micro)


@pytest.fixture(scope="module")
def tok():
    return vit_vqgan_micro()


def images(n=2, size=16, seed=0):
    return np.random.default_rng(seed).random((n, size, size, 3)).astype(np.float32)


def test_encode_decode_api(tok):
    assert tok.grid_size == (4, 4) and tok.codebook_size == 64 and tok.image_size == 16
    codes = tok.encode(images())
    assert codes.shape == (2, 4, 4) and codes.dtype == tf.int32
    c = np.asarray(codes)
    assert c.min() >= 0 and c.max() < 64
    out = np.asarray(tok.decode(codes))
    assert out.shape == (2, 16, 16, 3) and out.min() >= 0.0 and out.max() <= 1.0
    # Flat codes (as the transformer emits them) decode the same.
    np.testing.assert_allclose(np.asarray(tok.decode(c.reshape(2, 16))), out, atol=1e-6)
    # encode is the argmax of the training forward pass's codes.
    np.testing.assert_array_equal(np.asarray(tok(images())["codes"]), c)


@pytest.mark.parametrize("shape,needle", [
    ((2, 32, 32, 3), "takes 16x16 images, got 32x32"),
    ((2, 16, 16, 1), "3 channels"),
    ((2, 16, 16, 4), "got shape (2, 16, 16, 4)"),
    ((16, 16, 3), "[batch, height, width, 3]"),
])
def test_encode_rejects_bad_images(tok, shape, needle):
    with pytest.raises(ZooError) as e:
        tok.encode(np.zeros(shape, np.float32))
    assert needle in str(e.value)


@pytest.mark.parametrize("codes,needle", [
    (np.full((1, 4, 4), 64), "code 64 is outside the codebook [0, 63]"),
    (np.full((1, 4, 4), -1), "code -1 is outside the codebook"),
    (np.zeros((1, 5, 5), np.int32), "[batch, 4, 4]"),
    (np.zeros((1, 15), np.int32), "got shape (1, 15)"),
    (np.zeros((1, 4, 4), np.float32), "integers"),
])
def test_decode_rejects_bad_codes(tok, codes, needle):
    with pytest.raises(ZooError) as e:
        tok.decode(codes)
    assert needle in str(e.value)


def test_decode_checks_range_in_graph(tok):
    decode = tf.function(tok.decode)
    with pytest.raises(tf.errors.InvalidArgumentError, match="outside the codebook"):
        decode(tf.constant(np.full((1, 4, 4), 99, np.int32)))


def test_bad_construction():
    with pytest.raises(ZooError, match="not a multiple of patch_size"):
        vit_vqgan_micro(image_size=18)


def test_config_and_keras_round_trip(tok, tmp_path):
    x = images()
    clone = ViTVQGAN.from_config(tok.get_config())
    assert clone.get_config() == tok.get_config()
    path = str(tmp_path / "tok.keras")
    tok.save(path)
    import keras
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, ViTVQGAN)
    np.testing.assert_array_equal(np.asarray(loaded.encode(x)), np.asarray(tok.encode(x)))
    np.testing.assert_allclose(np.asarray(loaded.reconstruct(x)), np.asarray(tok.reconstruct(x)),
                               atol=1e-6)


def test_checkpoint_round_trip(tok, tmp_path):
    x = images()
    prefix = tf.train.Checkpoint(tokenizer=tok).write(str(tmp_path / "ckpt"))
    other = vit_vqgan_micro()
    assert not np.allclose(np.asarray(other.reconstruct(x)), np.asarray(tok.reconstruct(x)))
    tf.train.Checkpoint(tokenizer=other).read(prefix).assert_consumed()
    np.testing.assert_allclose(np.asarray(other.reconstruct(x)), np.asarray(tok.reconstruct(x)),
                               atol=1e-6)


def test_registry_and_gin_override(gin_clean):
    import gin
    assert {"vit_vqgan_small", "vit_vqgan_base", "vit_vqgan_large", "vit_vqgan_tiny",
            "vit_vqgan_micro"} <= set(zoo.list("image_tokenizer"))
    gin.parse_config("vit_vqgan_micro.codebook_size = 32")
    t = IMAGE_TOKENIZERS.create("vit_vqgan_micro", patch_size=8)
    assert t.codebook_size == 32 and t.grid_size == (2, 2)


@pytest.mark.parametrize("overrides", [
    {},
    {"logit_laplace": False, "decoder_blocks": 2, "decoder_width": 48, "decoder_heads": 3,
     "decoder_mlp_dim": 40},
    {"head_dim": 8, "patch_size": 8, "image_size": 32},
])
def test_analytic_param_count_matches_a_real_build(overrides):
    t = vit_vqgan_micro(**overrides)
    real = sum(int(np.prod(v.shape)) for v in t.trainable_variables)
    counts = param_counts(t.get_config())
    assert counts["total"] == real
    enc = sum(int(np.prod(v.shape)) for layer in t.encoder_layers()[:3]
              for v in layer.trainable_variables)
    assert counts["encoder"] == enc


@pytest.mark.parametrize("name,paper_millions,tolerance", [
    # ViT-VQGAN Table 2 counts one transformer side (encoder; the decoder mirrors it).
    ("vit_vqgan_base", 91, 0.05),
    ("vit_vqgan_large", 599, 0.05),
    ("vit_vqgan_small", 32, 0.05),
])
def test_paper_sizes(name, paper_millions, tolerance):
    cfg = SIZES[name]
    n = paper_param_count(cfg) / 1e6
    assert abs(n - paper_millions) / paper_millions <= tolerance, n


def test_size_table():
    rows = {n: (c["blocks"], c["heads"], c["width"], c["mlp_dim"]) for n, c in SIZES.items()}
    assert rows["vit_vqgan_small"] == (8, 8, 512, 2048)
    assert rows["vit_vqgan_base"] == (12, 12, 768, 3072)
    assert rows["vit_vqgan_large"] == (32, 16, 1280, 5120)
    sl = param_counts(SIZES["vit_vqgan_small_large"])
    assert sl["encoder"] == param_counts(SIZES["vit_vqgan_small"])["encoder"]
    assert abs(sl["decoder"] / 1e6 - 599) / 599 < 0.05  # Parti: "about 600M" decoder


def test_freeze_encoder_leaves_only_decoder_trainable():
    t = vit_vqgan_micro()
    t.freeze_encoder()
    names = {v.path.split("/", 1)[1] for v in t.trainable_variables}
    assert names and all(n.startswith("decoder") for n in names), names
    assert not any("codebook" in n or n.startswith("encoder") for n in names)
