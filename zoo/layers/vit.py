"""Vision Transformer building blocks for the ViT-VQGAN tokenizer (patchify, blocks, heads)."""

import math

import keras
from keras import ops

from zoo.compat import RENAMED_VIT_VQGAN, renamed
from zoo.layers.tracking import track_layers

_INIT = "glorot_uniform"


class _WidthWasDim:
    """Configs saved when these layers said `dim` for their width still load."""

    @classmethod
    def from_config(cls, config):
        return super().from_config(renamed(config, RENAMED_VIT_VQGAN))


def _dense(units, name, activation=None, use_bias=True):
    return keras.layers.Dense(units, activation=activation, use_bias=use_bias, name=name,
                              kernel_initializer=_INIT)


@keras.saving.register_keras_serializable(package="zoo")
class PatchEmbed(_WidthWasDim, keras.layers.Layer):
    """Splits images into non-overlapping patches and projects each one to `width`.

    Args:
        patch_size: int. Side of a square patch.
        width: int. Output width.
    """

    def __init__(self, patch_size, width, **kwargs):
        super().__init__(**kwargs)
        self.patch_size = patch_size
        self.width = width
        self.proj = _dense(width, "proj")

    def build(self, input_shape):
        channels = input_shape[-1]
        self.proj.build((None, None, self.patch_size * self.patch_size * channels))

    def call(self, images):
        return self.proj(patchify(images, self.patch_size))

    def get_config(self):
        return {**super().get_config(), "patch_size": self.patch_size, "width": self.width}


def patchify(images, patch_size):
    """[B, H, W, C] -> [B, (H/p)*(W/p), p*p*C], patches in raster order."""
    shape = ops.shape(images)
    b, h, w, c = shape[0], shape[1], shape[2], images.shape[-1]
    p = patch_size
    x = ops.reshape(images, (b, h // p, p, w // p, p, c))
    x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
    return ops.reshape(x, (b, (h // p) * (w // p), p * p * c))


def unpatchify(tokens, grid, patch_size, channels):
    """[B, h*w, p*p*C] -> [B, h*p, w*p, C] (inverse of `patchify`)."""
    b = ops.shape(tokens)[0]
    gh, gw = grid
    p = patch_size
    x = ops.reshape(tokens, (b, gh, gw, p, p, channels))
    x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
    return ops.reshape(x, (b, gh * p, gw * p, channels))


@keras.saving.register_keras_serializable(package="zoo")
class PositionEmbedding(_WidthWasDim, keras.layers.Layer):
    """Learned absolute position embeddings added to a fixed-length token sequence.

    Args:
        length: int. Number of tokens.
        width: int. Token width.
    """

    def __init__(self, length, width, **kwargs):
        super().__init__(**kwargs)
        self.length = length
        self.width = width

    def build(self, input_shape):
        self.embedding = self.add_weight(
            name="embedding", shape=(self.length, self.width),
            initializer=keras.initializers.TruncatedNormal(stddev=0.02))

    def call(self, x):
        return x + ops.cast(self.embedding, x.dtype)[None]

    def get_config(self):
        return {**super().get_config(), "length": self.length, "width": self.width}


# `ViTSelfAttention`: both self-attention layers were once `zoo>SelfAttention` (Keras kept the
# last imported); zoo/layers/legacy.py still loads what was saved under that name.
@keras.saving.register_keras_serializable(package="zoo", name="ViTSelfAttention")
class SelfAttention(_WidthWasDim, keras.layers.Layer):
    """Bidirectional multi-head self-attention with a fused qkv projection.

    Args:
        width: int. Input and output width.
        heads: int. Number of heads.
        head_dim: int or None. Width of one head; None means width // heads. The inner width
            heads * head_dim may differ from width.
        dropout: float. Dropout on the attention probabilities.
    """

    def __init__(self, width, heads, head_dim=None, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        self.width = width
        self.heads = heads
        self.head_dim = head_dim
        self.dropout = dropout
        self._head_dim = head_dim or width // heads
        inner = heads * self._head_dim
        self.qkv = _dense(3 * inner, "qkv")
        self.out = _dense(width, "out")
        self.drop = keras.layers.Dropout(dropout)

    def build(self, input_shape):
        self.qkv.build(input_shape)
        self.out.build(tuple(input_shape[:-1]) + (self.heads * self._head_dim,))

    def call(self, x, training=False):
        b, n = ops.shape(x)[0], ops.shape(x)[1]
        h, d = self.heads, self._head_dim
        # Split the unsharded '3' axis, never index a leading [3, B, ...] axis: under a DTensor
        # mesh, strided slices of a tensor whose batch axis is not axis 0 come out wrong
        # (TF 2.21; tests/test_distribute_mesh.py checks the ViT-VQGAN against one device).
        qkv = ops.reshape(self.qkv(x), (b, n, 3, h, d))
        q, k, v = [ops.transpose(ops.squeeze(t, 2), (0, 2, 1, 3))  # [B, heads, N, d]
                   for t in ops.split(qkv, 3, axis=2)]
        scores = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))) * (1.0 / math.sqrt(d))
        probs = ops.softmax(ops.cast(scores, "float32"), axis=-1)
        probs = self.drop(ops.cast(probs, v.dtype), training=training)
        y = ops.matmul(probs, v)  # [B, heads, N, d]
        y = ops.reshape(ops.transpose(y, (0, 2, 1, 3)), (b, n, h * d))
        return self.out(y)

    def get_config(self):
        return {**super().get_config(), "width": self.width, "heads": self.heads,
                "head_dim": self.head_dim, "dropout": self.dropout}


@keras.saving.register_keras_serializable(package="zoo")
class TransformerBlock(_WidthWasDim, keras.layers.Layer):
    """Pre-LayerNorm transformer block: x + attn(LN(x)); x + MLP(LN(x)) with GELU.

    Args:
        width: int. Token width.
        heads: int. Attention heads.
        mlp_dim: int. Hidden width of the MLP.
        head_dim: int or None. Width of one attention head (None: width // heads).
        dropout: float. Dropout after attention and MLP.
    """

    def __init__(self, width, heads, mlp_dim, head_dim=None, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        self.width = width
        self.heads = heads
        self.mlp_dim = mlp_dim
        self.head_dim = head_dim
        self.dropout = dropout
        self.norm1 = keras.layers.LayerNormalization(epsilon=1e-6, name="norm1")
        self.attn = SelfAttention(width, heads, head_dim=head_dim, dropout=dropout, name="attn")
        self.norm2 = keras.layers.LayerNormalization(epsilon=1e-6, name="norm2")
        self.fc1 = _dense(mlp_dim, "fc1", activation="gelu")
        self.fc2 = _dense(width, "fc2")
        self.drop = keras.layers.Dropout(dropout)

    def build(self, input_shape):
        for layer in (self.norm1, self.attn, self.norm2, self.fc1):
            layer.build(input_shape)
        self.fc2.build(tuple(input_shape[:-1]) + (self.mlp_dim,))

    def call(self, x, training=False):
        x = x + self.drop(self.attn(self.norm1(x), training=training), training=training)
        y = self.fc2(self.fc1(self.norm2(x)))
        return x + self.drop(y, training=training)

    def get_config(self):
        return {**super().get_config(), "width": self.width, "heads": self.heads,
                "mlp_dim": self.mlp_dim, "head_dim": self.head_dim, "dropout": self.dropout}


@keras.saving.register_keras_serializable(package="zoo")
class ViTStack(_WidthWasDim, keras.layers.Layer):
    """Position embeddings + `blocks` transformer blocks + a final LayerNorm.

    Args:
        length: int. Number of tokens (fixed; position embeddings are learned).
        blocks: int. Number of transformer blocks.
        width, heads, mlp_dim, head_dim, dropout: as in `TransformerBlock`.
    """

    def __init__(self, length, blocks, width, heads, mlp_dim, head_dim=None, dropout=0.0,
                 **kwargs):
        super().__init__(**kwargs)
        self.length = length
        self.blocks = blocks
        self.width = width
        self.heads = heads
        self.mlp_dim = mlp_dim
        self.head_dim = head_dim
        self.dropout = dropout
        self.pos = PositionEmbedding(length, width, name="pos")
        self.layers_ = [TransformerBlock(width, heads, mlp_dim, head_dim=head_dim, dropout=dropout,
                                         name=f"block{i}") for i in range(blocks)]
        track_layers(self, self.layers_, "block")
        self.norm = keras.layers.LayerNormalization(epsilon=1e-6, name="norm")

    def build(self, input_shape):
        self.pos.build(input_shape)
        for layer in self.layers_:
            layer.build(input_shape)
        self.norm.build(input_shape)

    def call(self, x, training=False):
        x = self.pos(x)
        for layer in self.layers_:
            x = layer(x, training=training)
        return self.norm(x)

    def get_config(self):
        return {**super().get_config(), "length": self.length, "blocks": self.blocks,
                "width": self.width, "heads": self.heads, "mlp_dim": self.mlp_dim,
                "head_dim": self.head_dim, "dropout": self.dropout}


@keras.saving.register_keras_serializable(package="zoo")
class TanhHead(keras.layers.Layer):
    """ViT-VQGAN's output head: a two-layer feed-forward network with tanh in the middle.

    Args:
        hidden: int. Hidden width.
        units: int. Output width.
    """

    def __init__(self, hidden, units, **kwargs):
        super().__init__(**kwargs)
        self.hidden = hidden
        self.units = units
        self.fc1 = _dense(hidden, "fc1", activation="tanh")
        self.fc2 = _dense(units, "fc2")

    def build(self, input_shape):
        self.fc1.build(input_shape)
        self.fc2.build(tuple(input_shape[:-1]) + (self.hidden,))

    def call(self, x):
        return self.fc2(self.fc1(x))

    def get_config(self):
        return {**super().get_config(), "hidden": self.hidden, "units": self.units}


def transformer_block_params(width, heads, mlp_dim, head_dim=None):
    """Parameter count of one `TransformerBlock` (analytic, no weights allocated)."""
    inner = heads * (head_dim or width // heads)
    attn = width * 3 * inner + 3 * inner + inner * width + width
    mlp = width * mlp_dim + mlp_dim + mlp_dim * width + width
    return attn + mlp + 4 * width  # two LayerNorms
