"""Frechet distance against an independent numpy/scipy computation; the FID metric and features."""

import numpy as np
import pytest
from scipy import linalg

from zoo.errors import ZooError
from zoo.eval import fid as fid_lib
from zoo.registry import FEATURE_NETWORKS, METRICS


def scipy_frechet(mu1, s1, mu2, s2):
    """The textbook formula with scipy.linalg.sqrtm (as in pytorch-fid), independent of fid.py."""
    covmean = linalg.sqrtm(s1.dot(s2))
    covmean = np.real(covmean)
    diff = mu1 - mu2
    return float(diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def random_gaussian(rng, dim, n):
    a = rng.normal(size=(dim, dim))
    mu = rng.normal(size=dim) * 2
    x = rng.normal(size=(n, dim)) @ a + mu
    return x


@pytest.mark.parametrize("dim,n", [(1, 50), (4, 200), (16, 500), (64, 1000)])
def test_matches_scipy_on_random_gaussians(dim, n):
    rng = np.random.default_rng(dim)
    x, y = random_gaussian(rng, dim, n), random_gaussian(rng, dim, n)
    mu1, s1 = x.mean(0), np.cov(x, rowvar=False).reshape(dim, dim)
    mu2, s2 = y.mean(0), np.cov(y, rowvar=False).reshape(dim, dim)
    expected = scipy_frechet(mu1, s1, mu2, s2)
    got = fid_lib.frechet_distance(mu1, s1, mu2, s2)
    assert got == pytest.approx(expected, rel=1e-6, abs=1e-6)
    assert fid_lib.frechet_distance_from_features(x, y) == pytest.approx(expected, rel=1e-6)


def test_closed_form_for_diagonal_gaussians():
    # For diagonal covariances: |mu1-mu2|^2 + sum (sqrt(a) - sqrt(b))^2.
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 0.25])
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    expected = 1 + 0 + 4 + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert fid_lib.frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected)


def test_identical_sets_give_zero_and_distance_is_symmetric():
    rng = np.random.default_rng(0)
    x, y = random_gaussian(rng, 8, 100), random_gaussian(rng, 8, 100)
    assert fid_lib.frechet_distance_from_features(x, x) == pytest.approx(0.0, abs=1e-8)
    assert (fid_lib.frechet_distance_from_features(x, y)
            == pytest.approx(fid_lib.frechet_distance_from_features(y, x), rel=1e-9))


def test_stable_with_singular_covariances():
    # Fewer samples than dimensions: rank-deficient covariances, where sqrtm(S1 S2) is
    # ill-conditioned. The result must be finite, real, non-negative and agree with scipy
    # once the matrices are regularised (the pytorch-fid offset fallback).
    rng = np.random.default_rng(1)
    dim = 128
    x, y = rng.normal(size=(20, dim)), rng.normal(size=(20, dim)) + 0.5
    mu1, s1 = fid_lib.feature_statistics(x)
    mu2, s2 = fid_lib.feature_statistics(y)
    got = fid_lib.frechet_distance(mu1, s1, mu2, s2)
    assert np.isfinite(got) and got >= 0
    offset = np.eye(dim) * 1e-10
    expected = scipy_frechet(mu1, s1 + offset, mu2, s2 + offset)
    assert got == pytest.approx(expected, rel=1e-4)
    # Identical singular sets: exactly zero up to round-off (sqrtm gives visible error here).
    assert fid_lib.frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-6)


def test_bad_statistics_are_clear_errors():
    with pytest.raises(ZooError, match="at least 2 images"):
        fid_lib.feature_statistics(np.zeros((1, 4)))
    with pytest.raises(ZooError, match="same feature network"):
        fid_lib.frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
    with pytest.raises(ZooError, match="NaN"):
        fid_lib.feature_statistics(np.full((3, 2), np.nan))


# -- the metric with a small feature network built here ----------------------------------------

@pytest.fixture
def tiny_features():
    import keras

    class TinyFeatures:
        """Colour statistics + a fixed random conv: enough to tell image sets apart."""

        image_size = 16

        def __init__(self):
            keras.utils.set_random_seed(0)
            inputs = keras.Input((16, 16, 3))
            x = keras.layers.Conv2D(8, 3, activation="relu")(inputs)
            x = keras.layers.GlobalAveragePooling2D()(x)
            self.model = keras.Model(inputs, x)

        def __call__(self, images):
            import tensorflow as tf
            images = tf.image.resize(tf.convert_to_tensor(images, tf.float32), (16, 16))
            return self.model(images)

    FEATURE_NETWORKS.register("test_tiny_features")(TinyFeatures)
    yield "test_tiny_features"
    FEATURE_NETWORKS.unregister("test_tiny_features")


def _write_pngs(folder, images):
    from PIL import Image
    folder.mkdir(parents=True, exist_ok=True)
    for i, im in enumerate(images):
        Image.fromarray((im * 255).round().astype(np.uint8)).save(folder / f"{i:03d}.png")


def test_fid_metric_with_registered_feature_network(tiny_features, tmp_path):
    rng = np.random.default_rng(0)
    dark = rng.uniform(0.0, 0.4, size=(24, 16, 16, 3)).astype(np.float32)
    dark2 = rng.uniform(0.0, 0.4, size=(24, 16, 16, 3)).astype(np.float32)
    bright = rng.uniform(0.5, 1.0, size=(24, 16, 16, 3)).astype(np.float32)
    metric = METRICS.create("fid", feature_network=tiny_features, batch_size=10)
    near, far = metric(dark, dark2), metric(dark, bright)
    assert 0 <= near < far
    # The score equals the Frechet distance of the network's features computed by hand.
    feats = [np.asarray(metric.network(x), np.float64) for x in (dark, bright)]
    assert far == pytest.approx(fid_lib.frechet_distance_from_features(*feats), rel=1e-5)

    # A folder of PNGs (different size: resized), and saved statistics, give the same number.
    _write_pngs(tmp_path / "ref", bright)
    from_folder = metric(dark, str(tmp_path / "ref"))
    assert from_folder == pytest.approx(far, rel=0.05)
    fid_lib.save_statistics(tmp_path / "ref.npz", *metric.statistics(str(tmp_path / "ref")))
    assert metric(dark, str(tmp_path / "ref.npz")) == pytest.approx(from_folder, rel=1e-9)


def test_reference_errors(tiny_features, tmp_path):
    metric = METRICS.create("fid", feature_network=tiny_features)
    images = np.zeros((2, 16, 16, 3), np.float32)
    with pytest.raises(ZooError, match=r"does not exist.*--reference_dir"):
        metric(images, str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ZooError, match="holds no images"):
        metric(images, str(tmp_path / "empty"))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.png").write_bytes(b"not a png")
    with pytest.raises(ZooError, match=r"cannot read image .*x\.png"):
        metric(images, str(tmp_path / "bad"))
    with pytest.raises(ZooError, match="statistics file"):
        metric(images, str(tmp_path / "missing.npz"))


def test_inception_weights_missing_names_file_and_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(ZooError) as e:
        FEATURE_NETWORKS.create("inception_v3")
    msg = str(e.value)
    assert fid_lib.INCEPTION_WEIGHTS_FILE in msg
    assert str(tmp_path / "models") in msg and "wget" in msg
    with pytest.raises(ZooError, match="elsewhere.h5"):
        FEATURE_NETWORKS.create("inception_v3", weights_path=str(tmp_path / "elsewhere.h5"))


def test_inception_loads_local_keras_weights_file(tmp_path, monkeypatch):
    """The real network: a weights file in Keras's legacy h5 layout at the standard cache path."""
    import keras
    from keras.src.legacy.saving import legacy_h5_format
    import h5py

    keras.utils.set_random_seed(0)
    source = keras.applications.InceptionV3(include_top=False, weights=None, pooling="avg",
                                            input_shape=(75, 75, 3))
    path = tmp_path / "models" / fid_lib.INCEPTION_WEIGHTS_FILE
    path.parent.mkdir()
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, source)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    net = FEATURE_NETWORKS.create("inception_v3", image_size=75)
    images = np.random.default_rng(0).uniform(size=(2, 40, 40, 3)).astype(np.float32)
    feats = np.asarray(net(images))
    assert feats.shape == (2, 2048)
    import tensorflow as tf
    expected = source(tf.image.resize(images, (75, 75)) * 2.0 - 1.0, training=False)
    np.testing.assert_allclose(feats, np.asarray(expected), rtol=1e-4, atol=1e-5)

    path.write_bytes(b"truncated")
    with pytest.raises(ZooError, match="cannot load InceptionV3 weights"):
        FEATURE_NETWORKS.create("inception_v3", image_size=75)


def _mmd2_unbiased_loops(x, y):
    """KID written out with loops over pairs (independent of fid.py's matrix form)."""
    d = x.shape[1]

    def k(a, b):
        return (float(np.dot(a, b)) / d + 1.0) ** 3
    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def test_kernel_distance_is_the_unbiased_polynomial_mmd():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(7, 3)), rng.normal(size=(9, 3)) + 0.5
    assert fid_lib.kernel_distance(x, y) == pytest.approx(_mmd2_unbiased_loops(x, y), rel=1e-10)
    # Unbiased: two samples of one distribution average ~0 (FID would stay clearly positive).
    same = [fid_lib.kernel_distance(rng.normal(size=(40, 8)), rng.normal(size=(40, 8)))
            for _ in range(30)]
    shifted = fid_lib.kernel_distance(rng.normal(size=(40, 8)), rng.normal(size=(40, 8)) + 1)
    assert abs(np.mean(same)) < 0.1 * shifted
    with pytest.raises(ZooError, match="at least 2 images"):
        fid_lib.kernel_distance(x[:1], y)
    with pytest.raises(ZooError, match="one width"):
        fid_lib.kernel_distance(x, y[:, :2])


def test_available_feature_network_says_which_and_what_follows(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    name, note = fid_lib.available_feature_network()
    assert name == "random_conv"
    assert "not comparable with published FIDs" in note and fid_lib.INCEPTION_WEIGHTS_FILE in note
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / fid_lib.INCEPTION_WEIGHTS_FILE).write_bytes(b"h5")
    name, note = fid_lib.available_feature_network()
    assert name == "inception_v3" and "standard Keras ImageNet weights" in note


def test_random_conv_features_are_pooled_fixed_and_tell_images_apart():
    net = FEATURE_NETWORKS.create("random_conv")
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(4, 20, 20, 3)).astype(np.float32)
    feats = np.asarray(net(images))
    assert feats.shape == (4, 16 + 32 + 64)
    np.testing.assert_allclose(feats, np.asarray(FEATURE_NETWORKS.create("random_conv")(images)),
                               rtol=1e-6)  # the same seed, the same network
    dark, bright = np.zeros((2, 20, 20, 3), np.float32), np.ones((2, 20, 20, 3), np.float32)
    metric = METRICS.create("fid", feature_network="random_conv")
    assert metric(images[:2], images[2:]) < metric(dark, bright)
