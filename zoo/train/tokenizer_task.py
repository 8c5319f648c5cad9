"""Training stage for the ViT-VQGAN tokenizer (task `vit_vqgan`), generator + discriminator.

    # gin/runs/tokenizer_tiny_shapes.gin
    train.task = 'vit_vqgan'
    vit_vqgan.tokenizer = 'vit_vqgan_tiny'

Losses (ViT-VQGAN sec. 3.3, weights configurable): L2 1.0, logit-Laplace 0.1, perceptual 0.1,
adversarial 0.1 (StyleGAN logistic, optional R1), plus the quantizer's codebook + commitment
loss. Two update groups: 'generator' (tokenizer) and 'discriminator', each AdamW (0.9, 0.99,
weight decay 1e-4) with linear warm-up then cosine decay.

Parti's decoder fine-tune: `init_from = '<tokenizer run dir>'`, `freeze_encoder = True`,
`tokenizer_options = {'decoder_blocks': ..., 'logit_laplace': False}`: the encoder and codebook
are copied from that run and frozen, the new decoder trains without the final sigmoid and the
logit-Laplace loss (see gin/runs/tokenizer_tiny_finetune_decoder.gin).
"""

import logging
import math
from typing import Any, Dict, Mapping, Optional

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from zoo.errors import ZooError
from zoo.models import losses as L
from zoo.registry import DATASETS, DISCRIMINATORS, FEATURE_NETWORKS, IMAGE_TOKENIZERS, TASKS
from zoo.train import run_info
from zoo.train.task import Task, UpdateGroup

log = logging.getLogger("zoo")

# Encoder-side settings that must match when copying an encoder from another run.
ENCODER_KEYS = ("image_size", "patch_size", "blocks", "heads", "width", "mlp_dim", "head_dim",
                "codebook_size", "lookup_dim")


@keras.saving.register_keras_serializable(package="zoo")
class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from 0 to `peak` over `warmup_steps`, then cosine decay to `end` at
    `total_steps` (ViT-VQGAN: 1e-4 over 50k steps, then down to 5e-5)."""

    def __init__(self, peak, end, warmup_steps, total_steps):
        self.peak = float(peak)
        self.end = float(end)
        self.warmup_steps = int(warmup_steps)
        self.total_steps = int(total_steps)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warm = float(max(self.warmup_steps, 1))
        span = float(max(self.total_steps - self.warmup_steps, 1))
        progress = tf.clip_by_value((step - self.warmup_steps) / span, 0.0, 1.0)
        cosine = self.end + 0.5 * (self.peak - self.end) * (1.0 + tf.cos(math.pi * progress))
        return tf.where(step < self.warmup_steps, self.peak * (step + 1.0) / warm, cosine)

    def get_config(self):
        return {"peak": self.peak, "end": self.end, "warmup_steps": self.warmup_steps,
                "total_steps": self.total_steps}


def make_optimizer(learning_rate, end_learning_rate, warmup_steps, total_steps, beta_1,
                   beta_2, weight_decay, name):
    opt = keras.optimizers.AdamW(
        learning_rate=WarmupCosine(learning_rate, end_learning_rate, warmup_steps, total_steps),
        beta_1=beta_1, beta_2=beta_2, weight_decay=weight_decay, name=name)
    opt.exclude_from_weight_decay(var_names=["bias", "gamma", "beta", "codebook", "embedding"])
    return opt


def make_data(dataset, split, image_size, batch_size, seed, start_step, options):
    """Batches of `dataset` from the shared pipeline (zoo.data.pipeline.make_dataset)."""
    try:
        from zoo.data.pipeline import get_dataset, make_dataset
    except ImportError as e:
        raise ZooError(f"the data pipeline is not available ({e})") from None
    # Built first: the dataset's own arguments (e.g. its `seed`) must not collide with the
    # pipeline's (the data-order `seed`).
    return make_dataset(dataset=get_dataset(dataset, **dict(options or {})), split=split,
                        image_size=image_size, batch_size=batch_size, tokenizer=None,
                        seed=seed, start_step=start_step)


def side_by_side(inputs, outputs):
    """[N, H, W, 3] pairs -> [N, H, 2W + 2, 3]: input, a white gap, output."""
    inputs, outputs = np.asarray(inputs, np.float32), np.asarray(outputs, np.float32)
    if outputs.shape[1:3] != inputs.shape[1:3]:
        outputs = tf.image.resize(outputs, inputs.shape[1:3], method="nearest").numpy()
    gap = np.ones(inputs.shape[:2] + (2, 3), np.float32)
    return np.clip(np.concatenate([inputs, gap, outputs], axis=2), 0.0, 1.0)


class AdversarialTraining:
    """The perceptual + adversarial settings and the two AdamW optimizers that the `vit_vqgan`
    and `superres` tasks share (a mixin: the task keeps its own generator and losses)."""

    GAN_KEYS = ("perceptual_weight", "adversarial_weight", "feature_network",
                "feature_network_options", "discriminator_options", "r1_weight",
                "adversarial_start_step", "learning_rate", "end_learning_rate", "warmup_steps",
                "total_steps", "discriminator_learning_rate", "beta_1", "beta_2",
                "weight_decay", "clip_norm")
    ADVERSARIAL_ARGS = GAN_KEYS + ("discriminator",)

    def set_adversarial_options(self, task_args: Mapping[str, Any]):
        """Takes the adversarial settings (ADVERSARIAL_ARGS) from a task's `__init__`
        arguments: the task calls `self.set_adversarial_options(locals())`, so each setting is
        named once, in the task's signature (which gin binds)."""
        missing = [k for k in self.ADVERSARIAL_ARGS if k not in task_args]
        if missing:
            raise TypeError(f"{type(self).__name__}.__init__ lacks adversarial arguments "
                            f"{missing}")
        a = {k: task_args[k] for k in self.ADVERSARIAL_ARGS}
        self.perceptual_weight = float(a["perceptual_weight"])
        self.adversarial_weight = float(a["adversarial_weight"])
        self.feature_network = a["feature_network"]
        self.feature_network_options = (
            FEATURE_NETWORKS.resolve(a["feature_network"], a["feature_network_options"])
            if a["perceptual_weight"] else dict(a["feature_network_options"] or {}))
        self.discriminator_name = a["discriminator"]
        self.discriminator_options = DISCRIMINATORS.resolve(a["discriminator"],
                                                            a["discriminator_options"])
        self.r1_weight = float(a["r1_weight"])
        self.adversarial_start_step = int(a["adversarial_start_step"])
        self.learning_rate = float(a["learning_rate"])
        self.end_learning_rate = float(a["end_learning_rate"])
        self.warmup_steps = int(a["warmup_steps"])
        self.total_steps = int(a["total_steps"])
        self.discriminator_learning_rate = a["discriminator_learning_rate"]
        self.beta_1, self.beta_2 = float(a["beta_1"]), float(a["beta_2"])
        self.weight_decay = float(a["weight_decay"])
        self.clip_norm = a["clip_norm"]

    def adversarial_config(self) -> Dict[str, Any]:
        return {**{k: getattr(self, k) for k in self.GAN_KEYS},
                "discriminator": self.discriminator_name}

    @property
    def adversarial(self):
        return self.adversarial_weight > 0

    def build_adversarial(self, image_size, generator_variables, generator_name):
        """Feature network, discriminator (when adversarial) and both optimizers."""
        self.features = (FEATURE_NETWORKS.create(self.feature_network,
                                                 **self.feature_network_options)
                         if self.perceptual_weight else None)
        self.discriminator = None
        if self.adversarial:
            opts = {"image_size": image_size, **self.discriminator_options}
            self.discriminator = DISCRIMINATORS.create(self.discriminator_name, **opts)
        self.generator_optimizer = make_optimizer(
            self.learning_rate, self.end_learning_rate, self.warmup_steps, self.total_steps,
            self.beta_1, self.beta_2, self.weight_decay, generator_name)
        self.generator_optimizer.build(generator_variables)
        if self.adversarial:
            d_lr = self.discriminator_learning_rate or self.learning_rate
            self.discriminator_optimizer = make_optimizer(
                d_lr, self.end_learning_rate * d_lr / self.learning_rate, self.warmup_steps,
                self.total_steps, self.beta_1, self.beta_2, self.weight_decay,
                "discriminator_adamw")
            self.discriminator_optimizer.build(self.discriminator.trainable_variables)

    def perceptual_and_adversarial(self, images, generated, g_loss, metrics):
        """Adds the perceptual and adversarial terms to the generator's loss `g_loss`;
        returns (losses {'generator'[, 'discriminator']}, metrics)."""
        if self.features is not None:
            p = L.perceptual_loss(self.features, images, generated)
            g_loss += self.perceptual_weight * p
            metrics["perceptual"] = p
        losses = {}
        if self.adversarial:
            active = self.generator_optimizer.iterations >= self.adversarial_start_step
            g_adv, d_loss, r1 = L.adversarial_terms(self.discriminator, images, generated,
                                                   active, self.r1_weight)
            g_loss += self.adversarial_weight * g_adv
            losses["discriminator"] = d_loss
            metrics["generator_adversarial"] = g_adv
            metrics["discriminator_logistic"] = d_loss
            if self.r1_weight:
                metrics["r1"] = r1
        losses["generator"] = g_loss
        return losses, metrics

    def adversarial_groups(self, generator_variables):
        """The update groups: generator, then discriminator (when adversarial)."""
        groups = [UpdateGroup("generator", self.generator_optimizer, list(generator_variables),
                              self.clip_norm)]
        if self.adversarial:
            groups.append(UpdateGroup("discriminator", self.discriminator_optimizer,
                                      list(self.discriminator.trainable_variables),
                                      self.clip_norm))
        return groups

    def adversarial_trackables(self, **generator):
        """The checkpointed objects: the task's generator (e.g. tokenizer=...), then the
        discriminator when there is one (its key is a checkpoint key: keep it)."""
        out = dict(generator)
        if self.discriminator is not None:
            out["discriminator"] = self.discriminator
        return out


@TASKS.register("vit_vqgan", tiny={"feature_network": "tiny_conv"})
class ViTVQGANTask(AdversarialTraining, Task):
    """Trains a ViT-VQGAN image tokenizer with its discriminator.

    Args:
        tokenizer: str or None. Registered image tokenizer (size) name; None means the
            `init_from` run's tokenizer, else 'vit_vqgan_tiny'.
        tokenizer_options: dict. Overrides for the tokenizer (e.g. decoder sizes).
        dataset: str. Registered dataset name.
        dataset_options: dict. Extra arguments for `make_dataset`.
        l2_weight, logit_laplace_weight, perceptual_weight, adversarial_weight: float. Loss
            weights (ViT-VQGAN: 1.0, 0.1, 0.1, 0.1). Logit-Laplace applies only when the
            tokenizer has `logit_laplace=True`; adversarial 0 skips the discriminator's loss.
        feature_network: str. Registered feature network for the perceptual loss.
        feature_network_options: dict. Its arguments (e.g. {'weights_path': ...}).
        discriminator: str. Registered discriminator.
        discriminator_options: dict. Its arguments (image_size is the tokenizer's).
        r1_weight: float. R1 gradient penalty weight on real images (0: off).
        adversarial_start_step: int. Generator step before which the adversarial terms are 0.
        learning_rate, end_learning_rate, warmup_steps, total_steps: the warm-up + cosine
            schedule of both optimizers.
        discriminator_learning_rate: float or None (None: learning_rate).
        beta_1, beta_2, weight_decay: AdamW settings (ViT-VQGAN: 0.9, 0.99, 1e-4).
        clip_norm: float or None. Global-norm gradient clipping per group.
        init_from: str or None. A `vit_vqgan` run directory whose encoder and codebook are
            copied in (its tokenizer settings are the defaults for this one).
        freeze_encoder: bool. Keep encoder and codebook fixed (Parti's decoder fine-tune).
        image_summaries: int. How many input/reconstruction pairs the summary grid shows.
    """

    def __init__(self, tokenizer=None, tokenizer_options=None,
                 dataset="synthetic_shapes", dataset_options=None, l2_weight=1.0,
                 logit_laplace_weight=0.1, perceptual_weight=0.1, adversarial_weight=0.1,
                 feature_network="vgg16", feature_network_options=None,
                 discriminator="stylegan", discriminator_options=None, r1_weight=0.0,
                 adversarial_start_step=0, learning_rate=1e-4, end_learning_rate=5e-5,
                 warmup_steps=50000, total_steps=500000, discriminator_learning_rate=None,
                 beta_1=0.9, beta_2=0.99, weight_decay=1e-4, clip_norm=None, init_from=None,
                 freeze_encoder=False, image_summaries=8):
        self.init_from = init_from
        source = run_info.tokenizer_run(init_from, what="init_from") if init_from else None
        if tokenizer is None:  # default: the source run's tokenizer, else the CPU demo size
            tokenizer = source[0] if source is not None else "vit_vqgan_tiny"
        base = dict(source[1]) if source is not None and source[0] == tokenizer else {}
        self.tokenizer_name = tokenizer
        self.tokenizer_options = IMAGE_TOKENIZERS.resolve(
            tokenizer, {**base, **dict(tokenizer_options or {})})
        self.dataset_name = dataset
        # Resolved (gin bindings of the dataset included), so run.json names the data it read.
        self.dataset_options = DATASETS.resolve(dataset, dataset_options)
        self.l2_weight = float(l2_weight)
        self.logit_laplace_weight = float(logit_laplace_weight)
        self.set_adversarial_options(locals())
        self.freeze_encoder = bool(freeze_encoder)
        self.image_summaries = int(image_summaries)
        self.tokenizer = None

    # -- Task API ------------------------------------------------------------------------------

    def config(self):
        return {"tokenizer": self.tokenizer_name, "tokenizer_options": self.tokenizer_options,
                "dataset": self.dataset_name, "dataset_options": self.dataset_options,
                "l2_weight": self.l2_weight, "logit_laplace_weight": self.logit_laplace_weight,
                **self.adversarial_config(), "init_from": self.init_from,
                "freeze_encoder": self.freeze_encoder, "image_summaries": self.image_summaries}

    def build(self):
        self.tokenizer = IMAGE_TOKENIZERS.create(self.tokenizer_name, **self.tokenizer_options)
        if self.init_from:
            copy_encoder(self.init_from, self.tokenizer)
        if self.freeze_encoder:
            self.tokenizer.freeze_encoder()
        self.build_adversarial(self.tokenizer.image_size, self.tokenizer.trainable_variables,
                               "generator_adamw")

    def dataset(self, batch_size, seed, start_step=0):
        return make_data(self.dataset_name, "train", self.tokenizer_image_size(), batch_size,
                         seed, start_step, self.dataset_options)

    def tokenizer_image_size(self):
        if self.tokenizer is not None:
            return self.tokenizer.image_size
        return self.tokenizer_options.get("image_size") or IMAGE_TOKENIZERS.create(
            self.tokenizer_name, **self.tokenizer_options).image_size

    def update_groups(self):
        return self.adversarial_groups(self.tokenizer.trainable_variables)

    def trackables(self):
        return self.adversarial_trackables(tokenizer=self.tokenizer)

    def losses(self, batch, training=True):
        images = tf.cast(batch["image"], tf.float32)
        tok = self.tokenizer
        out = tok(images, training=training)
        recon = out["reconstruction"]
        l2 = L.l2_loss(images, recon)
        g_loss = self.l2_weight * l2 + out["vq_loss"]
        metrics = {"l2": l2, "psnr": L.psnr(images, ops.clip(recon, 0.0, 1.0)),
                   "vq_loss": out["vq_loss"], "perplexity": out["perplexity"],
                   "codebook_usage": tok.quantizer.usage()}
        if tok.logit_laplace and self.logit_laplace_weight:
            ll = L.logit_laplace_loss(images, out["raw"])
            g_loss += self.logit_laplace_weight * ll
            metrics["logit_laplace"] = ll
        return self.perceptual_and_adversarial(images, recon, g_loss, metrics)

    def after_step(self, step):
        q = self.tokenizer.quantizer
        if not self.freeze_encoder and q.restart_dead_codes_ and step % q.usage_window == 0:
            n = q.restart_dead_codes()
            if n:
                log.info("zoo: step %d: restarted %d unused codes", step, n)

    def summaries(self, batch):
        images = np.asarray(batch["image"], np.float32)[: self.image_summaries]
        recon = np.asarray(self.tokenizer.reconstruct(images))
        return {"reconstructions": side_by_side(images, recon),
                "codebook_usage": float(self.tokenizer.quantizer.usage())}


# -- helpers used by other stages --------------------------------------------------------------

def load_tokenizer(model_dir):
    """The trained tokenizer of a `vit_vqgan` run directory (latest valid checkpoint)."""
    from zoo.train.loop import load_task
    task = load_task(model_dir)
    tok = getattr(task, "tokenizer", None)
    if tok is None:
        raise ZooError(f"{model_dir} is a run of a task without a tokenizer")
    return tok


def encode_run(tokenizer_dir, output, **kwargs):
    """Encodes a dataset with the tokenizer of the `vit_vqgan` run `tokenizer_dir` into code
    records in `output` (what zoo-encode runs); `kwargs` go to
    `zoo.data.records.encode_dataset`. Returns the split's info dict."""
    from zoo.data.records import encode_dataset
    if not tokenizer_dir:
        raise ZooError("--tokenizer_dir is required (the model directory of a vit_vqgan run)")
    if not output:
        raise ZooError("--output is required (a directory for the TFRecords)")
    return encode_dataset(load_tokenizer(tokenizer_dir), output, **kwargs)


def copy_encoder(model_dir, tokenizer):
    """Copies encoder + codebook weights of the tokenizer trained in `model_dir`."""
    source = load_tokenizer(model_dir)
    a, b = source.get_config(), tokenizer.get_config()
    diff = [k for k in ENCODER_KEYS if a.get(k) != b.get(k)]
    if diff:
        k = diff[0]
        raise ZooError(f"cannot copy the encoder of {model_dir}: its {k} is {a.get(k)!r}, this "
                       f"tokenizer's is {b.get(k)!r} (encoder settings must match)")
    for src, dst in zip(source.encoder_layers(), tokenizer.encoder_layers()):
        dst.set_weights(src.get_weights())


def evaluate_reconstruction(tokenizer, images, batch_size=64):
    """{'psnr': mean dB, 'mse', 'codebook_usage': share of codes used on these images,
    'perplexity'} of encode -> decode on a held-out array of images."""
    encode = tf.function(tokenizer.encode)
    decode = tf.function(tokenizer.decode)
    psnrs, mses, counts = [], [], np.zeros(tokenizer.codebook_size)
    for i in range(0, len(images), batch_size):
        x = tf.convert_to_tensor(images[i:i + batch_size], tf.float32)
        codes = encode(x)
        y = decode(codes)
        mse = np.mean((np.asarray(x) - np.asarray(y)) ** 2, axis=(1, 2, 3))
        mses.append(mse)
        psnrs.append(10 * np.log10(1.0 / np.maximum(mse, 1e-10)))
        counts += np.bincount(np.asarray(codes).ravel(), minlength=tokenizer.codebook_size)
    p = counts / counts.sum()
    nz = p[p > 0]
    return {"psnr": float(np.mean(np.concatenate(psnrs))),
            "mse": float(np.mean(np.concatenate(mses))),
            "codebook_usage": float(np.mean(counts > 0)),
            "perplexity": float(np.exp(-np.sum(nz * np.log(nz))))}
