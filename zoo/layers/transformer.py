"""Transformer building blocks: attention layers, MLP, encoder/decoder blocks and the KV cache.

Pre-LayerNorm blocks (Parti / Lingvo style). Weight names are stable and descriptive so that
sharding rules written as regexes match them (see `zoo.models.parti` for the full scheme):

    <block>/self_attention_norm/{gamma,beta}
    <block>/self_attention/{query,key,value}/{kernel,bias}   kernel [width, heads * head_dim]
    <block>/self_attention/output/{kernel,bias}              kernel [heads * head_dim, width]
    <block>/cross_attention_norm/..., <block>/cross_attention/{query,key,value,output}/...
    <block>/mlp_norm/..., <block>/mlp/wi/{kernel,bias} [width, mlp_dim],
    <block>/mlp/wo/{kernel,bias} [mlp_dim, width]

Mixed precision: pass `dtype="mixed_bfloat16"` (or a `keras.DTypePolicy`) to a block; its
projections compute in bfloat16 while LayerNorms stay float32, softmax runs in float32 inside
the attention kernels, and the residual stream stays float32.

KV cache (incremental decoding): a decoder block's self-attention cache is a pair of tensors
(key, value), each [batch, heads, tokens, head_dim]; `DecoderBlock.step` writes the positions
it is given (updated in place: `write_cache`) and attends with the kernel's `step` (one
position: only the keys it may see) or `window_step` (several). Cross-attention keys and
values are computed once per prompt (`DecoderBlock.memory_kv`). Steps read the block's weights
through `BlockWeights` packed once per sampling call (`zoo.layers.packed`: fused q|k|v, and
the precision sampling reads them in).
"""

import math
from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from zoo.attention import native
from zoo.attention.base import MASK_VALUE, AttentionKernel, softmax_attention
from zoo.errors import ZooError
from zoo.layers import packed
from zoo.layers.tracking import track_layers  # noqa: F401  (re-exported for the models)


def _policy(dtype):
    return keras.dtype_policies.get(dtype) if dtype is not None else None


def build_kernel(spec) -> AttentionKernel:
    """An attention kernel from a registry name or {'name': ..., **config}."""
    from zoo.registry import ATTENTION
    if isinstance(spec, AttentionKernel):
        return spec
    if isinstance(spec, str):
        return ATTENTION.create(spec)
    if isinstance(spec, dict) and isinstance(spec.get("name"), str):
        config = {k: v for k, v in spec.items() if k != "name"}
        return ATTENTION.create(spec["name"], **config)
    raise ZooError(f"an attention kernel is a registered name or {{'name': ..., ...}}, "
                   f"got {spec!r}")


def kernel_spec(kernel, name):
    """The JSON-able spec that rebuilds `kernel`: its name, or {'name': ..., **config}."""
    config = kernel.get_config() if hasattr(kernel, "get_config") else {}
    return {"name": name, **config} if config else name


def _in_place(*tensors):
    """Whether TensorFlow's in-place ops run here (not under XLA, which updates loop buffers in
    place itself, nor on DTensor, which has no layout rules for them)."""
    return not native.in_xla_context() and not native.on_dtensor(*tensors)


def new_cache(shape, dtype):
    """A zero cache tensor of its own: `write_cache` may update it in place, so it must not be
    a constant shared between calls (`Empty` is stateful: never folded or cached)."""
    if not _in_place():
        return tf.zeros(shape, dtype)
    return tf.raw_ops.Empty(shape=shape, dtype=dtype, init=True)


def write_cache(cache, new, t):
    """`cache` [B, H, N, d] with `new` [B, H, L, d] written at positions t .. t + L - 1.

    Without XLA the write is in place (`InplaceUpdate` on the [B * H * N, d] rows: no copy of
    the cache per step); the cache passed in must not be read afterwards (decode loops pass
    it on and never look back). Under XLA and on DTensor: a dynamic_update_slice (XLA keeps a
    loop-carried buffer in place itself).
    """
    new = tf.cast(new, cache.dtype)
    if not _in_place(cache, new):
        return ops.slice_update(cache, (0, 0, t, 0), new)
    b, h, n, d = cache.shape
    length = new.shape[2]
    if b is not None and h is not None:  # static: the row offsets are one constant
        offsets = tf.constant((np.arange(b * h)[:, None] * n + np.arange(length)[None, :])
                              .reshape(-1), tf.int32)
    else:
        slices = tf.shape(cache)[0] * tf.shape(cache)[1]
        offsets = tf.reshape(tf.range(slices)[:, None] * n + tf.range(length)[None, :], [-1])
    flat = tf.raw_ops.InplaceUpdate(x=tf.reshape(cache, [-1, d]),
                                    i=offsets + tf.cast(t, tf.int32),
                                    v=tf.reshape(new, [-1, d]))
    return tf.reshape(flat, tf.shape(cache) if b is None or h is None else cache.shape)


@keras.saving.register_keras_serializable(package="zoo")
class MultiHeadProjection(keras.layers.Layer):
    """Query/key/value/output projections of multi-head attention (weights only + helpers).

    Args:
        width: int. Model width (input and output).
        heads: int. Number of heads; width must divide by it.
        memory_width: int or None. Width of the keys/values source (cross-attention);
            defaults to `width`.
    """

    def __init__(self, width, heads, memory_width=None, **kwargs):
        super().__init__(**kwargs)
        if width % heads:
            raise ZooError(f"attention width {width} is not divisible by heads={heads}")
        self.width = width
        self.heads = heads
        self.memory_width = memory_width
        self.head_dim = width // heads
        dense = dict(dtype=self.dtype_policy)
        self.query = keras.layers.Dense(width, name="query", **dense)
        self.key = keras.layers.Dense(width, name="key", **dense)
        self.value = keras.layers.Dense(width, name="value", **dense)
        self.output_proj = keras.layers.Dense(width, name="output", **dense)

    def build(self, input_shape=None):
        source = self.memory_width or self.width
        self.query.build((None, None, self.width))
        self.key.build((None, None, source))
        self.value.build((None, None, source))
        self.output_proj.build((None, None, self.width))

    def split(self, x):
        """[B, N, heads * d] -> [B, heads, N, d]."""
        b, n = ops.shape(x)[0], ops.shape(x)[1]
        return ops.transpose(ops.reshape(x, (b, n, self.heads, self.head_dim)), (0, 2, 1, 3))

    def merge(self, x):
        """[B, heads, N, d] -> [B, N, heads * d]."""
        b, n = ops.shape(x)[0], ops.shape(x)[2]
        return ops.reshape(ops.transpose(x, (0, 2, 1, 3)), (b, n, self.width))

    def get_config(self):
        return {**super().get_config(), "width": self.width, "heads": self.heads,
                "memory_width": self.memory_width}


# `CausalSelfAttention`: both self-attention layers were once `zoo>SelfAttention` (Keras kept the
# last imported); zoo/layers/legacy.py still loads what was saved under that name.
@keras.saving.register_keras_serializable(package="zoo", name="CausalSelfAttention")
class SelfAttention(MultiHeadProjection):
    """Causal self-attention over an image grid with a pluggable kernel (decoder).

    Args:
        width, heads: as `MultiHeadProjection`.
        kernel: a registered attention name (e.g. 'row') or {'name': ..., **config}.
    """

    def __init__(self, width, heads, kernel="dense", **kwargs):
        super().__init__(width, heads, **kwargs)
        self.attention_kernel = build_kernel(kernel)
        name = kernel if isinstance(kernel, str) else (
            kernel.get("name") if isinstance(kernel, dict) else type(kernel).__name__)
        self.kernel_spec = kernel_spec(self.attention_kernel, name)

    def call(self, x, grid):
        q, k, v = (self.split(y) for y in self.project_qkv(x))
        return self.output_proj(self.merge(self.attention_kernel.call(q, k, v, grid)))

    def project_qkv(self, x):
        """(query(x), key(x), value(x)), as one product with the three kernels side by side:
        one [width, 3 * width] matmul forward and one per gradient instead of three each (the
        weights stay the three layers'). The layers one by one on DTensor (the kernels are
        sharded by columns) and for layers that are not plain float Dense layers (quantized,
        LoRA, an activation)."""
        layers = (self.query, self.key, self.value)
        if native.on_dtensor(x) or any(
                layer.quantization_mode or layer.lora_enabled or layer.bias is None
                or layer.activation is not keras.activations.linear for layer in layers):
            return tuple(layer(x) for layer in layers)
        dtype = self.compute_dtype
        kernel = ops.concatenate([ops.cast(layer.kernel, dtype) for layer in layers], axis=1)
        bias = ops.concatenate([ops.cast(layer.bias, dtype) for layer in layers], axis=0)
        y = ops.matmul(ops.cast(x, dtype), kernel) + bias
        return tuple(ops.split(y, 3, axis=-1))

    def step(self, q, k, v, t, cache, grid):
        """Heads q, k, v [B, H, L, d] of positions t .. t + L - 1 -> (attention output
        [B, H, L, d], new cache): writes k and v into the cache (key, value), then attends."""
        k_cache = write_cache(cache[0], k, t)
        v_cache = write_cache(cache[1], v, t)
        if q.shape[2] == 1:
            out = self.attention_kernel.step(q, k_cache, v_cache, t, grid)
        else:
            out = self.attention_kernel.window_step(q, k_cache, v_cache, t, grid)
        return out, (k_cache, v_cache)

    def get_config(self):
        return {**super().get_config(), "kernel": self.kernel_spec}


@keras.saving.register_keras_serializable(package="zoo")
class DenseAttention(MultiHeadProjection):
    """Dense multi-head attention with a key padding mask (encoder self-attention and
    decoder cross-attention)."""

    def attend(self, x, k, v, mask=None):
        """x [B, N, width]; k, v [B, heads, L, d]; mask [B, L] (1 = real key)."""
        q = self.split(self.query(x))
        scale = 1.0 / math.sqrt(self.head_dim)
        scores = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))) * ops.cast(scale, q.dtype)
        valid = None if mask is None else ops.cast(mask, "bool")[:, None, None, :]
        return self.output_proj(self.merge(softmax_attention(scores, v, valid)))

    def memory_kv(self, memory):
        """Keys and values of `memory` [B, L, memory_width] -> ([B, H, L, d], [B, H, L, d])."""
        return self.split(self.key(memory)), self.split(self.value(memory))

    def call(self, x, memory=None, padding_mask=None):
        k, v = self.memory_kv(x if memory is None else memory)
        return self.attend(x, k, v, padding_mask)


@keras.saving.register_keras_serializable(package="zoo")
class MLP(keras.layers.Layer):
    """Feed-forward block: wi (width -> mlp_dim), GELU, wo (mlp_dim -> width).

    Args:
        width: int. Model width.
        mlp_dim: int. Hidden width.
    """

    def __init__(self, width, mlp_dim, **kwargs):
        super().__init__(**kwargs)
        self.width = width
        self.mlp_dim = mlp_dim
        self.wi = keras.layers.Dense(mlp_dim, activation="gelu", name="wi",
                                     dtype=self.dtype_policy)
        self.wo = keras.layers.Dense(width, name="wo", dtype=self.dtype_policy)

    def build(self, input_shape=None):
        self.wi.build((None, None, self.width))
        self.wo.build((None, None, self.mlp_dim))

    def call(self, x):
        return self.wo(self.wi(x))

    def get_config(self):
        return {**super().get_config(), "width": self.width, "mlp_dim": self.mlp_dim}


def _norm(name):
    return keras.layers.LayerNormalization(epsilon=1e-6, name=name, dtype="float32")


def _residual(x, y):
    return x + ops.cast(y, x.dtype)


@keras.saving.register_keras_serializable(package="zoo")
class EncoderBlock(keras.layers.Layer):
    """Pre-LN encoder block: dense self-attention with a padding mask, then the MLP.

    Args:
        width: int. heads: int. mlp_dim: int.
        dropout: float. Dropout on each residual branch.
    """

    def __init__(self, width, heads, mlp_dim, dropout=0.1, **kwargs):
        super().__init__(**kwargs)
        self.width = width
        self.heads = heads
        self.mlp_dim = mlp_dim
        self.dropout_rate = dropout
        policy = self.dtype_policy
        self.self_attention_norm = _norm("self_attention_norm")
        self.self_attention = DenseAttention(width, heads, name="self_attention", dtype=policy)
        self.mlp_norm = _norm("mlp_norm")
        self.mlp = MLP(width, mlp_dim, name="mlp", dtype=policy)
        self.dropout = keras.layers.Dropout(dropout, name="dropout")

    def build(self, input_shape=None):
        for norm in (self.self_attention_norm, self.mlp_norm):
            norm.build((None, None, self.width))
        self.self_attention.build()
        self.mlp.build()

    def call(self, x, padding_mask=None, training=False):
        y = self.self_attention(self.self_attention_norm(x), padding_mask=padding_mask)
        x = _residual(x, self.dropout(y, training=training))
        y = self.mlp(self.mlp_norm(x))
        return _residual(x, self.dropout(y, training=training))

    def get_config(self):
        return {**super().get_config(), "width": self.width, "heads": self.heads,
                "mlp_dim": self.mlp_dim, "dropout": self.dropout_rate}


class BlockWeights(NamedTuple):
    """A decoder block's projections for decode steps (`packed.Linear` each, read once per
    sampling call; qkv, cross_query and wi apply the LayerNorm before them)."""

    qkv: packed.Linear
    out: packed.Linear
    cross_query: packed.Linear
    cross_out: packed.Linear
    wi: packed.Linear
    wo: packed.Linear


@keras.saving.register_keras_serializable(package="zoo")
class DecoderBlock(keras.layers.Layer):
    """Pre-LN decoder block: causal sparse self-attention, cross-attention to the text, MLP.

    Args:
        width: int. heads: int. mlp_dim: int.
        attention: registered kernel name or {'name': ..., **config} for self-attention.
        memory_width: int or None. Width of the text memory (defaults to width).
        dropout: float. Dropout on each residual branch.
    """

    def __init__(self, width, heads, mlp_dim, attention="dense", memory_width=None,
                 dropout=0.1, **kwargs):
        super().__init__(**kwargs)
        self.width = width
        self.heads = heads
        self.mlp_dim = mlp_dim
        self.memory_width = memory_width
        self.dropout_rate = dropout
        policy = self.dtype_policy
        self.self_attention_norm = _norm("self_attention_norm")
        self.self_attention = SelfAttention(width, heads, kernel=attention,
                                            name="self_attention", dtype=policy)
        self.cross_attention_norm = _norm("cross_attention_norm")
        self.cross_attention = DenseAttention(width, heads, memory_width=memory_width,
                                              name="cross_attention", dtype=policy)
        self.mlp_norm = _norm("mlp_norm")
        self.mlp = MLP(width, mlp_dim, name="mlp", dtype=policy)
        self.dropout = keras.layers.Dropout(dropout, name="dropout")

    @property
    def attention(self):
        return self.self_attention.kernel_spec

    def build(self, input_shape=None):
        for norm in (self.self_attention_norm, self.cross_attention_norm, self.mlp_norm):
            norm.build((None, None, self.width))
        self.self_attention.build()
        self.cross_attention.build()
        self.mlp.build()

    def call(self, x, memory_kv, memory_mask, grid, training=False):
        y = self.self_attention(self.self_attention_norm(x), grid=grid)
        x = _residual(x, self.dropout(y, training=training))
        y = self.cross_attention.attend(self.cross_attention_norm(x), *memory_kv, memory_mask)
        x = _residual(x, self.dropout(y, training=training))
        y = self.mlp(self.mlp_norm(x))
        return _residual(x, self.dropout(y, training=training))

    def memory_kv(self, memory):
        return self.cross_attention.memory_kv(memory)

    def init_cache(self, batch_size, tokens, dtype=tf.float32):
        """Zero (key, value) caches [B, heads, tokens, head_dim] in `dtype` (decode steps
        compute in float32 whatever the model's precision: `zoo.layers.packed`)."""
        dtype = tf.as_dtype(dtype)
        shape = [batch_size, self.heads, tokens, self.width // self.heads]
        return new_cache(shape, dtype), new_cache(shape, dtype)

    def inference_weights(self, mode="auto", native=False):
        """The block's weights packed for decode steps (see `zoo.layers.packed`)."""
        attn, cross, mlp = self.self_attention, self.cross_attention, self.mlp
        pack = lambda layers, **kw: packed.pack(layers, mode, native=native, **kw)  # noqa: E731
        return BlockWeights(
            qkv=pack([attn.query, attn.key, attn.value], norm=self.self_attention_norm),
            out=pack([attn.output_proj]),
            cross_query=pack([cross.query], norm=self.cross_attention_norm),
            cross_out=pack([cross.output_proj]),
            wi=pack([mlp.wi], activation=mlp.wi.activation, norm=self.mlp_norm),
            wo=pack([mlp.wo]))

    def step_memory(self, memory, memory_mask):
        """The text memory prepared once per sampling call for `step`: (keys [B, H, d, L]
        transposed and scaled by 1 / sqrt(d), values [B, H, L, d], mask bias [B, 1, 1, L]:
        0 for a real token, MASK_VALUE for padding), all float32."""
        k, v = self.memory_kv(memory)
        scale = 1.0 / math.sqrt(self.width // self.heads)
        keys = tf.transpose(tf.cast(k, tf.float32), [0, 1, 3, 2]) * scale
        bias = tf.where(tf.cast(memory_mask, tf.bool), 0.0, MASK_VALUE)[:, None, None, :]
        return keys, tf.cast(v, tf.float32), bias

    def step(self, x, t, cache, memory, grid, weights=None):
        """Positions t .. t + L - 1 given their inputs x [B, L, width] and the cache of the
        earlier ones -> (outputs [B, L, width], new cache). memory: from `step_memory`.
        `weights`: from `inference_weights` (packed once per call; None packs the model's
        own here)."""
        w = weights or self.inference_weights()
        attn = self.self_attention
        b = x.shape[0] if x.shape[0] is not None else tf.shape(x)[0]
        length, width = x.shape[1], self.width
        heads, head_dim = attn.heads, attn.head_dim

        def split(y):  # [B * L, width] -> [B, heads, L, head_dim]
            if length == 1:  # no transpose needed
                return tf.reshape(y, [b, heads, 1, head_dim])
            return tf.transpose(tf.reshape(y, [b, length, heads, head_dim]), [0, 2, 1, 3])

        def merge(y):  # [B, heads, L, head_dim] -> [B * L, width]
            if length == 1:
                return tf.reshape(y, [-1, width])
            return tf.reshape(tf.transpose(y, [0, 2, 1, 3]), [-1, width])

        rows = tf.reshape(x, [-1, width])
        q, k, v = tf.split(w.qkv(rows), 3, axis=-1)
        out, cache = attn.step(split(q), split(k), split(v), t, cache, grid)
        rows = _residual(rows, w.out(merge(out)))
        q = split(w.cross_query(rows))
        keys, values, bias = memory
        probs = tf.nn.softmax(tf.matmul(q, keys) + bias)
        rows = _residual(rows, w.cross_out(merge(tf.matmul(probs, values))))
        rows = _residual(rows, w.wo(w.wi(rows)))
        return tf.reshape(rows, [b, length, width]), cache

    def get_config(self):
        return {**super().get_config(), "width": self.width, "heads": self.heads,
                "mlp_dim": self.mlp_dim, "attention": self.attention,
                "memory_width": self.memory_width, "dropout": self.dropout_rate}
