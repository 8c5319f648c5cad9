"""Parti: encoder-decoder Transformer from text tokens to image codes, and its registered sizes.

    model = MODELS.create("parti_350m")                 # Parti Table 1 sizes, or parti_tiny
    logits = model({"text_tokens": ids, "text_mask": mask, "image_codes": codes})  # [B, N, V]

The text encoder is a registered text encoder chosen by name (`text_encoder=`, default
`parti_encoder`); the decoder is a registered decoder chosen by name (`decoder=`, default
`parti_decoder`, the `ImageDecoder` below). It predicts the image codes in raster order with
causal sparse self-attention whose kernel is chosen per layer by registry name
(`decoder_attention=`; default DALL-E's schedule: column when (i - 2) % 4 == 0, else row,
conv_shaped in the last layer), cross-attention to the text, and an extra LayerNorm before the
logits. What the training task, the sampler and the export rely on (the model and decoder
contracts) is written down in `zoo.models.contract` and docs/architecture.md.

Classifier-free guidance: examples flagged `unconditional` (dropped prompts in training, the
empty prompt in sampling) replace the text memory by one learned vector
(`unconditional_embedding`), so the unconditional path does not depend on the tokenizer.

Weight names (`variable.path`; the model is named `parti`), stable so that sharding rules
written as regexes match them:

    parti/text_encoder/token_embedding/embeddings                 [text_vocab, enc_width]
    parti/text_encoder/position_embedding/embeddings              [max_text_length, enc_width]
    parti/text_encoder/layer_{i}/self_attention/{query,key,value}/kernel   [width, width]
    parti/text_encoder/layer_{i}/self_attention/output/kernel     [width, width]
    parti/text_encoder/layer_{i}/mlp/wi/kernel [width, mlp]      .../mlp/wo/kernel [mlp, width]
    parti/text_encoder/layer_{i}/{self_attention_norm,mlp_norm}/{gamma,beta}
    parti/text_encoder/final_norm/{gamma,beta}
    parti/text_projection/{kernel,bias}          (only when encoder width != decoder width)
    parti/unconditional_embedding                                  [1, width]
    parti/decoder/token_embedding/embeddings                      [image_vocab + 1 (BOS), width]
    parti/decoder/row_embedding/embeddings [h, width]   parti/decoder/column_embedding/... [w, width]
    parti/decoder/layer_{i}/self_attention/{query,key,value,output}/{kernel,bias}
    parti/decoder/layer_{i}/cross_attention/{query,key,value,output}/{kernel,bias}
    parti/decoder/layer_{i}/mlp/{wi,wo}/{kernel,bias}
    parti/decoder/layer_{i}/{self_attention_norm,cross_attention_norm,mlp_norm}/{gamma,beta}
    parti/decoder/final_norm/{gamma,beta}
    parti/decoder/logits/{kernel,bias}                            [width, image_vocab]

Every projection's bias is `.../bias` next to its `.../kernel`; biases and LayerNorm
parameters are small and can stay replicated.

Mixed precision (`mixed_precision=True`): attention and MLP projections and embeddings
compute in bfloat16; LayerNorms, softmax, the residual stream and the logits stay float32.
"""

from typing import Dict, NamedTuple, Optional, Sequence, Tuple

import keras
import numpy as np
import tensorflow as tf
from keras import ops

import zoo.attention  # noqa: F401  (registers the built-in kernels)
from zoo.compat import RENAMED_OPTIONS, renamed
from zoo.errors import ZooError, check_positive_ints
from zoo.layers import packed
from zoo.layers.arguments import constructor_arguments
from zoo.layers.transformer import BlockWeights, DecoderBlock, build_kernel, track_layers
from zoo.models import text_encoder  # noqa: F401  (registers parti_encoder)
from zoo.registry import ATTENTION, DECODERS, MODELS, TEXT_ENCODERS

# Parti Table 1 (the text vocabulary and length from Sec. 2 of the paper).
TEXT_VOCAB_SIZE = 16000
MAX_TEXT_LENGTH = 128
IMAGE_VOCAB_SIZE = 8192
IMAGE_GRID = (32, 32)


def dalle_schedule(layers: int):
    """DALL-E's sparse attention schedule: column if (i - 2) % 4 == 0, else row; the last layer
    conv_shaped."""
    names = ["column" if (i - 2) % 4 == 0 else "row" for i in range(layers)]
    names[-1] = "conv_shaped"
    return names


class DecoderWeights(NamedTuple):
    """The decoder's projections packed for decode steps (`ImageDecoder.inference_weights`)."""

    blocks: Tuple[BlockWeights, ...]
    logits: packed.Linear  # with the final LayerNorm before it

    @property
    def dtype(self):
        """The dtype activations, the KV cache and cross-attention keys/values use."""
        return self.blocks[0].qkv.compute_dtype

    def nbytes(self) -> int:
        """Bytes of weights one decode step reads."""
        return sum(packed.nbytes(linear) for block in self.blocks for linear in block) + \
            packed.nbytes(self.logits)


@DECODERS.register("parti_decoder", tiny=dict(image_grid=(2, 2), image_vocab_size=8, layers=2,
                                              width=8, heads=2, mlp_dim=16,
                                              attention=["row", "column"]))
@keras.saving.register_keras_serializable(package="zoo")
class ImageDecoder(keras.layers.Layer):
    """Parti's causal decoder over the image grid (learned row + column position embeddings).

    Predicts code t from codes < t and the text memory. A decoder with other position
    embeddings subclasses it and overrides `make_position_embedding`, `build_position_embedding`
    and `positions` (the example plugin's `example_sincos_decoder` does).

    Args:
        image_grid: (h, w) of the code grid (raster order).
        image_vocab_size: int. Codebook size (Parti: 8192).
        layers: int. width: int. heads: int. mlp_dim: int.
        attention: list of kernel specs (registered name or {'name': ..., **config}), one per
            layer.
        memory_width: int. Width of the text memory.
        dropout: float.
        mixed_precision: bool.
    """

    def __init__(self, image_grid, image_vocab_size, layers, width, heads, mlp_dim, attention,
                 memory_width=None, dropout=0.1, mixed_precision=False, **kwargs):
        super().__init__(**kwargs)
        self.image_grid = tuple(int(g) for g in image_grid)
        self.image_vocab_size = image_vocab_size
        self.num_layers = layers
        self.width = width
        self.heads = heads
        self.mlp_dim = mlp_dim
        self.memory_width = memory_width
        self.dropout_rate = dropout
        self.mixed_precision = mixed_precision
        if len(attention) != layers:
            raise ZooError(f"decoder_attention lists {len(attention)} kernels for {layers} "
                           f"decoder layers; give one per layer")
        policy = "mixed_bfloat16" if mixed_precision else None
        self.token_embedding = keras.layers.Embedding(image_vocab_size + 1, width,
                                                      name="token_embedding", dtype=policy)
        self.make_position_embedding(policy)
        self.blocks = track_layers(self, [
            DecoderBlock(width, heads, mlp_dim, attention=spec, memory_width=memory_width,
                         dropout=dropout, name=f"layer_{i}", dtype=policy)
            for i, spec in enumerate(attention)])
        self.attention = [b.attention for b in self.blocks]
        self.final_norm = keras.layers.LayerNormalization(epsilon=1e-6, name="final_norm",
                                                          dtype="float32")
        self.logits = keras.layers.Dense(image_vocab_size, name="logits", dtype="float32")
        self.dropout = keras.layers.Dropout(dropout, name="dropout")

    @property
    def bos_id(self):
        return self.image_vocab_size

    @property
    def num_tokens(self):
        return self.image_grid[0] * self.image_grid[1]

    def make_position_embedding(self, dtype):
        """Creates the layers of the position embedding: learned row and column tables."""
        h, w = self.image_grid
        self.row_embedding = keras.layers.Embedding(h, self.width, name="row_embedding",
                                                    dtype=dtype)
        self.column_embedding = keras.layers.Embedding(w, self.width, name="column_embedding",
                                                       dtype=dtype)

    def build_position_embedding(self):
        for emb in (self.row_embedding, self.column_embedding):
            emb.build((None, None))

    def build(self, input_shape=None):
        self.token_embedding.build((None, None))
        self.build_position_embedding()
        for block in self.blocks:
            block.build()
        self.final_norm.build((None, None, self.width))
        self.logits.build((None, None, self.width))

    def positions(self, index):
        """Row + column embeddings of raster positions `index` (int tensor, any shape)."""
        w = self.image_grid[1]
        return self.row_embedding(index // w) + self.column_embedding(index % w)

    def _embed(self, tokens, index):
        x = self.token_embedding(tokens) + self.positions(index)
        return ops.cast(x, "float32")

    def memory_kv(self, memory):
        """Cross-attention keys/values of every layer (computed once per prompt)."""
        return [block.memory_kv(memory) for block in self.blocks]

    def step_memory(self, memory, memory_mask):
        """The text memory prepared for `step`, once per sampling call (every layer's
        cross-attention keys and values, and the mask)."""
        return [block.step_memory(memory, memory_mask) for block in self.blocks]

    def call(self, codes, memory, memory_mask, training=False):
        """codes [B, N] (teacher forcing) -> logits [B, N, image_vocab] (float32).

        codes may also hold only the first r grid rows, [B, r * w]: the decoder then runs on
        that prefix alone (its logits are the full pass's for those positions: every
        attention pattern is causal).
        """
        h, w = self.image_grid
        n = codes.shape[1] if codes.shape[1] is not None else self.num_tokens
        if n % w or not 0 < n <= self.num_tokens:
            raise ZooError(f"image codes of {n} positions are not whole rows of the {h}x{w} "
                           f"grid; give [batch, r * {w}] codes with 1 <= r <= {h}")
        b = ops.shape(codes)[0]
        bos = ops.full((b, 1), self.bos_id, dtype="int32")
        inputs = ops.concatenate([bos, ops.cast(codes[:, :n - 1], "int32")], axis=1)
        x = self._embed(inputs, ops.arange(n)[None, :])
        x = self.dropout(x, training=training)
        for block, kv in zip(self.blocks, self.memory_kv(memory)):
            x = block(x, memory_kv=kv, memory_mask=memory_mask, grid=(n // w, w),
                      training=training)
        return self.logits(self.final_norm(x))

    def init_cache(self, batch_size, dtype=tf.float32):
        """Zero KV caches of every layer for `batch_size` rows, in `dtype` (decode steps
        compute in float32: `weights.dtype`)."""
        return [block.init_cache(batch_size, self.num_tokens, dtype) for block in self.blocks]

    def inference_weights(self, mode="auto", native=False):
        """Every projection packed for decode steps, once per sampling call (inside its
        tf.function, outside the loop): `zoo.layers.packed` (mode: auto, float32, bfloat16,
        int8; native: lay compact weights out for the fused op, see `packed.use_native`)."""
        blocks = tuple(block.inference_weights(mode, native) for block in self.blocks)
        logits = packed.pack([self.logits], mode, native=native, norm=self.final_norm)
        return DecoderWeights(blocks, logits)

    def step(self, prev_tokens, t, cache, memory, weights=None):
        """Decoding steps with the KV cache: the tokens at positions t - 1 .. t + L - 2 (BOS
        before position 0) -> logits of positions t .. t + L - 1, and the new cache.

        prev_tokens: int [B] (one position: logits [B, V]) or [B, L] (logits [B, L, V];
            t + L <= num_tokens). t: scalar int tensor. cache: from `init_cache` (updated in
            place: pass the returned cache on). memory: from `step_memory(memory,
            memory_mask)`. weights: from `inference_weights` (None: the model's own, packed
            here).
        """
        if not isinstance(weights, (DecoderWeights, type(None))):
            raise ZooError(f"decoder.step: weights must come from decoder.inference_weights(), "
                           f"got {type(weights).__name__}; the text memory goes in as "
                           f"step_memory(memory, memory_mask), the 4th argument")
        weights = self.inference_weights() if weights is None else weights
        single = len(prev_tokens.shape) == 1
        tokens = ops.cast(prev_tokens, "int32")
        tokens = tokens[:, None] if single else tokens
        length = tokens.shape[1]
        index = ops.reshape(ops.cast(t, "int32") + ops.arange(length, dtype="int32"),
                            (1, length))
        x = self._embed(tokens, index)
        new_cache = []
        for block, c, mem, w in zip(self.blocks, cache, memory, weights.blocks):
            x, c = block.step(x, t, c, mem, self.image_grid, w)
            new_cache.append(c)
        rows = tf.reshape(x, [-1, self.width])
        logits = weights.logits(rows)
        if single:
            return logits, new_cache
        return tf.reshape(logits, [-1, length, self.image_vocab_size]), new_cache

    def get_config(self):
        return {**super().get_config(), "image_grid": list(self.image_grid),
                "image_vocab_size": self.image_vocab_size, "layers": self.num_layers,
                "width": self.width, "heads": self.heads, "mlp_dim": self.mlp_dim,
                "attention": self.attention, "memory_width": self.memory_width,
                "dropout": self.dropout_rate, "mixed_precision": self.mixed_precision}


@keras.saving.register_keras_serializable(package="zoo")
class Parti(keras.Model):
    """Parti encoder-decoder: text tokens -> logits over image codes (raster order).

    Args:
        image_grid: (h, w) of the image code grid (Parti: 32 x 32 from a 256 x 256 image).
        image_vocab_size: int. Image tokenizer codebook size (Parti: 8192).
        width: int. Decoder width (Table 1 "model dims").
        decoder_layers: int. mlp_dim: int. heads: int.
        decoder_attention: None (DALL-E schedule), one kernel name for every layer, or a list
            of kernel specs (registered names or {'name': ..., **config}), one per layer.
        text_encoder: registered text encoder name (default Parti's `parti_encoder`).
        text_encoder_options: dict of arguments for the text encoder; Parti's own sizes below
            fill in what it accepts and does not set (vocab_size, width, layers, heads,
            mlp_dim, max_length, dropout, mixed_precision).
        decoder: registered decoder name (default Parti's `parti_decoder`).
        decoder_options: dict of arguments for the decoder; the sizes here fill in what it
            accepts and does not set (image_grid, image_vocab_size, layers, width, heads,
            mlp_dim, attention, memory_width, dropout, mixed_precision).
        encoder_layers: int. Text encoder blocks (Table 1 "encoder layers").
        text_vocab_size: int. Text tokenizer vocabulary (Parti: 16000).
        max_text_length: int. Longest prompt in tokens (Parti: 128).
        train_text_encoder: bool. False freezes the text encoder (e.g. a pretrained one).
        dropout: float. Residual dropout (Parti: 0.1).
        mixed_precision: bool. bf16 projections; LayerNorm, softmax and logits in float32.
    """

    def __init__(self, image_grid=IMAGE_GRID, image_vocab_size=IMAGE_VOCAB_SIZE, width=1024,
                 decoder_layers=12, heads=16, mlp_dim=4096, decoder_attention=None,
                 text_encoder="parti_encoder", text_encoder_options=None, encoder_layers=12,
                 text_vocab_size=TEXT_VOCAB_SIZE, max_text_length=MAX_TEXT_LENGTH,
                 train_text_encoder=True, dropout=0.1, mixed_precision=False,
                 decoder="parti_decoder", decoder_options=None, **kwargs):
        kwargs.setdefault("name", "parti")
        super().__init__(**kwargs)
        check_positive_ints("parti", width=width, decoder_layers=decoder_layers, heads=heads,
                            mlp_dim=mlp_dim, encoder_layers=encoder_layers,
                            image_vocab_size=image_vocab_size, text_vocab_size=text_vocab_size,
                            max_text_length=max_text_length)
        if width % heads:
            raise ZooError(f"parti.width={width} is not divisible by heads={heads}")
        try:
            h, w = (int(g) for g in image_grid)
        except (TypeError, ValueError):
            raise ZooError(f"parti.image_grid must be (height, width), got {image_grid!r}") \
                from None
        check_positive_ints("parti", image_grid_height=h, image_grid_width=w)
        if not 0.0 <= float(dropout) < 1.0:
            raise ZooError(f"parti.dropout must be in [0, 1), got {dropout!r}")
        self.image_grid = (h, w)
        self.image_vocab_size = int(image_vocab_size)
        self.width = width
        self.decoder_layers = decoder_layers
        self.heads = heads
        self.mlp_dim = mlp_dim
        self.encoder_layers = encoder_layers
        self.text_vocab_size = text_vocab_size
        self.max_text_length = max_text_length
        self.train_text_encoder = bool(train_text_encoder)
        self.dropout_rate = float(dropout)
        self.mixed_precision = bool(mixed_precision)
        self.text_encoder_name = text_encoder
        self.text_encoder_options = dict(text_encoder_options or {})
        self.decoder_name = decoder
        self.decoder_options = dict(decoder_options or {})

        specs = self._attention_specs(decoder_attention, decoder_layers)
        # The registered parts get the sizes here that they take and their options leave.
        self.text_encoder = TEXT_ENCODERS.create_with_defaults(
            text_encoder, self.text_encoder_options,
            vocab_size=text_vocab_size, width=width, layers=encoder_layers, heads=heads,
            mlp_dim=mlp_dim, max_length=max_text_length, dropout=dropout,
            mixed_precision=mixed_precision, name="text_encoder")
        if not self.train_text_encoder:
            self.text_encoder.trainable = False
        encoder_width = getattr(self.text_encoder, "width", None)
        if not isinstance(encoder_width, (int, np.integer)):
            raise ZooError(f"text encoder {text_encoder!r} has no int attribute `width` (the "
                           f"text encoder interface needs it)")
        self.encoder_width = int(encoder_width)
        self.text_projection = (keras.layers.Dense(width, name="text_projection")
                                if self.encoder_width != width else None)
        self.decoder = DECODERS.create_with_defaults(
            decoder, self.decoder_options, image_grid=self.image_grid,
            image_vocab_size=self.image_vocab_size, layers=decoder_layers, width=width,
            heads=heads, mlp_dim=mlp_dim, attention=specs, memory_width=width, dropout=dropout,
            mixed_precision=mixed_precision, name="decoder")
        self.decoder_attention = getattr(self.decoder, "attention", specs)

    @staticmethod
    def _attention_specs(decoder_attention, layers):
        if decoder_attention is None:
            specs = dalle_schedule(layers)
        elif isinstance(decoder_attention, (str, dict)):
            specs = [decoder_attention] * layers
        else:
            specs = list(decoder_attention)
        if len(specs) != layers:
            raise ZooError(f"parti.decoder_attention lists {len(specs)} kernels for "
                           f"decoder_layers={layers}; give one per layer (known kernels: "
                           f"{', '.join(ATTENTION.list())})")
        for spec in specs:
            build_kernel(spec)  # unknown names fail here, with suggestions
        return specs

    # -- building ----------------------------------------------------------------------------

    def build(self, input_shape=None):
        """Creates every weight from the configuration alone (no example inputs needed)."""
        if self.built:
            return
        if hasattr(self.text_encoder, "build") and not self.text_encoder.built:
            try:
                self.text_encoder.build()
            except TypeError:
                self.text_encoder.build((None, self.max_text_length))
        if self.text_projection is not None:
            self.text_projection.build((None, None, self.encoder_width))
        self.unconditional_embedding = self.add_weight(
            shape=(1, self.width), initializer=keras.initializers.RandomNormal(stddev=0.02),
            name="unconditional_embedding")
        self.decoder.build()
        self.built = True

    # -- forward -----------------------------------------------------------------------------

    def encode_text(self, text_tokens, text_mask, unconditional=None, training=False):
        """-> (memory [B, L, width] float32, memory_mask [B, L] int32).

        `unconditional` bool [B]: those examples get the learned unconditional memory (one
        valid position), whatever their tokens.
        """
        text_mask = ops.cast(text_mask, "int32")
        memory = self.text_encoder(text_tokens, text_mask, training=training)
        memory = ops.cast(memory, "float32")
        if self.text_projection is not None:
            memory = self.text_projection(memory)
        if unconditional is None:
            return memory, text_mask
        flag = ops.cast(unconditional, "bool")
        length = ops.shape(text_mask)[1]
        null_mask = ops.cast(ops.arange(length) == 0, "int32")[None, :]
        null = ops.cast(self.unconditional_embedding, memory.dtype)[None] * ops.cast(
            null_mask, memory.dtype)[..., None]
        memory = ops.where(flag[:, None, None], null, memory)
        memory_mask = ops.where(flag[:, None], null_mask, text_mask)
        return memory, memory_mask

    def call(self, inputs, training=False):
        """inputs: dict with text_tokens [B, L], text_mask [B, L], image_codes [B, h, w] or
        [B, N], optional unconditional bool [B] -> logits [B, N, image_vocab] float32."""
        memory, memory_mask = self.encode_text(inputs["text_tokens"], inputs["text_mask"],
                                               inputs.get("unconditional"), training=training)
        codes = inputs["image_codes"]
        codes = ops.reshape(codes, (ops.shape(codes)[0], -1))
        return self.decoder(codes, memory=memory, memory_mask=memory_mask, training=training)

    def get_config(self):
        return {**super().get_config(), "image_grid": list(self.image_grid),
                "image_vocab_size": self.image_vocab_size, "width": self.width,
                "decoder_layers": self.decoder_layers, "heads": self.heads,
                "mlp_dim": self.mlp_dim, "decoder_attention": list(self.decoder_attention),
                "text_encoder": self.text_encoder_name,
                "text_encoder_options": dict(self.text_encoder_options),
                "encoder_layers": self.encoder_layers, "text_vocab_size": self.text_vocab_size,
                "max_text_length": self.max_text_length,
                "train_text_encoder": self.train_text_encoder, "dropout": self.dropout_rate,
                "mixed_precision": self.mixed_precision, "decoder": self.decoder_name,
                "decoder_options": dict(self.decoder_options)}

    @classmethod
    def from_config(cls, config):
        # Configs saved when `text_encoder_options` was `text_encoder_config` still load.
        return super().from_config(renamed(config, RENAMED_OPTIONS))

    def architecture(self) -> Dict:
        """The constructor arguments (JSON-able) that rebuild this model without gin."""
        return constructor_arguments(self.get_config())


# -- registered sizes ------------------------------------------------------------------------


def _size(defaults: Dict, overrides: Dict) -> Parti:
    args = {**defaults, **overrides}
    # A swapped-in text encoder (decoder) does not get the default one's options.
    for part, default in (("text_encoder", "parti_encoder"), ("decoder", "parti_decoder")):
        if (part in overrides and f"{part}_options" not in overrides
                and overrides[part] != defaults.get(part, default)):
            args.pop(f"{part}_options", None)
    return Parti(**args)


@MODELS.register("parti_350m", builds=Parti)
def parti_350m(**overrides) -> Parti:
    """Parti-350M (Table 1: 12 + 12 layers, width 1024, MLP 4096, 16 heads)."""
    return _size(dict(encoder_layers=12, decoder_layers=12, width=1024, mlp_dim=4096,
                      heads=16), overrides)


@MODELS.register("parti_750m", builds=Parti)
def parti_750m(**overrides) -> Parti:
    """Parti-750M (Table 1: 12 + 36 layers, width 1024, MLP 4096, 16 heads)."""
    return _size(dict(encoder_layers=12, decoder_layers=36, width=1024, mlp_dim=4096,
                      heads=16), overrides)


@MODELS.register("parti_3b", builds=Parti)
def parti_3b(**overrides) -> Parti:
    """Parti-3B (Table 1: 12 + 36 layers, width 2048, MLP 8192, 32 heads)."""
    return _size(dict(encoder_layers=12, decoder_layers=36, width=2048, mlp_dim=8192,
                      heads=32), overrides)


@MODELS.register("parti_20b", builds=Parti)
def parti_20b(**overrides) -> Parti:
    """Parti-20B (Table 1: 16 + 64 layers, width 4096, MLP 16384, 64 heads)."""
    return _size(dict(encoder_layers=16, decoder_layers=64, width=4096, mlp_dim=16384,
                      heads=64), overrides)


@MODELS.register("parti_tiny", builds=Parti)
def parti_tiny(**overrides) -> Parti:
    """Tiny Parti for the CPU demo: 8x8 codes, 2 + 4 layers, width 256, sparse attention."""
    return _size(dict(image_grid=(8, 8), image_vocab_size=512, width=256, encoder_layers=2,
                      decoder_layers=4, mlp_dim=1024, heads=4, text_vocab_size=1000,
                      max_text_length=64, decoder_attention=["row", "column", "row",
                                                             "conv_shaped"]), overrides)


@MODELS.register("parti_micro", builds=Parti)
def parti_micro(**overrides) -> Parti:
    """Micro Parti for unit tests: 4x4 codes, 1 + 2 layers, width 32."""
    return _size(dict(image_grid=(4, 4), image_vocab_size=16, width=32, encoder_layers=1,
                      decoder_layers=2, mlp_dim=64, heads=2, text_vocab_size=64,
                      max_text_length=16), overrides)
