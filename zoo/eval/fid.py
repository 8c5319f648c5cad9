"""Frechet distance (FID) and kernel distance (KID) between image sets, and their feature networks.

    fid = METRICS.create("fid")                        # InceptionV3 pool features, local weights
    score = fid(generated_images, "path/to/reference_folder")

The distance between two Gaussians fitted to feature sets (Heusel et al. 2017):

    d^2 = |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2))

`tr((S1 S2)^(1/2))` is computed as the sum of the square roots of the eigenvalues of the
symmetric PSD matrix `S1^(1/2) S2 S1^(1/2)` (same eigenvalues as `S1 S2`), which stays real and
stable when the covariances are singular (fewer samples than feature dimensions), where
`scipy.linalg.sqrtm(S1 @ S2)` returns complex noise.

KID (`kernel_distance`) is the unbiased squared MMD with a cubic polynomial kernel: unlike FID
it does not grow as the number of images shrinks, so it is the figure to read for a few hundred.

`available_feature_network()` picks InceptionV3 when its standard weights file is on the
machine, else `random_conv` (a fixed random conv net, no weights file; figures then compare runs
of this project only). Feature networks (kind `feature_network`) are callables `features(images)
-> [N, D]` for float32 images in [0, 1], NHWC, any size (they resize), with an `image_size`
attribute.
"""

import os
from pathlib import Path
from typing import Iterable, Optional, Sequence, Tuple, Union

import numpy as np

from zoo.errors import ZooError
from zoo.registry import FEATURE_NETWORKS, METRICS

INCEPTION_WEIGHTS_FILE = "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"
INCEPTION_WEIGHTS_URL = ("https://storage.googleapis.com/tensorflow/keras-applications/"
                         "inception_v3/" + INCEPTION_WEIGHTS_FILE)
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")


# -- the distance ------------------------------------------------------------------------------

def feature_statistics(features) -> Tuple[np.ndarray, np.ndarray]:
    """(mean [D], covariance [D, D]) of features [N, D], in float64."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2:
        raise ZooError(f"features must be a [N, D] matrix, got shape {features.shape}")
    if features.shape[0] < 2:
        raise ZooError(f"FID needs at least 2 images per set, got {features.shape[0]}; "
                       f"generate more samples (--num_samples) or add reference images")
    if not np.all(np.isfinite(features)):
        raise ZooError("features contain NaN or Inf; check the images and the feature network")
    return features.mean(axis=0), np.cov(features, rowvar=False)


def _sqrt_psd(matrix):
    """Symmetric square root of a symmetric PSD matrix (negative round-off eigenvalues -> 0)."""
    values, vectors = np.linalg.eigh(matrix)
    values = np.clip(values, 0.0, None)
    return (vectors * np.sqrt(values)) @ vectors.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2).

    Args:
        mu1, mu2: [D] means.
        sigma1, sigma2: [D, D] covariances (symmetric positive semi-definite).
    """
    mu1 = np.atleast_1d(np.asarray(mu1, np.float64))
    mu2 = np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1 = np.atleast_2d(np.asarray(sigma1, np.float64))
    sigma2 = np.atleast_2d(np.asarray(sigma2, np.float64))
    d = mu1.shape[0]
    if mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise ZooError(f"statistics do not match: mu1 {mu1.shape}, sigma1 {sigma1.shape}, "
                       f"mu2 {mu2.shape}, sigma2 {sigma2.shape}; both sets must come from the "
                       f"same feature network")
    # Symmetrise: np.cov is symmetric up to round-off, eigh assumes it exactly.
    sigma1 = (sigma1 + sigma1.T) / 2
    sigma2 = (sigma2 + sigma2.T) / 2
    root1 = _sqrt_psd(sigma1)
    middle = root1 @ sigma2 @ root1
    eigenvalues = np.linalg.eigvalsh((middle + middle.T) / 2)
    trace_sqrt = np.sqrt(np.clip(eigenvalues, 0.0, None)).sum()
    diff = mu1 - mu2
    value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt
    # Tiny negative values are round-off of identical distributions.
    return float(max(value, 0.0))


def frechet_distance_from_features(features1, features2) -> float:
    """Frechet distance between Gaussians fitted to two feature sets [N1, D] and [N2, D]."""
    return frechet_distance(*feature_statistics(features1), *feature_statistics(features2))


def kernel_distance(features1, features2, max_subset: int = 1000) -> float:
    """Kernel Inception Distance (Binkowski et al. 2018): the unbiased squared MMD between two
    feature sets [N1, D], [N2, D] with the cubic polynomial kernel k(x, y) = (x.y / D + 1)^3.

    Unlike FID it has no bias that depends on the number of images, which makes it the
    figure to read for small sets (a few hundred images). Sets larger than `max_subset` are
    cut to their first `max_subset` rows.
    """
    x = np.asarray(features1, np.float64)[:max_subset]
    y = np.asarray(features2, np.float64)[:max_subset]
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ZooError(f"KID needs two [N, D] feature sets of one width, got {x.shape} and "
                       f"{y.shape}")
    m, n = len(x), len(y)
    if m < 2 or n < 2:
        raise ZooError(f"KID needs at least 2 images per set, got {m} and {n}")
    d = x.shape[1]
    kxx = (x @ x.T / d + 1.0) ** 3
    kyy = (y @ y.T / d + 1.0) ** 3
    kxy = (x @ y.T / d + 1.0) ** 3
    value = ((kxx.sum() - np.trace(kxx)) / (m * (m - 1))
             + (kyy.sum() - np.trace(kyy)) / (n * (n - 1)) - 2.0 * kxy.mean())
    return float(value)


def available_feature_network() -> Tuple[str, str]:
    """(name, note) of the feature network FID/KID can use on this machine without a download:
    InceptionV3 when its standard weights file is present (the published-FID setting), else
    `random_conv` (a fixed random conv net; the figure compares runs of this project only)."""
    if default_inception_weights_path().is_file():
        return "inception_v3", ("InceptionV3 pool features with the standard Keras ImageNet "
                                "weights (comparable in kind with published FIDs; few images "
                                "make it biased upwards)")
    return "random_conv", (
        f"random_conv: a fixed, untrained conv net (no weights file found at "
        f"{default_inception_weights_path()}); these FID/KID figures compare runs of this "
        f"project with each other and are not comparable with published FIDs unless the "
        f"standard Inception weights file ({INCEPTION_WEIGHTS_FILE}) is given")


# -- image loading ---------------------------------------------------------------------------

def list_images(folder) -> list:
    """Image files under `folder` (recursive, sorted)."""
    folder = Path(folder)
    if not folder.exists():
        raise ZooError(f"reference image folder {str(folder)!r} does not exist; pass "
                       f"--reference_dir=<a folder of PNG/JPEG images> (e.g. real images of the "
                       f"training data) or a .npz of statistics written by zoo-eval")
    if not folder.is_dir():
        raise ZooError(f"reference {str(folder)!r} is not a folder; pass a folder of images or a "
                       f".npz with 'mu' and 'sigma'")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS
                   and p.is_file())
    if not files:
        raise ZooError(f"reference folder {str(folder)!r} holds no images "
                       f"({', '.join(IMAGE_EXTENSIONS)}); put reference images there")
    return files


def load_image(path, size: Optional[int] = None) -> np.ndarray:
    """One image as float32 [H, W, 3] in [0, 1], optionally resized to size x size."""
    from PIL import Image
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            if size is not None and im.size != (size, size):
                im = im.resize((size, size), Image.BICUBIC)
            return np.asarray(im, dtype=np.float32) / 255.0
    except (OSError, ValueError) as e:
        raise ZooError(f"cannot read image {str(path)!r} ({e}); remove or replace it") from None


# -- feature networks ------------------------------------------------------------------------

def default_inception_weights_path() -> Path:
    """`$KERAS_HOME/models/<file>` or `~/.keras/models/<file>` (where Keras caches it)."""
    keras_home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(keras_home) / "models" / INCEPTION_WEIGHTS_FILE


@FEATURE_NETWORKS.register("inception_v3", needs="the InceptionV3 ImageNet weights file")
class InceptionV3Features:
    """InceptionV3 (keras.applications) pool features [N, 2048], ImageNet weights from a local file.

    Args:
        weights_path: the Keras weights file `inception_v3_weights_tf_dim_ordering_tf_kernels_
            notop.h5`; default `~/.keras/models/` (or `$KERAS_HOME/models/`). Never downloaded.
        image_size: side the images are resized to (299, InceptionV3's training resolution).
        batch_size: images per forward pass.
    """

    def __init__(self, weights_path: Optional[str] = None, image_size: int = 299,
                 batch_size: int = 32):
        path = Path(weights_path).expanduser() if weights_path else default_inception_weights_path()
        if not path.is_file():
            raise ZooError(
                f"InceptionV3 weights not found at {str(path)!r}; FID needs the Keras file "
                f"{INCEPTION_WEIGHTS_FILE} (ImageNet, no top). On a machine with internet: "
                f"wget {INCEPTION_WEIGHTS_URL} -P ~/.keras/models/ (or run "
                f"keras.applications.InceptionV3(include_top=False) once), then copy it here "
                f"or bind inception_v3.weights_path")
        import keras
        self.weights_path = str(path)
        self.image_size = int(image_size)
        self.batch_size = int(batch_size)
        self.model = keras.applications.InceptionV3(
            include_top=False, weights=None, pooling="avg",
            input_shape=(self.image_size, self.image_size, 3))
        try:
            self.model.load_weights(self.weights_path)
        except Exception as e:  # noqa: BLE001 -- h5py/keras raise many kinds
            raise ZooError(
                f"cannot load InceptionV3 weights from {self.weights_path!r} "
                f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); the file must "
                f"be Keras's {INCEPTION_WEIGHTS_FILE} from {INCEPTION_WEIGHTS_URL}") from None

    def __call__(self, images):
        import tensorflow as tf
        images = tf.convert_to_tensor(images, tf.float32)
        images = tf.image.resize(images, (self.image_size, self.image_size), method="bilinear")
        # keras.applications.inception_v3.preprocess_input: [0, 255] -> [-1, 1].
        return self.model(images * 2.0 - 1.0, training=False)


@FEATURE_NETWORKS.register("random_conv")
class RandomConvFeatures:
    """Features [N, 112] of a fixed random conv net (`tiny_conv`: 16, 32, 64 channels), each
    stage average-pooled over the image and concatenated. Needs no weights file; figures made
    with it compare runs of this project only (they are not published-FID comparable).

    Args:
        seed: initialisation seed of the conv net (the same seed, the same network).
        image_size: side the images are resized to first.
    """

    def __init__(self, seed: int = 0, image_size: int = 64):
        from zoo.models.feature_networks import tiny_conv
        self.net = tiny_conv(seed=seed)
        self.image_size = int(image_size)

    def __call__(self, images):
        import tensorflow as tf
        images = tf.image.resize(tf.convert_to_tensor(images, tf.float32),
                                 (self.image_size, self.image_size), method="bilinear")
        maps = self.net(images, training=False)
        return tf.concat([tf.reduce_mean(m, axis=[1, 2]) for m in maps], axis=-1)


def _feature_network(feature_network):
    if isinstance(feature_network, str):
        return FEATURE_NETWORKS.create(feature_network)
    if not callable(feature_network):
        raise ZooError(f"feature_network must be a registered name or a callable, got "
                       f"{feature_network!r}")
    return feature_network


ImageSource = Union[str, os.PathLike, np.ndarray, Sequence]


@METRICS.register("fid", tiny={"feature_network": "tiny_conv"})
class FrechetInceptionDistance:
    """FID between generated images and a reference set, with a registered feature network.

    Args:
        feature_network: name of a registered feature network (default `inception_v3`) or a
            callable images [N, H, W, 3] in [0, 1] -> features [N, D].
        batch_size: images per forward pass.
    """

    def __init__(self, feature_network: str = "inception_v3", batch_size: int = 32):
        if int(batch_size) < 1:
            raise ZooError(f"fid.batch_size must be at least 1, got {batch_size}")
        self.network = _feature_network(feature_network)
        self.batch_size = int(batch_size)

    @property
    def image_size(self) -> Optional[int]:
        return getattr(self.network, "image_size", None)

    def features(self, images: ImageSource) -> np.ndarray:
        """Features [N, D] of images: an array [N, H, W, 3], a list of arrays or paths, a folder."""
        if isinstance(images, (str, os.PathLike)):
            images = list_images(images)
        elif isinstance(images, np.ndarray):
            if images.ndim != 4 or images.shape[-1] != 3:
                raise ZooError(f"images must be [N, H, W, 3], got shape {images.shape}")
            images = list(images)
        out = []
        for start in range(0, len(images), self.batch_size):
            chunk = [self._as_array(x) for x in images[start:start + self.batch_size]]
            if len({x.shape for x in chunk}) > 1:  # mixed sizes: bring them to one size
                size = self.image_size or max(x.shape[0] for x in chunk)
                chunk = [_resize(x, size) for x in chunk]
            feats = np.asarray(self.network(np.stack(chunk)), dtype=np.float64)
            out.append(feats.reshape(feats.shape[0], -1))
        if not out:
            raise ZooError("no images to compute FID features from")
        return np.concatenate(out)

    def _as_array(self, item):
        if isinstance(item, (str, os.PathLike)):
            return load_image(item, self.image_size)
        return np.asarray(item, dtype=np.float32)

    def statistics(self, images: ImageSource) -> Tuple[np.ndarray, np.ndarray]:
        """(mu, sigma) of images, or read from a .npz with arrays `mu` and `sigma`."""
        if isinstance(images, (str, os.PathLike)) and str(images).endswith(".npz"):
            return load_statistics(images)
        return feature_statistics(self.features(images))

    def __call__(self, generated: ImageSource, reference: ImageSource) -> float:
        return frechet_distance(*self.statistics(generated), *self.statistics(reference))


def _resize(image, size):
    from PIL import Image
    im = Image.fromarray(np.clip(np.asarray(image) * 255.0 + 0.5, 0, 255).astype(np.uint8))
    return np.asarray(im.resize((size, size), Image.BICUBIC), np.float32) / 255.0


def save_statistics(path, mu, sigma) -> None:
    """Writes reference statistics (reuse them with --reference_dir=<path>.npz)."""
    np.savez(path, mu=np.asarray(mu), sigma=np.asarray(sigma))


def load_statistics(path) -> Tuple[np.ndarray, np.ndarray]:
    path = Path(path)
    if not path.is_file():
        raise ZooError(f"reference statistics file {str(path)!r} does not exist; pass a folder of "
                       f"images or a .npz written by zoo-eval (fid_reference_stats.npz)")
    try:
        with np.load(path) as data:
            return np.asarray(data["mu"]), np.asarray(data["sigma"])
    except (OSError, ValueError, KeyError) as e:
        raise ZooError(f"cannot read FID statistics from {str(path)!r} ({e}); it needs arrays "
                       f"'mu' and 'sigma'") from None
