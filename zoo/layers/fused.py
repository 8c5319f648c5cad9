"""Fused softmax cross-entropy for the training step: one XLA pass forward, one backward.

`sparse_softmax_cross_entropy`: -log softmax(logits)[target] per position.
TensorFlow's kernel (`tf.nn.sparse_softmax_cross_entropy_with_logits`, which Keras'
`sparse_categorical_crossentropy` from logits calls) writes the whole [positions, vocab]
gradient (softmax - one-hot) in the forward pass, keeps it until the backward pass and
multiplies it by the upstream gradient there in a second pass; here the forward keeps one
log-sum-exp per position and the backward recomputes softmax - one-hot, scaled, in one pass.
Same values to float32 rounding (tests/test_fused.py compares the losses and gradients with
TensorFlow's).

Measured on the 2-core AMD EPYC (AVX2, oneDNN on), `python bench/train_loss.py --grid=32
--repeats=16` (load 2.5-3.0): the loss alone, forward + backward with the mean on
[2, 1024, 8192] logits, 107.4 -> 38.5 ms best (152.9 -> 51.2 ms median); the training step at
parti-pytorch's configuration 2.78 -> 2.68 s best, 2.92 -> 2.97 s median. The step is bound
by its matmuls; the loss saves 1-3% of it when that shows through this VM's noise at all
(bench/RESULTS.md, "Training step, AMD EPYC with AVX2 (helper, 2026-12-07, later session)").

On DTensor it is TensorFlow's op (no XLA there; the sharded paths keep their layouts).
"""

import tensorflow as tf

from zoo.attention import native
from zoo.errors import ZooError


def _in_range(targets, logits):
    return (targets >= 0) & (targets < tf.shape(logits)[-1])


def _xent_value(targets, logits):
    top = tf.stop_gradient(tf.reduce_max(logits, axis=-1, keepdims=True))
    lse = top + tf.math.log(tf.reduce_sum(tf.exp(logits - top), axis=-1, keepdims=True))
    picked = tf.gather(logits, targets[..., None], batch_dims=targets.shape.rank)
    nan = tf.constant(float("nan"), logits.dtype)
    return tf.where(_in_range(targets, logits), (lse - picked)[..., 0], nan), lse


def _xent_grad(targets, logits, lse, dloss):
    onehot = tf.one_hot(targets, tf.shape(logits)[-1], dtype=logits.dtype)
    scale = tf.where(_in_range(targets, logits), dloss, tf.constant(float("nan"), dloss.dtype))
    return scale[..., None] * (tf.exp(logits - lse) - onehot)


_xent_value_xla = tf.function(_xent_value, jit_compile=True, autograph=False)
_xent_grad_xla = tf.function(_xent_grad, jit_compile=True, autograph=False)


def _xent_fused(targets, logits):
    @tf.custom_gradient
    def xent(logits):
        loss, lse = _xent_value_xla(targets, logits)

        def grad(dloss):
            return _xent_grad_xla(targets, logits, lse, dloss)
        return loss, grad
    return xent(logits)


def sparse_softmax_cross_entropy(targets, logits):
    """-log softmax(logits)[targets]: targets int [...], logits float [..., vocab] -> [...].

    As `tf.nn.sparse_softmax_cross_entropy_with_logits` (fused for float32 and float64 logits,
    TensorFlow's op for other floats). A target outside [0, vocab) gives a NaN loss and NaN
    gradients at its position, as TensorFlow's op does on GPU and under XLA (an Assert would
    be a host op, which a TPU step cannot hold); the parti task's codes are checked against the
    model's codebook size when its data are read.
    """
    logits = tf.convert_to_tensor(logits)
    targets = tf.convert_to_tensor(targets)
    if not logits.dtype.is_floating:
        raise ZooError(f"sparse_softmax_cross_entropy takes float logits, got "
                       f"{logits.dtype.name}")
    if not targets.dtype.is_integer:
        raise ZooError(f"sparse_softmax_cross_entropy takes integer targets, got "
                       f"{targets.dtype.name}")
    if (targets.shape.rank is not None and logits.shape.rank is not None
            and targets.shape.rank + 1 != logits.shape.rank):
        raise ZooError(f"targets {targets.shape} need one axis less than logits "
                       f"{logits.shape} (the vocabulary)")
    targets = tf.cast(targets, tf.int32)
    if native.on_dtensor(targets, logits) or logits.dtype not in (tf.float32, tf.float64):
        # DTensor: no XLA. float16 / bfloat16 logits: TensorFlow's op as before (it is
        # what Keras' loss ran; the fused kernels are float32 / float64 only).
        return tf.nn.sparse_softmax_cross_entropy_with_logits(targets, logits)
    # No Assert ops here: a TPU step (and zoo's jit_compile check of it) allows none.
    return _xent_fused(targets, logits)
