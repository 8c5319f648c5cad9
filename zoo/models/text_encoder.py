"""Parti's dense text encoder: token + position embeddings, pre-LN transformer blocks, final LN.

Registered as text encoder `parti_encoder`; the Parti model builds it by name (see
`zoo.models.parti`), so a pretrained encoder registered under another name swaps in by gin:

    parti_350m.text_encoder = 'my_pretrained_encoder'

Interface shared by every text encoder: `encoder(tokens int32 [B, L], mask [B, L], training)
-> [B, L, width]`, attribute `width`. Weight names (below the encoder's own name, e.g.
`parti/text_encoder/...`): `token_embedding/embeddings`, `position_embedding/embeddings`,
`layer_{i}/self_attention/{query,key,value,output}/{kernel,bias}`, `layer_{i}/mlp/{wi,wo}/...`,
`layer_{i}/{self_attention_norm,mlp_norm}/{gamma,beta}`, `final_norm/{gamma,beta}`.
"""

import keras
from keras import ops

from zoo.errors import ZooError, check_positive_ints
from zoo.layers.tracking import track_layers
from zoo.layers.transformer import EncoderBlock
from zoo.registry import TEXT_ENCODERS


@TEXT_ENCODERS.register("parti_encoder")
@keras.saving.register_keras_serializable(package="zoo")
class TransformerTextEncoder(keras.layers.Layer):
    """Parti's transformer text encoder (dense self-attention, an extra LayerNorm at the output).

    Args:
        vocab_size: int. Text vocabulary (Parti: SentencePiece with 16,000 pieces).
        width: int. Model width (Parti Table 1: 1024 / 2048 / 4096).
        layers: int. Number of blocks (Parti Table 1: 12, 16 for 20B).
        heads: int. Attention heads.
        mlp_dim: int. MLP hidden width.
        max_length: int. Longest token sequence (Parti: 128).
        dropout: float. Dropout on residual branches and embeddings (Parti: 0.1).
        mixed_precision: bool. Projections in bfloat16, LayerNorms and outputs in float32.
    """

    def __init__(self, vocab_size=16000, width=1024, layers=12, heads=16, mlp_dim=4096,
                 max_length=128, dropout=0.1, mixed_precision=False, **kwargs):
        super().__init__(**kwargs)
        check_positive_ints("parti_encoder", vocab_size=vocab_size, width=width, layers=layers,
                            heads=heads, mlp_dim=mlp_dim, max_length=max_length)
        # numpy integers pass the check; the layers and the (JSON) config take Python ints.
        vocab_size, width, layers, heads, mlp_dim, max_length = (
            int(v) for v in (vocab_size, width, layers, heads, mlp_dim, max_length))
        if width % heads:
            raise ZooError(f"parti_encoder.width={width} is not divisible by heads={heads}")
        self.vocab_size = vocab_size
        self.width = width
        self.num_layers = layers
        self.heads = heads
        self.mlp_dim = mlp_dim
        self.max_length = max_length
        self.dropout_rate = dropout
        self.mixed_precision = mixed_precision
        policy = "mixed_bfloat16" if mixed_precision else None
        self.token_embedding = keras.layers.Embedding(vocab_size, width, name="token_embedding")
        self.position_embedding = keras.layers.Embedding(max_length, width,
                                                         name="position_embedding")
        self.blocks = track_layers(self, [
            EncoderBlock(width, heads, mlp_dim, dropout=dropout, name=f"layer_{i}", dtype=policy)
            for i in range(layers)])
        self.final_norm = keras.layers.LayerNormalization(epsilon=1e-6, name="final_norm",
                                                          dtype="float32")
        self.dropout = keras.layers.Dropout(dropout, name="dropout")

    def build(self, input_shape=None):
        self.token_embedding.build((None, None))
        self.position_embedding.build((None, None))
        for block in self.blocks:
            block.build()
        self.final_norm.build((None, None, self.width))

    def call(self, tokens, mask=None, training=False):
        length = tokens.shape[1]
        if length is not None and length > self.max_length:
            raise ZooError(f"parti_encoder got {length} tokens, more than its max_length="
                           f"{self.max_length}; truncate the prompt or raise max_length")
        if mask is None:
            mask = ops.ones_like(tokens)
        positions = ops.arange(ops.shape(tokens)[1])
        x = self.token_embedding(tokens) + self.position_embedding(positions)[None]
        x = self.dropout(ops.cast(x, "float32"), training=training)
        for block in self.blocks:
            x = block(x, padding_mask=mask, training=training)
        return self.final_norm(x)

    def compute_mask(self, tokens, mask=None):
        return None  # the padding mask travels explicitly, not as a Keras mask

    def get_config(self):
        return {**super().get_config(), "vocab_size": self.vocab_size, "width": self.width,
                "layers": self.num_layers, "heads": self.heads, "mlp_dim": self.mlp_dim,
                "max_length": self.max_length, "dropout": self.dropout_rate,
                "mixed_precision": self.mixed_precision}
