"""The factorized, l2-normalised vector quantizer of ViT-VQGAN, with codebook usage tracking."""

import keras
import numpy as np
import tensorflow as tf
from keras import ops


def l2_normalize(x, axis=-1, eps=1e-6):
    return x * ops.rsqrt(ops.maximum(ops.sum(ops.square(x), axis=axis, keepdims=True), eps))


@keras.saving.register_keras_serializable(package="zoo")
class FactorizedQuantizer(keras.layers.Layer):
    """Nearest-code lookup by cosine similarity in a low-dimensional space (ViT-VQGAN sec. 3.2).

    The input is already projected to `lookup_dim` (the encoder owns the down-projection, the
    decoder the up-projection). Inputs and codebook are l2-normalised, so the nearest code in
    Euclidean distance is the one of highest cosine similarity. Gradients pass straight through.

    Loss: ||sg[z] - e||^2 + beta * ||z - sg[e]||^2 on the normalised vectors, averaged.

    Codebook usage: a ring of the last `usage_window` training batches' code histograms gives
    the share of codes used in that window (`usage()`); `restart_dead_codes()` (called by the
    training task every `usage_window` steps when `restart_dead_codes` is on) re-initialises
    codes unused in the whole window from recent encoder outputs, the usual remedy for dead codes
    (as in Jukebox / "codebook reset"), sampled in proportion to their distance to their code. Under a multi-replica strategy the histograms and the
    latent buffer keep the first replica's batch only.

    Args:
        codebook_size: int. Number of codes (ViT-VQGAN: 8192).
        lookup_dim: int. Width of the lookup space (ViT-VQGAN: 32).
        beta: float. Commitment weight (ViT-VQGAN: 0.25).
        usage_window: int. Training steps over which usage is measured.
        restart_dead_codes: bool. Whether `restart_dead_codes()` does anything.
    """

    def __init__(self, codebook_size=8192, lookup_dim=32, beta=0.25, usage_window=100,
                 restart_dead_codes=False, **kwargs):
        super().__init__(**kwargs)
        self.codebook_size = codebook_size
        self.lookup_dim = lookup_dim
        self.beta = beta
        self.usage_window = usage_window
        self.restart_dead_codes_ = restart_dead_codes

    def build(self, input_shape):
        self.codebook = self.add_weight(
            name="codebook", shape=(self.codebook_size, self.lookup_dim),
            # Unit-norm codes on average: only directions matter, and with Adam the raw norm
            # sets how fast a code can turn (norm ~6 at stddev 1 made codes nearly frozen).
            initializer=keras.initializers.RandomNormal(stddev=self.lookup_dim ** -0.5))
        # Usage state (not trained, but checkpointed so a resumed run measures the same).
        self.histograms = self.add_weight(
            name="histograms", shape=(self.usage_window, self.codebook_size),
            initializer="zeros", trainable=False, aggregation="only_first_replica")
        self.counter = self.add_weight(
            name="counter", shape=(), dtype="int64", initializer="zeros", trainable=False,
            aggregation="only_first_replica")
        self.latents = self.add_weight(
            name="latents", shape=(self.codebook_size, self.lookup_dim), initializer="zeros",
            trainable=False, aggregation="only_first_replica")

    def normalized_codebook(self):
        return l2_normalize(ops.cast(self.codebook, "float32"))

    def lookup(self, z):
        """Codes [...] of the nearest normalised codebook entries to z [..., lookup_dim]."""
        zn = l2_normalize(ops.cast(z, "float32"))
        flat = ops.reshape(zn, (-1, self.lookup_dim))
        sims = ops.matmul(flat, ops.transpose(self.normalized_codebook()))
        codes = ops.cast(ops.argmax(sims, axis=-1), "int32")
        return ops.reshape(codes, ops.shape(z)[:-1])

    def embed(self, codes):
        """Normalised code vectors [..., lookup_dim] for integer codes."""
        return ops.take(self.normalized_codebook(), codes, axis=0)

    def call(self, z, training=False):
        """Returns (z_q with straight-through gradients, codes, vq loss, batch perplexity)."""
        z = ops.cast(z, "float32")
        zn = l2_normalize(z)
        codes = self.lookup(z)
        e = self.embed(codes)
        codebook_loss = ops.mean(ops.sum(ops.square(ops.stop_gradient(zn) - e), axis=-1))
        commit_loss = ops.mean(ops.sum(ops.square(zn - ops.stop_gradient(e)), axis=-1))
        loss = codebook_loss + self.beta * commit_loss
        zq = zn + ops.stop_gradient(e - zn)
        flat_codes = ops.reshape(codes, (-1,))
        # A segment sum, not bincount: XLA (TPUs) needs the histogram's size at compile time.
        hist = tf.math.unsorted_segment_sum(tf.ones_like(flat_codes, tf.float32),
                                            tf.cast(flat_codes, tf.int32), self.codebook_size)
        probs = hist / ops.maximum(ops.sum(hist), 1.0)
        perplexity = ops.exp(-ops.sum(probs * ops.log(probs + 1e-10)))
        if training:
            # Distance of each latent to its code (cosine): restarts favour the worst served.
            err = ops.reshape(ops.sum(ops.square(ops.stop_gradient(zn - e)), axis=-1), (-1,))
            self._record(hist, ops.reshape(ops.stop_gradient(zn), (-1, self.lookup_dim)), err)
        return zq, codes, loss, perplexity

    def _record(self, hist, flat_latents, errors):
        slot = ops.cast(self.counter % self.usage_window, "int32")
        onehot = ops.one_hot(slot, self.usage_window)[:, None]
        self.histograms.assign(self.histograms * (1.0 - onehot) + onehot * hist[None, :])
        self.counter.assign_add(ops.cast(1, "int64"))
        # Keep a sample of this batch's latents for dead-code restarts, drawn with probability
        # proportional to their quantisation error (k-means++ style): new codes go where the
        # codebook serves the data worst, not to the most common (e.g. background) patches.
        logits = ops.log(errors + 1e-8)[None, :]
        # Stateless, seeded by the checkpointed counter: a resumed run draws the same sample
        # (an unseeded random op restarts its stream on resume; see tests/test_resume.py).
        # int32 seeds: XLA (TPUs) compiles stateless_categorical only with them; the draws are
        # those of the int64 seeds of the same values.
        seed = tf.stack([tf.cast(tf.convert_to_tensor(self.counter) % (2 ** 31), tf.int32),
                         tf.constant(0x5EED, tf.int32)])
        idx = tf.random.stateless_categorical(logits, self.codebook_size, seed=seed,
                                              dtype=tf.int32)[0]
        self.latents.assign(ops.take(flat_latents, idx, axis=0))

    def usage(self):
        """Share of codes used at least once over the recorded window (0 before any step)."""
        return ops.mean(ops.cast(ops.sum(self.histograms, axis=0) > 0, "float32"))

    def restart_dead_codes(self, seed=None):
        """Re-initialises codes unused over the full window from recent latents (eager).

        Returns the number of codes restarted (0 when disabled or the window is not full).
        """
        if not self.restart_dead_codes_ or int(self.counter.numpy()) < self.usage_window:
            return 0
        used = np.asarray(ops.sum(self.histograms, axis=0)) > 0
        dead = np.flatnonzero(~used)
        if dead.size == 0:
            return 0
        rng = np.random.default_rng(seed if seed is not None else int(self.counter.numpy()))
        latents = np.asarray(self.latents)
        picks = latents[rng.integers(0, latents.shape[0], size=dead.size)]
        picks = picks + rng.normal(scale=1e-3, size=picks.shape).astype(np.float32)
        codebook = np.asarray(self.codebook).copy()
        # Keep each restarted code at the norm of the average code, so Adam's scale still fits.
        scale = float(np.mean(np.linalg.norm(codebook[used], axis=-1))) if used.any() else 1.0
        codebook[dead] = picks * scale
        self.codebook.assign(codebook)
        return int(dead.size)

    def get_config(self):
        return {**super().get_config(), "codebook_size": self.codebook_size,
                "lookup_dim": self.lookup_dim, "beta": self.beta,
                "usage_window": self.usage_window,
                "restart_dead_codes": self.restart_dead_codes_}
