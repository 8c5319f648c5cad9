"""ViT-VQGAN (Yu et al. 2021), Parti's image tokenizer: images <-> grids of discrete codes.

    tok = zoo.create("image_tokenizer", "vit_vqgan_tiny")
    codes = tok.encode(images)          # [B, 32, 32, 3] in [0, 1] -> int32 [B, 8, 8]
    images = tok.decode(codes)          # -> [B, 32, 32, 3] in [0, 1]

Encoder: 8x8 patches -> linear -> transformer -> two-layer tanh FFN whose second layer projects
to the 32-d lookup space. Quantizer: l2-normalised factorized codebook (zoo.layers.quantizer).
Decoder: 32-d code -> linear -> transformer -> two-layer tanh FFN -> pixels of each patch.
Encoder and decoder are sized separately (`decoder_*`), for Parti's recipe: train small, then
freeze encoder + codebook and fine-tune a large decoder with `logit_laplace=False`.

With `logit_laplace=True` the decoder predicts, per pixel and channel, the location mu and
log-scale of a logit-Laplace distribution (DALL-E, Ramesh et al. 2021, sec. A.3) and the image
is sigmoid(mu) mapped from (eps, 1 - eps) back to [0, 1]; with False it predicts pixels
directly (no final sigmoid; decode clips to [0, 1]).

Parameter counts: the ViT-VQGAN paper's size table (Table 2; 32M / 91M / 599M) counts one
transformer side (the encoder; the decoder mirrors it), see `paper_param_count`. The table
gives blocks, heads, width and MLP width but not the width of one attention head, and with
the usual width / heads neither small (27.0M) nor large (629M) lands on it; base (88.5M) does.
The head width is the free choice that matches the table: small 8 heads of 96 (31.2M, -2.6%),
large 16 heads of 64 (596.0M, -0.5%), base 12 of 64 (88.5M, -2.8%).
"""

import inspect

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from zoo.compat import RENAMED_VIT_VQGAN, renamed
from zoo.errors import ZooError, check_positive_ints
from zoo.layers.arguments import constructor_arguments
from zoo.layers.quantizer import FactorizedQuantizer
from zoo.layers.vit import PatchEmbed, TanhHead, ViTStack, transformer_block_params, unpatchify
from zoo.registry import IMAGE_TOKENIZERS

LAPLACE_EPS = 0.1  # DALL-E's logit-Laplace epsilon


@keras.saving.register_keras_serializable(package="zoo")
class ViTVQGAN(keras.Model):
    """ViT-VQGAN image tokenizer.

    Args:
        image_size: int. Side of the (square) input images.
        patch_size: int. Side of a patch; the code grid is image_size / patch_size squared.
        blocks: int. Encoder transformer blocks.
        heads: int. Encoder attention heads.
        width: int. Encoder width.
        mlp_dim: int. Encoder MLP hidden width (also the hidden width of its tanh head).
        head_dim: int or None. Width of one attention head (None: width // heads).
        decoder_blocks, decoder_heads, decoder_width, decoder_mlp_dim, decoder_head_dim: the
            decoder's sizes; None means the same as the encoder's.
        codebook_size: int. Number of codes (ViT-VQGAN: 8192).
        lookup_dim: int. Factorized lookup width (ViT-VQGAN: 32).
        commitment_beta: float. Commitment loss weight (ViT-VQGAN: 0.25).
        logit_laplace: bool. Decoder predicts logit-Laplace parameters and ends in a sigmoid;
            False for Parti's fine-tuned decoder.
        dropout: float. Transformer dropout.
        usage_window: int. Training steps over which codebook usage is measured.
        restart_dead_codes: bool. Re-initialise codes unused over a window from encoder outputs.
    """

    # The two sides the paper's size table counts one at a time (zoo.models.params).
    param_groups = {"encoder": ("patch_embed", "encoder", "encoder_head"),
                    "quantizer": ("quantizer",),
                    "decoder": ("decoder_in", "decoder", "decoder_head")}

    def __init__(self, image_size=256, patch_size=8, blocks=8, heads=8, width=512,
                 mlp_dim=2048, head_dim=None, decoder_blocks=None, decoder_heads=None,
                 decoder_width=None, decoder_mlp_dim=None, decoder_head_dim=None,
                 codebook_size=8192, lookup_dim=32, commitment_beta=0.25, logit_laplace=True, dropout=0.0,
                 usage_window=100, restart_dead_codes=False, **kwargs):
        super().__init__(**kwargs)
        check_positive_ints("vit_vqgan", image_size=image_size, patch_size=patch_size,
                            blocks=blocks, heads=heads, width=width, mlp_dim=mlp_dim,
                            codebook_size=codebook_size, lookup_dim=lookup_dim)
        if image_size % patch_size:
            raise ZooError(f"image_size {image_size} is not a multiple of patch_size "
                           f"{patch_size}; pick sizes so that the patches tile the image")
        if width % heads and head_dim is None:
            raise ZooError(f"width {width} is not divisible by heads {heads}; set head_dim")
        self.image_size = int(image_size)
        self.patch_size = int(patch_size)
        self.blocks = blocks
        self.heads = heads
        self.width = width
        self.mlp_dim = mlp_dim
        self.head_dim = head_dim
        self.decoder_blocks = decoder_blocks
        self.decoder_heads = decoder_heads
        self.decoder_width = decoder_width
        self.decoder_mlp_dim = decoder_mlp_dim
        self.decoder_head_dim = decoder_head_dim
        self.codebook_size = int(codebook_size)
        self.lookup_dim = lookup_dim
        self.commitment_beta = commitment_beta
        self.logit_laplace = bool(logit_laplace)
        self.dropout = dropout
        self.usage_window = usage_window
        self.restart_dead_codes = restart_dead_codes

        g = self.image_size // self.patch_size
        self.grid_size = (g, g)
        self.num_tokens = g * g
        dec = self.decoder_sizes()
        self.out_channels = 6 if self.logit_laplace else 3

        self.patch_embed = PatchEmbed(self.patch_size, width, name="patch_embed")
        self.encoder = ViTStack(self.num_tokens, blocks, width, heads, mlp_dim,
                                head_dim=head_dim, dropout=dropout, name="encoder")
        self.encoder_head = TanhHead(mlp_dim, lookup_dim, name="encoder_head")
        self.quantizer = FactorizedQuantizer(codebook_size, lookup_dim, beta=commitment_beta,
                                             usage_window=usage_window,
                                             restart_dead_codes=restart_dead_codes,
                                             name="quantizer")
        self.decoder_in = keras.layers.Dense(dec["width"], name="decoder_in")
        self.decoder = ViTStack(self.num_tokens, dec["blocks"], dec["width"], dec["heads"],
                                dec["mlp_dim"], head_dim=dec["head_dim"], dropout=dropout,
                                name="decoder")
        self.decoder_head = TanhHead(dec["mlp_dim"],
                                     self.patch_size ** 2 * self.out_channels,
                                     name="decoder_head")
        self.build((None, self.image_size, self.image_size, 3))

    def decoder_sizes(self):
        return decoder_sizes(vars(self))

    def build(self, input_shape=None):
        n, dec = self.num_tokens, self.decoder_sizes()
        self.patch_embed.build((None, self.image_size, self.image_size, 3))
        self.encoder.build((None, n, self.width))
        self.encoder_head.build((None, n, self.width))
        self.quantizer.build((None, n, self.lookup_dim))
        self.decoder_in.build((None, n, self.lookup_dim))
        self.decoder.build((None, n, dec["width"]))
        self.decoder_head.build((None, n, dec["width"]))
        self.built = True

    # -- pieces ------------------------------------------------------------------------------

    def encoder_layers(self):
        """Layers frozen by Parti's decoder fine-tune (encoder + codebook)."""
        return [self.patch_embed, self.encoder, self.encoder_head, self.quantizer]

    def decoder_layers(self):
        return [self.decoder_in, self.decoder, self.decoder_head]

    def freeze_encoder(self):
        for layer in self.encoder_layers():
            layer.trainable = False

    def encode_latents(self, images, training=False):
        """Lookup-space latents [B, h*w, lookup_dim] (before normalisation)."""
        x = self.patch_embed(ops.cast(images, self.compute_dtype))
        x = self.encoder(x, training=training)
        return self.encoder_head(x)

    def decode_raw(self, zq, training=False):
        """Raw decoder outputs [B, H, W, out_channels] from code vectors [B, h*w, lookup]."""
        # Codes are unit vectors (entries ~ 1/sqrt(lookup_dim)); scaled to unit-variance
        # entries, the decoder's residual stream starts at the blocks' scale. Unscaled, a small
        # decoder sat at the mean image for hundreds of steps on shapes data.
        zq = ops.cast(zq, "float32") * (float(self.lookup_dim) ** 0.5)
        x = self.decoder_in(ops.cast(zq, self.compute_dtype))
        x = self.decoder(x, training=training)
        x = self.decoder_head(x)
        return unpatchify(ops.cast(x, "float32"), self.grid_size, self.patch_size,
                          self.out_channels)

    def raw_to_image(self, raw):
        """Decoder outputs -> images (not clipped: the L2 loss sees the unclipped values)."""
        if self.logit_laplace:
            return (ops.sigmoid(raw[..., :3]) - LAPLACE_EPS) / (1.0 - 2.0 * LAPLACE_EPS)
        return raw

    def call(self, images, training=False):
        """Reconstructs `images`; returns a dict with reconstruction, raw, codes, vq_loss,
        perplexity."""
        z = self.encode_latents(images, training=training)
        zq, codes, vq_loss, perplexity = self.quantizer(z, training=training)
        raw = self.decode_raw(zq, training=training)
        g = self.grid_size
        return {"reconstruction": self.raw_to_image(raw), "raw": raw,
                "codes": ops.reshape(codes, (-1, g[0], g[1])), "vq_loss": vq_loss,
                "perplexity": perplexity}

    # -- the API later stages use ------------------------------------------------------------

    def check_images(self, images):
        shape = tuple(images.shape)
        s = self.image_size
        if len(shape) != 4:
            raise ZooError(f"images must be [batch, height, width, 3], got shape {shape}")
        if shape[-1] != 3:
            raise ZooError(f"images must have 3 channels (RGB), got shape {shape} with "
                           f"{shape[-1]} channels")
        if (shape[1] is not None and shape[1] != s) or (shape[2] is not None and shape[2] != s):
            raise ZooError(f"this tokenizer takes {s}x{s} images, got {shape[1]}x{shape[2]} "
                           f"(shape {shape}); resize the images or use a tokenizer built with "
                           f"image_size={shape[1]}")

    def encode(self, images):
        """Images [B, H, W, 3] float in [0, 1] -> int32 codes [B, h, w]."""
        images = ops.convert_to_tensor(images)
        self.check_images(images)
        images = ops.cast(images, "float32")
        codes = self.quantizer.lookup(self.encode_latents(images))
        return ops.reshape(codes, (-1, self.grid_size[0], self.grid_size[1]))

    def check_codes(self, codes):
        codes = ops.convert_to_tensor(codes)
        shape = tuple(codes.shape)
        h, w = self.grid_size
        if len(shape) == 2 and shape[1] is not None and shape[1] != h * w:
            raise ZooError(f"codes must be [batch, {h}, {w}] or [batch, {h * w}], got shape "
                           f"{shape}")
        if len(shape) == 3 and (shape[1], shape[2]) != (h, w) and None not in shape[1:]:
            raise ZooError(f"codes must be [batch, {h}, {w}] for this tokenizer's {h}x{w} grid, "
                           f"got shape {shape}")
        if len(shape) not in (2, 3):
            raise ZooError(f"codes must be [batch, {h}, {w}], got shape {shape}")
        if not tf.as_dtype(codes.dtype).is_integer:
            raise ZooError(f"codes must be integers, got dtype {codes.dtype.name}")
        if tf.executing_eagerly() and not _is_sharded(codes):
            values = np.asarray(codes)
            if values.size:
                lo, hi = int(values.min()), int(values.max())
                if lo < 0 or hi >= self.codebook_size:
                    bad = lo if lo < 0 else hi
                    raise ZooError(f"code {bad} is outside the codebook [0, "
                                   f"{self.codebook_size - 1}]")
        else:
            wide = tf.cast(codes, tf.int64)
            with tf.control_dependencies([
                    tf.debugging.assert_less(wide, tf.cast(self.codebook_size, tf.int64),
                                             message=f"code outside the codebook [0, "
                                                     f"{self.codebook_size - 1}]"),
                    tf.debugging.assert_non_negative(
                        wide, message=f"negative code outside the codebook [0, "
                                      f"{self.codebook_size - 1}]")]):
                codes = tf.identity(codes)
        return codes

    def decode(self, codes):
        """int codes [B, h, w] (or [B, h*w]) -> images [B, H, W, 3] in [0, 1]."""
        codes = self.check_codes(codes)
        codes = ops.reshape(ops.cast(codes, "int32"), (-1, self.num_tokens))
        raw = self.decode_raw(self.quantizer.embed(codes))
        return ops.clip(self.raw_to_image(raw), 0.0, 1.0)

    def reconstruct(self, images):
        return self.decode(self.encode(images))

    def get_config(self):
        return {**super().get_config(), "image_size": self.image_size,
                "patch_size": self.patch_size, "blocks": self.blocks, "heads": self.heads,
                "width": self.width, "mlp_dim": self.mlp_dim, "head_dim": self.head_dim,
                "decoder_blocks": self.decoder_blocks, "decoder_heads": self.decoder_heads,
                "decoder_width": self.decoder_width, "decoder_mlp_dim": self.decoder_mlp_dim,
                "decoder_head_dim": self.decoder_head_dim, "codebook_size": self.codebook_size,
                "lookup_dim": self.lookup_dim, "commitment_beta": self.commitment_beta,
                "logit_laplace": self.logit_laplace, "dropout": self.dropout,
                "usage_window": self.usage_window,
                "restart_dead_codes": self.restart_dead_codes}

    @classmethod
    def from_config(cls, config):
        # Saved when widths were called `dim`: renamed.
        return cls(**constructor_arguments(renamed(config, RENAMED_VIT_VQGAN)))


def _is_sharded(x):
    """A DTensor (on a mesh: numpy cannot read it eagerly; checked in-graph instead)."""
    from tensorflow.experimental import dtensor
    return dtensor.is_dtensor(x)


# -- parameter counts --------------------------------------------------------------------------

def _stack_params(length, blocks, width, heads, mlp_dim, head_dim):
    return (length * width + blocks * transformer_block_params(width, heads, mlp_dim, head_dim)
            + 2 * width)


def decoder_sizes(config):
    """The decoder's {blocks, heads, width, mlp_dim, head_dim} from a ViTVQGAN config (its
    `decoder_*` arguments, each defaulting to the encoder's; a decoder with its own width or
    heads gets its own head width, None meaning width // heads)."""
    def pick(key):
        value = config.get(f"decoder_{key}")
        return config[key] if value is None else value

    own_heads = (config.get("decoder_width") is not None
                 or config.get("decoder_heads") is not None)
    return dict(blocks=pick("blocks"), heads=pick("heads"), width=pick("width"),
                mlp_dim=pick("mlp_dim"),
                head_dim=config.get("decoder_head_dim") if own_heads else pick("head_dim"))


def param_counts(config):
    """Analytic parameter counts {encoder, quantizer, decoder, total} for a ViTVQGAN config
    (no weights allocated). `encoder` includes patch embedding, position embeddings, blocks,
    final norm and tanh head; `decoder` likewise with its input projection and pixel head."""
    defaults = {k: v.default for k, v in inspect.signature(ViTVQGAN.__init__).parameters.items()
                if v.default is not inspect.Parameter.empty}
    c = {**defaults, **config}
    p = c["patch_size"]
    n = (c["image_size"] // p) ** 2
    d, m = c["width"], c["mlp_dim"]
    enc = (p * p * 3 * d + d) + _stack_params(n, c["blocks"], d, c["heads"], m, c["head_dim"]) \
        + (d * m + m + m * c["lookup_dim"] + c["lookup_dim"])
    ds = decoder_sizes(c)
    dd, dm = ds["width"], ds["mlp_dim"]
    out = p * p * (6 if c["logit_laplace"] else 3)
    dec = (c["lookup_dim"] * dd + dd) \
        + _stack_params(n, ds["blocks"], dd, ds["heads"], dm, ds["head_dim"]) \
        + (dd * dm + dm + dm * out + out)
    quant = c["codebook_size"] * c["lookup_dim"]
    return {"encoder": enc, "quantizer": quant, "decoder": dec, "total": enc + quant + dec}


def paper_param_count(config):
    """The figure comparable to the ViT-VQGAN size table: one side (the encoder)."""
    return param_counts(config)["encoder"]


# -- registered sizes (ViT-VQGAN Table 2; tiny/micro for CPU demos and tests) -----------------

SIZES = {
    # 8 heads of 96 (attention width 768 > 512), which gives the table's 32M (see above).
    "vit_vqgan_small": dict(blocks=8, heads=8, head_dim=96, width=512, mlp_dim=2048),
    "vit_vqgan_base": dict(blocks=12, heads=12, width=768, mlp_dim=3072),
    # 16 heads of 64 (attention width 1024 < 1280), which gives the table's 599M.
    "vit_vqgan_large": dict(blocks=32, heads=16, head_dim=64, width=1280, mlp_dim=5120),
    "vit_vqgan_small_large": dict(blocks=8, heads=8, head_dim=96, width=512, mlp_dim=2048,
                                  decoder_blocks=32,
                                  decoder_heads=16, decoder_head_dim=64, decoder_width=1280,
                                  decoder_mlp_dim=5120, logit_laplace=False),
    "vit_vqgan_tiny": dict(image_size=32, patch_size=4, blocks=2, heads=4, width=128,
                           mlp_dim=256, codebook_size=512, lookup_dim=32, usage_window=20,
                           restart_dead_codes=True),
    "vit_vqgan_micro": dict(image_size=16, patch_size=4, blocks=1, heads=2, width=32, mlp_dim=64,
                            codebook_size=64, lookup_dim=8, usage_window=10),
}


@IMAGE_TOKENIZERS.register("vit_vqgan_small", builds=ViTVQGAN)
def vit_vqgan_small(**overrides) -> ViTVQGAN:
    """ViT-VQGAN-Small: 8 blocks, 8 heads of 96, 512 wide, MLP 2048 (Parti's tokenizer)."""
    return ViTVQGAN(**{**SIZES["vit_vqgan_small"], **overrides})


@IMAGE_TOKENIZERS.register("vit_vqgan_base", builds=ViTVQGAN)
def vit_vqgan_base(**overrides) -> ViTVQGAN:
    """ViT-VQGAN-Base: 12 blocks, 12 heads, 768 wide, MLP 3072."""
    return ViTVQGAN(**{**SIZES["vit_vqgan_base"], **overrides})


@IMAGE_TOKENIZERS.register("vit_vqgan_large", builds=ViTVQGAN)
def vit_vqgan_large(**overrides) -> ViTVQGAN:
    """ViT-VQGAN-Large: 32 blocks, 16 heads of 64, 1280 wide, MLP 5120."""
    return ViTVQGAN(**{**SIZES["vit_vqgan_large"], **overrides})


@IMAGE_TOKENIZERS.register("vit_vqgan_small_large", builds=ViTVQGAN)
def vit_vqgan_small_large(**overrides) -> ViTVQGAN:
    """Parti's tokenizer after fine-tuning: small encoder, large decoder, no sigmoid."""
    return ViTVQGAN(**{**SIZES["vit_vqgan_small_large"], **overrides})


@IMAGE_TOKENIZERS.register("vit_vqgan_tiny", builds=ViTVQGAN)
def vit_vqgan_tiny(**overrides) -> ViTVQGAN:
    """CPU demo size: 32x32 images, 4x4 patches -> 8x8 codes, 2 blocks of 128, 512 codes."""
    return ViTVQGAN(**{**SIZES["vit_vqgan_tiny"], **overrides})


@IMAGE_TOKENIZERS.register("vit_vqgan_micro", builds=ViTVQGAN)
def vit_vqgan_micro(**overrides) -> ViTVQGAN:
    """Test size: 16x16 images, 4x4 patches -> 4x4 codes, 1 block of 32, 64 codes."""
    return ViTVQGAN(**{**SIZES["vit_vqgan_micro"], **overrides})
