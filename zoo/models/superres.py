"""WDSR-style super-resolution (Yu et al. 2018), Parti's upsampler, registered under `upsampler`.

Each 2x stage: a 3x3 head conv, `blocks` wide-activation residual blocks (3x3 conv to
channels * expansion, ReLU, 3x3 conv back), a 3x3 tail conv to 3 * 4 channels and a pixel
shuffle, plus WDSR's skip branch (5x5 conv on the stage input, pixel shuffle), added to the
bilinear upsampling of the stage input (a residual over bilinear). Scale 4 chains
two 2x stages. No text input (Parti sec. 2.1). With 12 blocks, 128 channels and expansion 4 a
2x stage has 14.2M parameters (Parti: "about 15M" for 256 -> 512, "about 30M" for 1024).

    up = zoo.create("upsampler", "wdsr_512")
    big = up(images)   # [B, 256, 256, 3] -> [B, 512, 512, 3], float in about [0, 1]
"""

import math

import keras
from keras import ops

from zoo.errors import ZooError, check_positive_ints
from zoo.layers.arguments import constructor_arguments
from zoo.layers.tracking import track_layers
from zoo.registry import UPSAMPLERS


@keras.saving.register_keras_serializable(package="zoo")
class WideResBlock(keras.layers.Layer):
    """x + conv3x3(relu(conv3x3_expand(x))) * res_scale."""

    def __init__(self, channels, expansion, res_scale=1.0, **kwargs):
        super().__init__(**kwargs)
        self.channels = channels
        self.expansion = expansion
        self.res_scale = res_scale
        self.expand = keras.layers.Conv2D(channels * expansion, 3, padding="same",
                                          activation="relu", name="expand")
        self.reduce = keras.layers.Conv2D(channels, 3, padding="same", name="reduce")

    def build(self, input_shape):
        self.expand.build(input_shape)
        self.reduce.build(tuple(input_shape[:-1]) + (self.channels * self.expansion,))

    def call(self, x):
        return x + self.reduce(self.expand(x)) * self.res_scale

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "expansion": self.expansion,
                "res_scale": self.res_scale}


@keras.saving.register_keras_serializable(package="zoo")
class WDSRStage(keras.layers.Layer):
    """One 2x WDSR stage on images centred at 0."""

    def __init__(self, blocks, channels, expansion, res_scale=1.0, **kwargs):
        super().__init__(**kwargs)
        self.blocks = blocks
        self.channels = channels
        self.expansion = expansion
        self.res_scale = res_scale
        self.head = keras.layers.Conv2D(channels, 3, padding="same", name="head")
        self.body = [WideResBlock(channels, expansion, res_scale, name=f"block{i}")
                     for i in range(blocks)]
        track_layers(self, self.body, "block")
        self.tail = keras.layers.Conv2D(3 * 4, 3, padding="same", name="tail")
        self.skip = keras.layers.Conv2D(3 * 4, 5, padding="same", name="skip")

    def build(self, input_shape):
        self.head.build(input_shape)
        wide = tuple(input_shape[:-1]) + (self.channels,)
        for block in self.body:
            block.build(wide)
        self.tail.build(wide)
        self.skip.build(input_shape)

    def call(self, x):
        y = self.head(x)
        for block in self.body:
            y = block(y)
        y = _depth_to_space(self.tail(y) + self.skip(x), 2)
        # The stage predicts a residual over bilinear upsampling of its input, so it starts
        # from (and should quickly beat) the bilinear baseline.
        size = (2 * ops.shape(x)[1], 2 * ops.shape(x)[2])
        return y + ops.image.resize(x, size, interpolation="bilinear")

    def get_config(self):
        return {**super().get_config(), "blocks": self.blocks, "channels": self.channels,
                "expansion": self.expansion, "res_scale": self.res_scale}


def _depth_to_space(x, r):
    b, h, w, c = ops.shape(x)[0], ops.shape(x)[1], ops.shape(x)[2], x.shape[-1]
    x = ops.reshape(x, (b, h, w, r, r, c // (r * r)))
    x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
    return ops.reshape(x, (b, h * r, w * r, c // (r * r)))


@UPSAMPLERS.register("wdsr")
@keras.saving.register_keras_serializable(package="zoo")
class WDSR(keras.Model):
    """WDSR super-resolution: images [B, H, W, 3] in [0, 1] -> [B, sH, sW, 3].

    Args:
        scale: int. Upscaling factor, a power of two (one 2x stage per factor of two).
        blocks: int. Residual blocks per stage (Parti: 12).
        channels: int. Width of the residual path (Parti: 128).
        expansion: int. Width multiplier inside a block (WDSR's wide activation).
        res_scale: float. Scale of each residual branch.
        input_size: int or None. Input side, used only to build the weights eagerly; any
            size works at call time.
    """

    def __init__(self, scale=2, blocks=12, channels=128, expansion=4, res_scale=1.0,
                 input_size=None, **kwargs):
        super().__init__(**kwargs)
        check_positive_ints("wdsr", scale=scale, blocks=blocks, channels=channels,
                            expansion=expansion)
        stages = int(round(math.log2(scale))) if scale >= 2 else 0
        if scale < 2 or 2 ** stages != scale:
            raise ZooError(f"upsampler scale must be a power of two >= 2, got {scale}")
        self.scale = scale
        self.blocks = blocks
        self.channels = channels
        self.expansion = expansion
        self.res_scale = res_scale
        self.input_size = input_size
        self.stages = [WDSRStage(blocks, channels, expansion, res_scale, name=f"stage{i}")
                       for i in range(stages)]
        track_layers(self, self.stages, "stage")
        self.build((None, input_size, input_size, 3))

    def build(self, input_shape):
        s = input_shape[1]
        for stage in self.stages:
            stage.build((None, s, s, 3))
            s = None if s is None else 2 * s
        self.built = True

    def call(self, images, training=False):
        shape = tuple(images.shape)
        if len(shape) != 4 or shape[-1] != 3:
            raise ZooError(f"upsampler takes images [batch, height, width, 3], got shape "
                           f"{shape}")
        x = ops.cast(images, "float32") - 0.5
        for stage in self.stages:
            x = stage(x)
        return x + 0.5

    def upsample(self, images):
        """Upscaled images clipped to [0, 1]."""
        return ops.clip(self(images), 0.0, 1.0)

    def get_config(self):
        return {**super().get_config(), "scale": self.scale, "blocks": self.blocks,
                "channels": self.channels, "expansion": self.expansion,
                "res_scale": self.res_scale, "input_size": self.input_size}

    @classmethod
    def from_config(cls, config):
        return cls(**constructor_arguments(config))


def wdsr_param_count(scale=2, blocks=12, channels=128, expansion=4, **_):
    """Analytic parameter count of a WDSR (no weights allocated)."""
    c, w = channels, channels * expansion
    stage = (9 * 3 * c + c) + blocks * ((9 * c * w + w) + (9 * w * c + c)) \
        + (9 * c * 12 + 12) + (25 * 3 * 12 + 12)
    return stage * int(round(math.log2(scale)))


@UPSAMPLERS.register("wdsr_512", builds=WDSR)
def wdsr_512(**overrides) -> WDSR:
    """Parti's 256 -> 512 upsampler: 12 blocks, 128 channels (about 15M parameters)."""
    return WDSR(**{**dict(scale=2, blocks=12, channels=128, expansion=4), **overrides})


@UPSAMPLERS.register("wdsr_1024", builds=WDSR)
def wdsr_1024(**overrides) -> WDSR:
    """Parti's 256 -> 1024 upsampler: two 2x stages of 12 blocks, 128 channels (about 30M)."""
    return WDSR(**{**dict(scale=4, blocks=12, channels=128, expansion=4), **overrides})


@UPSAMPLERS.register("wdsr_tiny", builds=WDSR)
def wdsr_tiny(**overrides) -> WDSR:
    """CPU demo / test size: 2x, 2 blocks, 16 channels."""
    return WDSR(**{**dict(scale=2, blocks=2, channels=16, expansion=2), **overrides})


@UPSAMPLERS.register("wdsr_tiny_4x", builds=WDSR)
def wdsr_tiny_4x(**overrides) -> WDSR:
    """Test size: 4x (two stages), 1 block, 8 channels."""
    return WDSR(**{**dict(scale=4, blocks=1, channels=8, expansion=2), **overrides})
