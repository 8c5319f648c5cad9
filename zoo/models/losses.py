"""Image reconstruction losses: L2, logit-Laplace, perceptual, adversarial (StyleGAN logistic)."""

import tensorflow as tf
from keras import ops

from zoo.tokenizers.vit_vqgan import LAPLACE_EPS


def l2_loss(target, prediction):
    """Mean squared error over pixels and channels."""
    return ops.mean(ops.square(ops.cast(target, "float32") - ops.cast(prediction, "float32")))


def logit_laplace_loss(target, raw, eps=LAPLACE_EPS):
    """Negative log-likelihood per sub-pixel of the logit-Laplace distribution (DALL-E A.3).

    Args:
        target: images in [0, 1], [B, H, W, 3].
        raw: decoder outputs [B, H, W, 6]: mu (3 channels) then log-scale (3 channels).
        eps: pixels are mapped to (eps, 1 - eps) so that logit(x) is finite.
    """
    x = ops.cast(target, "float32") * (1.0 - 2.0 * eps) + eps
    mu, log_b = raw[..., :3], ops.clip(raw[..., 3:6], -7.0, 7.0)
    logit_x = ops.log(x) - ops.log(1.0 - x)
    nll = (ops.abs(logit_x - mu) * ops.exp(-log_b) + log_b + ops.log(2.0)
           + ops.log(x * (1.0 - x)))
    return ops.mean(nll)


def _normalize_channels(f, eps=1e-10):
    return f * ops.rsqrt(ops.sum(ops.square(f), axis=-1, keepdims=True) + eps)


def perceptual_loss(feature_network, target, prediction):
    """LPIPS-style distance without learned weights: for each feature map, the mean squared
    difference of channel-normalised features, summed over the network's layers."""
    both = ops.concatenate([ops.cast(target, "float32"), ops.cast(prediction, "float32")], 0)
    features = feature_network(both)
    if not isinstance(features, (list, tuple)):
        features = [features]
    n = ops.shape(target)[0]
    total = 0.0
    for f in features:
        f = _normalize_channels(ops.cast(f, "float32"))
        total = total + ops.mean(ops.sum(ops.square(f[:n] - f[n:]), axis=-1))
    return total


def generator_adversarial_loss(fake_logits):
    """Non-saturating logistic loss (StyleGAN): softplus(-D(G(z)))."""
    return ops.mean(ops.softplus(-ops.cast(fake_logits, "float32")))


def discriminator_adversarial_loss(real_logits, fake_logits):
    """Logistic loss: softplus(D(fake)) + softplus(-D(real))."""
    return (ops.mean(ops.softplus(ops.cast(fake_logits, "float32")))
            + ops.mean(ops.softplus(-ops.cast(real_logits, "float32"))))


def r1_penalty(discriminator, real_images):
    """R1 gradient penalty (Mescheder et al. 2018): E ||grad_x D(x)||^2 on real images."""
    real_images = tf.convert_to_tensor(real_images)
    with tf.GradientTape() as tape:
        tape.watch(real_images)
        logits = discriminator(real_images, training=True)
        total = tf.reduce_sum(logits)
    grads = tape.gradient(total, real_images)
    return tf.reduce_mean(tf.reduce_sum(tf.square(grads), axis=[1, 2, 3]))


def psnr(target, prediction, max_value=1.0):
    """Mean PSNR in dB over a batch (per-image, then averaged)."""
    mse = ops.mean(ops.square(ops.cast(target, "float32") - ops.cast(prediction, "float32")),
                   axis=(1, 2, 3))
    return ops.mean(10.0 * ops.log(max_value ** 2 / ops.maximum(mse, 1e-10)) / ops.log(10.0))


def adversarial_terms(discriminator, real, fake, active, r1_weight=0.0):
    """(generator loss, discriminator loss, R1) of one GAN step; all 0 while `active` is False.

    `active` is a boolean tensor (e.g. step >= start): before the GAN starts, the
    discriminator is not run at all (tf.cond), so a late start costs nothing.
    """
    def on():
        fake_logits = discriminator(fake, training=True)
        real_logits = discriminator(real, training=True)
        g = generator_adversarial_loss(fake_logits)
        d = discriminator_adversarial_loss(real_logits, fake_logits)
        r1 = r1_penalty(discriminator, real) if r1_weight else tf.constant(0.0)
        return g, d + 0.5 * r1_weight * r1, r1

    def off():
        zero = tf.constant(0.0)
        return zero, zero, zero

    return tf.cond(tf.convert_to_tensor(active), on, off)
