"""Training stage for the super-resolution upsampler (task `superres`).

Pairs (Parti sec. 2.1): input = the tokenizer's reconstruction of the downsampled image, target =
the original; losses L2 + perceptual + adversarial (weights configurable). Without a tokenizer
run (`tokenizer_dir = None`) the input is the area-downsampled image itself.

    train.task = 'superres'
    superres.upsampler = 'wdsr_tiny'
    superres.tokenizer_dir = 'runs/tokenizer_tiny'
"""

import numpy as np
import tensorflow as tf
from keras import ops

from zoo.errors import ZooError
from zoo.models import losses as L
from zoo.registry import TASKS, UPSAMPLERS
from zoo.train.task import Task
from zoo.train.tokenizer_task import (AdversarialTraining, load_tokenizer, make_data,
                                      side_by_side)


@TASKS.register("superres", tiny={"feature_network": "tiny_conv"})
class SuperResTask(AdversarialTraining, Task):
    """Trains a registered upsampler on (tokenizer reconstruction of downsampled -> original).

    Args:
        upsampler: str. Registered upsampler name.
        upsampler_options: dict. Overrides for it.
        image_size: int. Target (high-resolution) side; the input side is image_size / scale.
        tokenizer_dir: str or None. A `vit_vqgan` run whose tokenizer makes the inputs (its
            image_size must be image_size / scale); None uses the downsampled images.
        dataset, dataset_options: the data (as in the `vit_vqgan` task).
        l2_weight, perceptual_weight, adversarial_weight: float. Loss weights.
        feature_network, feature_network_options: the perceptual loss's network.
        discriminator, discriminator_options, r1_weight, adversarial_start_step: the GAN part.
        learning_rate, end_learning_rate, warmup_steps, total_steps, discriminator_learning_rate,
            beta_1, beta_2, weight_decay, clip_norm: optimizers (AdamW, warm-up + cosine).
        image_summaries: int. Pairs shown in the summary grid.
    """

    def __init__(self, upsampler="wdsr_tiny", upsampler_options=None, image_size=64,
                 tokenizer_dir=None, dataset="synthetic_shapes", dataset_options=None,
                 l2_weight=1.0, perceptual_weight=0.1, adversarial_weight=0.1,
                 feature_network="vgg16", feature_network_options=None,
                 discriminator="stylegan", discriminator_options=None, r1_weight=0.0,
                 adversarial_start_step=0, learning_rate=1e-4, end_learning_rate=5e-5,
                 warmup_steps=1000, total_steps=100000, discriminator_learning_rate=None,
                 beta_1=0.9, beta_2=0.99, weight_decay=1e-4, clip_norm=None, image_summaries=8):
        self.upsampler_name = upsampler
        self.upsampler_options = UPSAMPLERS.resolve(upsampler, upsampler_options)
        self.image_size = int(image_size)
        self.tokenizer_dir = tokenizer_dir
        self.dataset_name = dataset
        self.dataset_options = dict(dataset_options or {})
        self.l2_weight = float(l2_weight)
        self.set_adversarial_options(locals())
        self.image_summaries = int(image_summaries)
        self.upsampler = None
        self.tokenizer = None

    def config(self):
        return {"upsampler": self.upsampler_name, "upsampler_options": self.upsampler_options,
                "image_size": self.image_size, "tokenizer_dir": self.tokenizer_dir,
                "dataset": self.dataset_name, "dataset_options": self.dataset_options,
                "l2_weight": self.l2_weight, **self.adversarial_config(),
                "image_summaries": self.image_summaries}

    def build(self):
        self.upsampler = UPSAMPLERS.create(self.upsampler_name, **self.upsampler_options)
        scale = self.upsampler.scale
        if self.image_size % scale:
            raise ZooError(f"superres image_size {self.image_size} is not a multiple of the "
                           f"upsampler's scale {scale}")
        self.low_size = self.image_size // scale
        if self.tokenizer_dir:
            self.tokenizer = load_tokenizer(self.tokenizer_dir)
            self.tokenizer.trainable = False
            if self.tokenizer.image_size != self.low_size:
                raise ZooError(
                    f"the tokenizer in {self.tokenizer_dir} takes {self.tokenizer.image_size}"
                    f"x{self.tokenizer.image_size} images but the upsampler's inputs are "
                    f"{self.low_size}x{self.low_size} (image_size {self.image_size} / scale "
                    f"{scale}); set superres.image_size = "
                    f"{self.tokenizer.image_size * scale}")
        self.build_adversarial(self.image_size, self.upsampler.trainable_variables,
                               "upsampler_adamw")

    def dataset(self, batch_size, seed, start_step=0):
        return make_data(self.dataset_name, "train", self.image_size, batch_size, seed,
                         start_step, self.dataset_options)

    def update_groups(self):
        return self.adversarial_groups(self.upsampler.trainable_variables)

    def trackables(self):
        return self.adversarial_trackables(upsampler=self.upsampler)

    def inputs(self, images):
        """The upsampler's inputs for high-resolution `images`."""
        # Area downsampling by the integer scale, as average pooling: XLA (TPUs) has no
        # ResizeArea kernel.
        scale = self.image_size // self.low_size
        low = tf.nn.avg_pool2d(images, scale, scale, "VALID")
        if self.tokenizer is not None:
            low = self.tokenizer.decode(self.tokenizer.encode(low))
        return tf.stop_gradient(low)

    def losses(self, batch, training=True):
        images = tf.cast(batch["image"], tf.float32)
        low = self.inputs(images)
        pred = self.upsampler(low, training=training)
        l2 = L.l2_loss(images, pred)
        g_loss = self.l2_weight * l2
        baseline = tf.image.resize(low, (self.image_size, self.image_size), method="bilinear")
        metrics = {"l2": l2, "psnr": L.psnr(images, ops.clip(pred, 0.0, 1.0)),
                   "psnr_bilinear": L.psnr(images, ops.clip(baseline, 0.0, 1.0))}
        return self.perceptual_and_adversarial(images, pred, g_loss, metrics)

    def summaries(self, batch):
        images = np.asarray(batch["image"], np.float32)[: self.image_summaries]
        pred = np.asarray(self.upsampler.upsample(self.inputs(tf.constant(images))))
        return {"upsampled": side_by_side(images, pred)}
