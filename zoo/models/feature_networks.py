"""Frozen feature networks for perceptual losses, registered under `feature_network`.

Each takes images in [0, 1] [B, H, W, 3] and returns a list of feature maps.
- `vgg16`: keras.applications VGG16 with ImageNet weights read from a local file (never
  downloaded at run time).
- `tiny_conv`: a small random-feature conv net (fixed seed) that needs no file, for tests and
  CPU demos. Random conv features still make a useful perceptual distance (they respond to
  edges and local structure), but they are not VGG's.
"""

import os

import keras
from keras import ops

from zoo.errors import ZooError
from zoo.registry import FEATURE_NETWORKS

VGG16_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
VGG16_LAYERS = ("block1_conv2", "block2_conv2", "block3_conv3", "block4_conv3", "block5_conv3")


def keras_models_dir():
    """Where Keras caches downloaded weights: $KERAS_HOME/models or ~/.keras/models."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(home, "models")


def default_vgg16_path():
    return os.path.join(keras_models_dir(), VGG16_FILE)


@FEATURE_NETWORKS.register("vgg16", needs="the VGG16 ImageNet weights file")
def vgg16(weights_path=None, layers=VGG16_LAYERS):
    """VGG16 conv features (LPIPS layers) with ImageNet weights from a local .h5 file.

    Args:
        weights_path: str or None. The no-top weights file; None means Keras's cache,
            $KERAS_HOME/models/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5.
        layers: tuple of str. VGG16 layer names whose outputs are returned.
    """
    path = os.path.expanduser(weights_path or default_vgg16_path())
    if not os.path.isfile(path):
        raise ZooError(
            f"VGG16 weights not found at {path}; on a machine with internet run "
            f"python -c \"import keras; keras.applications.VGG16(include_top=False)\" "
            f"(it saves {VGG16_FILE} in ~/.keras/models/) and copy the file to {path}, or "
            f"set vgg16.weights_path, or use the feature network 'tiny_conv'")
    base = keras.applications.VGG16(include_top=False, weights=None, input_shape=(None, None, 3))
    try:
        base.load_weights(path)
    except Exception as e:  # noqa: BLE001 -- h5py/Keras raise many types for a bad file
        raise ZooError(f"could not load VGG16 weights from {path}: {e}; expected Keras's "
                       f"{VGG16_FILE}") from None
    known = [layer.name for layer in base.layers]
    for name in layers:
        if name not in known:
            from zoo.errors import suggest
            raise ZooError(f"VGG16 has no layer {name!r}; {suggest(name, known, 'layer')}")
    features = keras.Model(base.input, [base.get_layer(n).output for n in layers])
    features.trainable = False
    inputs = keras.Input((None, None, 3))
    outputs = features(_caffe_preprocess(inputs))
    model = keras.Model(inputs, outputs, name="vgg16_features")
    model.trainable = False
    return model


def _caffe_preprocess(images):
    # keras.applications.vgg16.preprocess_input on [0, 255] RGB: BGR, ImageNet means removed.
    x = images * 255.0
    x = ops.flip(x, axis=-1)
    return x - ops.convert_to_tensor([103.939, 116.779, 123.68])


@FEATURE_NETWORKS.register("tiny_conv")
def tiny_conv(channels=(16, 32, 64), seed=0):
    """Random-feature conv net (3x3 convs, ReLU, 2x pooling between stages), frozen.

    Args:
        channels: tuple of int. Width of each stage; one feature map per stage.
        seed: int. Initialisation seed (the same seed gives the same network).
    """
    inputs = keras.Input((None, None, 3))
    x = inputs * 2.0 - 1.0
    outputs = []
    for i, c in enumerate(channels):
        if i:
            x = keras.layers.AveragePooling2D(2, padding="same")(x)
        init = keras.initializers.HeNormal(seed=seed + i)
        x = keras.layers.Conv2D(c, 3, padding="same", activation="relu", kernel_initializer=init,
                                name=f"conv{i}")(x)
        outputs.append(x)
    model = keras.Model(inputs, outputs, name="tiny_conv_features")
    model.trainable = False
    return model
