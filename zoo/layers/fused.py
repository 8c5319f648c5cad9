"""Fused elementwise pieces of the training step: exact GELU and softmax cross-entropy.

Each is one XLA-compiled pass forward and one backward (a custom gradient) instead of
TensorFlow's chain of kernels, each a pass over memory:

- `gelu`: exact (erf) GELU of x + bias, Keras' default `gelu` (`tf.nn.gelu(approximate=False)`:
  0.5 * x * erfc(-x / sqrt(2))) after a Dense layer's bias. TensorFlow runs the bias add, Neg,
  Mul, Erfc and two Muls forward and about ten elementwise kernels and the bias's reduction
  for the autodiff gradient; here one kernel each way, the backward dy * (Phi(x) + x phi(x))
  from x alone (nothing else kept for it) with the bias's gradient summed in the same pass.
- `sparse_softmax_cross_entropy`: -log softmax(logits)[target] per position. TensorFlow's
  kernel writes the whole [positions, vocab] gradient (softmax - one-hot) in the forward pass
  and multiplies it by the upstream gradient in a second pass; here the forward keeps one
  log-sum-exp per position and the backward recomputes softmax - one-hot, scaled, in one pass.

Same values to float32 rounding (tests/test_fused.py compares both and their gradients with
TensorFlow's ops). Measured alone on the 2-core AMD EPYC (AVX2, oneDNN on), forward + backward:
GELU on [2048, 2048] 18.4 -> 9.4 ms; the cross-entropy with its mean on [2, 1024, 8192] logits
101.7 -> 37.4 ms (best of 15, load 1.9; /tmp scripts of the 2026-12-07 session, see
bench/RESULTS.md "Training step, AMD EPYC with AVX2 (helper, 2026-12-07, later session)").

Both fall back to TensorFlow's ops on DTensor (no XLA there; the sharded paths keep their
layouts).
"""

import tensorflow as tf

from zoo.attention import native
from zoo.errors import ZooError

_SQRT_HALF = 0.7071067811865476  # 1 / sqrt(2), as tf.nn.gelu
_INV_SQRT_2PI = 0.3989422804014327  # 1 / sqrt(2 pi)


def _gelu_value(x, bias):
    x = x + bias
    return 0.5 * x * tf.math.erfc(-x * tf.cast(_SQRT_HALF, x.dtype))


def _gelu_grad(x, bias, dy):
    # d/dx [x Phi(x)] = Phi(x) + x phi(x); Phi(x) = 0.5 erfc(-x / sqrt(2)).
    x = x + bias
    cdf = 0.5 * tf.math.erfc(-x * tf.cast(_SQRT_HALF, x.dtype))
    pdf = tf.cast(_INV_SQRT_2PI, x.dtype) * tf.exp(-0.5 * x * x)
    dx = dy * (cdf + x * pdf)
    # The bias gradient summed in the same pass (XLA fuses the reduction).
    return dx, tf.reduce_sum(tf.reshape(dx, [-1, tf.shape(dx)[-1]]), axis=0)


_gelu_value_xla = tf.function(_gelu_value, jit_compile=True, autograph=False)
_gelu_grad_xla = tf.function(_gelu_grad, jit_compile=True, autograph=False)


@tf.custom_gradient
def _gelu_fused(x, bias):
    def grad(dy):
        return _gelu_grad_xla(x, bias, dy)
    return _gelu_value_xla(x, bias), grad


def gelu(x, bias=None):
    """Exact GELU (Keras' `gelu`, approximate=False) of x + bias (bias [x's last axis], or
    None), fused forward and backward."""
    x = tf.convert_to_tensor(x)
    if not x.dtype.is_floating:
        raise ZooError(f"gelu takes a float tensor, got {x.dtype.name}; cast it first")
    bias = tf.zeros(tf.shape(x)[-1:], x.dtype) if bias is None else tf.cast(bias, x.dtype)
    if native.on_dtensor(x):
        return tf.nn.gelu(x + bias, approximate=False)
    return _gelu_fused(x, bias)


def _xent_value(targets, logits):
    top = tf.stop_gradient(tf.reduce_max(logits, axis=-1, keepdims=True))
    lse = top + tf.math.log(tf.reduce_sum(tf.exp(logits - top), axis=-1, keepdims=True))
    picked = tf.gather(logits, targets[..., None], batch_dims=targets.shape.rank)
    return (lse - picked)[..., 0], lse


def _xent_grad(targets, logits, lse, dloss):
    onehot = tf.one_hot(targets, tf.shape(logits)[-1], dtype=logits.dtype)
    return dloss[..., None] * (tf.exp(logits - lse) - onehot)


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

    As `tf.nn.sparse_softmax_cross_entropy_with_logits` (float32 or float64 logits; a target
    outside [0, vocab) is an error, checked before the fused kernels, which would not notice).
    """
    logits = tf.convert_to_tensor(logits)
    targets = tf.convert_to_tensor(targets)
    if logits.dtype not in (tf.float32, tf.float64):
        raise ZooError(f"sparse_softmax_cross_entropy takes float32 or float64 logits, got "
                       f"{logits.dtype.name}; cast them first (as the model's logits layer "
                       f"does)")
    if not targets.dtype.is_integer:
        raise ZooError(f"sparse_softmax_cross_entropy takes integer targets, got "
                       f"{targets.dtype.name}")
    if (targets.shape.rank is not None and logits.shape.rank is not None
            and targets.shape.rank + 1 != logits.shape.rank):
        raise ZooError(f"targets {targets.shape} need one axis less than logits "
                       f"{logits.shape} (the vocabulary)")
    targets = tf.cast(targets, tf.int32)
    if native.on_dtensor(targets, logits):
        return tf.nn.sparse_softmax_cross_entropy_with_logits(targets, logits)
    vocab = tf.shape(logits)[-1]
    checks = [tf.debugging.assert_non_negative(
                  targets, message="sparse_softmax_cross_entropy: a target below 0"),
              tf.debugging.assert_less(
                  targets, vocab, message="sparse_softmax_cross_entropy: a target at or "
                                          "past the vocabulary size (the logits' last axis)")]
    with tf.control_dependencies(checks):
        targets = tf.identity(targets)
    return _xent_fused(targets, logits)
