"""Tests of zoo.models.superres (WDSR upsamplers), losses, discriminator and feature networks."""

import numpy as np
import pytest
import tensorflow as tf

import zoo
from zoo.errors import ZooError
from zoo.models import losses as L
from zoo.models.discriminator import StyleGANDiscriminator
from zoo.models.feature_networks import tiny_conv, vgg16
from zoo.models.superres import WDSR, wdsr_param_count, wdsr_tiny, wdsr_tiny_4x


def rand(shape, seed=0):
    return np.random.default_rng(seed).random(shape).astype(np.float32)


@pytest.mark.parametrize("builder,scale", [(wdsr_tiny, 2), (wdsr_tiny_4x, 4)])
def test_upsampler_shapes_and_param_count(builder, scale):
    up = builder()
    out = up(rand((2, 8, 12, 3)))
    assert out.shape == (2, 8 * scale, 12 * scale, 3)
    real = sum(int(np.prod(v.shape)) for v in up.trainable_variables)
    assert real == wdsr_param_count(**up.get_config())
    clipped = np.asarray(up.upsample(rand((1, 8, 8, 3))))
    assert clipped.min() >= 0 and clipped.max() <= 1


def test_parti_sizes():
    # Parti: about 15M (256 -> 512) and 30M (256 -> 1024); 12 blocks, 128 channels.
    n512 = wdsr_param_count(scale=2, blocks=12, channels=128, expansion=4)
    n1024 = wdsr_param_count(scale=4, blocks=12, channels=128, expansion=4)
    assert 13.5e6 < n512 < 16e6 and 27e6 < n1024 < 32e6
    assert set(zoo.list("upsampler")) >= {"wdsr", "wdsr_512", "wdsr_1024", "wdsr_tiny"}


def test_upsampler_errors():
    with pytest.raises(ZooError, match="power of two"):
        WDSR(scale=3, blocks=1, channels=4)
    with pytest.raises(ZooError, match="channels must be a positive integer, got 0"):
        WDSR(scale=2, blocks=1, channels=0)
    with pytest.raises(ZooError, match=r"\[batch, height, width, 3\], got shape \(1, 8, 8, 4\)"):
        wdsr_tiny()(np.zeros((1, 8, 8, 4), np.float32))


def test_upsampler_keras_round_trip(tmp_path):
    import keras
    up = wdsr_tiny()
    x = rand((1, 8, 8, 3))
    path = str(tmp_path / "up.keras")
    up.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(up(x)), atol=1e-6)
    prefix = tf.train.Checkpoint(m=up).write(str(tmp_path / "ck"))
    other = wdsr_tiny()
    tf.train.Checkpoint(m=other).read(prefix).assert_consumed()
    np.testing.assert_allclose(np.asarray(other(x)), np.asarray(up(x)), atol=1e-6)


def test_discriminator():
    d = StyleGANDiscriminator(image_size=16, channels=4, max_channels=8)
    assert d(rand((3, 16, 16, 3))).shape == (3, 1)
    with pytest.raises(ZooError, match="power of two"):
        StyleGANDiscriminator(image_size=24)
    assert "stylegan" in zoo.list("discriminator")


def test_logit_laplace_matches_density():
    x = rand((1, 2, 2, 3), 1)
    raw = np.random.default_rng(2).normal(size=(1, 2, 2, 6)).astype(np.float32)
    eps = 0.1
    y = x * (1 - 2 * eps) + eps
    mu, b = raw[..., :3], np.exp(raw[..., 3:])
    pdf = np.exp(-np.abs(np.log(y / (1 - y)) - mu) / b) / (2 * b * y * (1 - y))
    np.testing.assert_allclose(float(L.logit_laplace_loss(x, raw)), -np.mean(np.log(pdf)),
                               rtol=1e-4)


def test_l2_psnr_adversarial():
    x = rand((2, 4, 4, 3))
    assert float(L.l2_loss(x, x)) == 0.0
    np.testing.assert_allclose(float(L.psnr(x, np.clip(x + 0.1, 0, 10))), 20.0, rtol=1e-4)
    np.testing.assert_allclose(float(L.generator_adversarial_loss(np.zeros((2, 1)))),
                               np.log(2), rtol=1e-6)
    np.testing.assert_allclose(
        float(L.discriminator_adversarial_loss(np.zeros((2, 1)), np.zeros((2, 1)))),
        2 * np.log(2), rtol=1e-6)
    d = StyleGANDiscriminator(image_size=8, channels=4, max_channels=4)
    assert float(L.r1_penalty(d, x[:, :4, :4].repeat(2, 1).repeat(2, 2))) > 0


def test_perceptual_loss_with_tiny_network():
    net = tiny_conv()
    x = rand((2, 16, 16, 3))
    assert float(L.perceptual_loss(net, x, x)) == pytest.approx(0.0, abs=1e-6)
    near = float(L.perceptual_loss(net, x, np.clip(x + 0.02, 0, 1)))
    far = float(L.perceptual_loss(net, x, rand((2, 16, 16, 3), 5)))
    assert 0 < near < far
    # Deterministic: the same seed builds the same network.
    np.testing.assert_allclose(np.asarray(tiny_conv()(x)[0]), np.asarray(net(x)[0]))


def test_vgg16_missing_file_says_how_to_get_it(tmp_path):
    missing = str(tmp_path / "nope.h5")
    with pytest.raises(ZooError) as e:
        vgg16(weights_path=missing)
    msg = str(e.value)
    assert missing in msg and "keras.applications.VGG16(include_top=False)" in msg
    assert "tiny_conv" in msg


@pytest.mark.slow
def test_vgg16_loads_a_local_keras_weights_file(tmp_path):
    import h5py
    import keras
    from keras.src.legacy.saving import legacy_h5_format
    ref = keras.applications.VGG16(include_top=False, weights=None, input_shape=(None, None, 3))
    path = str(tmp_path / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5")
    with h5py.File(path, "w") as f:  # the legacy layout of Keras's published file
        legacy_h5_format.save_weights_to_hdf5_group(f, ref)
    net = vgg16(weights_path=path, layers=("block1_conv2", "block2_conv2"))
    x = rand((1, 32, 32, 3))
    feats = net(x)
    assert [f.shape for f in feats] == [(1, 32, 32, 64), (1, 16, 16, 128)]
    pre = keras.applications.vgg16.preprocess_input(x * 255.0)
    expected = keras.Model(ref.input, ref.get_layer("block1_conv2").output)(pre)
    np.testing.assert_allclose(np.asarray(feats[0]), np.asarray(expected), rtol=1e-4, atol=1e-3)
    with pytest.raises(ZooError, match="no layer 'block9'"):
        vgg16(weights_path=path, layers=("block9",))
