"""StyleGAN2-style residual discriminator, registered under the `discriminator` kind."""

import math

import keras
from keras import ops

from zoo.layers.arguments import constructor_arguments
from zoo.layers.tracking import track_layers
from zoo.registry import DISCRIMINATORS


@keras.saving.register_keras_serializable(package="zoo")
class DownBlock(keras.layers.Layer):
    """Residual block: two 3x3 convs + 2x average-pool, skip through pool + 1x1 conv, / sqrt 2."""

    def __init__(self, channels, **kwargs):
        super().__init__(**kwargs)
        self.channels = channels
        self.conv1 = keras.layers.Conv2D(channels, 3, padding="same", name="conv1")
        self.conv2 = keras.layers.Conv2D(channels, 3, padding="same", name="conv2")
        self.skip = keras.layers.Conv2D(channels, 1, use_bias=False, name="skip")
        self.pool = keras.layers.AveragePooling2D(2)

    def build(self, input_shape):
        self.conv1.build(input_shape)
        self.conv2.build(tuple(input_shape[:-1]) + (self.channels,))
        self.skip.build(input_shape)

    def call(self, x):
        y = ops.leaky_relu(self.conv1(x), 0.2)
        y = self.pool(ops.leaky_relu(self.conv2(y), 0.2))
        return (y + self.skip(self.pool(x))) * (1.0 / math.sqrt(2.0))

    def get_config(self):
        return {**super().get_config(), "channels": self.channels}


@DISCRIMINATORS.register("stylegan")
@keras.saving.register_keras_serializable(package="zoo")
class StyleGANDiscriminator(keras.Model):
    """StyleGAN2's residual discriminator (Karras et al. 2020, fig. 7c), logits [B, 1].

    from-RGB 1x1 conv, residual down blocks to 4x4, minibatch standard deviation, a 3x3 conv,
    then two dense layers. Channels double per halving from `channels`, capped at
    `max_channels`.

    Args:
        image_size: int. Side of the (square) input images (a power of two >= 8).
        channels: int. Width at full resolution.
        max_channels: int. Cap on the width.
    """

    def __init__(self, image_size=256, channels=64, max_channels=512, **kwargs):
        super().__init__(**kwargs)
        self.image_size = image_size
        self.channels = channels
        self.max_channels = max_channels
        levels = int(round(math.log2(image_size))) - 2
        if image_size < 8 or 2 ** (levels + 2) != image_size:
            from zoo.errors import ZooError
            raise ZooError(f"discriminator image_size must be a power of two >= 8, "
                           f"got {image_size}")
        widths = [min(channels * 2 ** i, max_channels) for i in range(levels + 1)]
        self.from_rgb = keras.layers.Conv2D(widths[0], 1, name="from_rgb")
        self.down = [DownBlock(widths[i + 1], name=f"down{i}") for i in range(levels)]
        track_layers(self, self.down, "down")
        self.final_conv = keras.layers.Conv2D(widths[-1], 3, padding="same", name="final_conv")
        self.fc = keras.layers.Dense(widths[-1], name="fc")
        self.out = keras.layers.Dense(1, name="out")
        self.build((None, image_size, image_size, 3))

    def build(self, input_shape):
        s = self.image_size
        self.from_rgb.build((None, s, s, 3))
        c = self.from_rgb.filters
        for block in self.down:
            block.build((None, s, s, c))
            s, c = s // 2, block.channels
        self.final_conv.build((None, 4, 4, c + 1))
        self.fc.build((None, 16 * c))
        self.out.build((None, c))
        self.built = True

    def call(self, images, training=False):
        x = ops.leaky_relu(self.from_rgb(ops.cast(images, "float32") * 2.0 - 1.0), 0.2)
        for block in self.down:
            x = block(x)
        # Minibatch standard deviation over the batch, as one extra feature map.
        std = ops.sqrt(ops.var(x, axis=0) + 1e-8)
        feat = ops.ones_like(x[..., :1]) * ops.mean(std)
        x = ops.concatenate([x, feat], axis=-1)
        x = ops.leaky_relu(self.final_conv(x), 0.2)
        x = ops.reshape(x, (ops.shape(x)[0], -1))
        return self.out(ops.leaky_relu(self.fc(x), 0.2))

    def get_config(self):
        return {**super().get_config(), "image_size": self.image_size,
                "channels": self.channels, "max_channels": self.max_channels}

    @classmethod
    def from_config(cls, config):
        return cls(**constructor_arguments(config))
