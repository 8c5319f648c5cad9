"""SentencePiece text tokenizer that runs inside the TensorFlow graph (tf.data, SavedModel).

    tok = SentencePieceTokenizer("runs/spm/spm.model", max_length=128)
    out = tok(["a red circle at the top left", "two blue squares"])
    out["ids"]        # int32 [2, 128]: pieces, then EOS, then pad (0)
    out["mask"]       # int32 [2, 128]: 1 where `ids` holds a real token (EOS included)
    out["truncated"]  # bool [2]: the prompt did not fit in max_length and was cut
    tok.detokenize(out["ids"])   # tf.string [2]

Ids are those of the python `sentencepiece` library for the same model file (tokenizing is done
by `tensorflow_text.SentencepieceTokenizer`, which wraps the same C++ code). Make a model with
`zoo-train-spm` (see `zoo/tokenizers/spm_training.py`); its pieces are pad=0, eos=1, unk=2, no bos.
"""

import os

import tensorflow as tf

from zoo.errors import ZooError, check_positive_ints
from zoo.registry import TEXT_TOKENIZERS

PAD_ID = 0  # Every batch pads with 0; `mask` says which positions are real.


def _how_to_make(path):
    return (f"make one with: zoo-train-spm --dataset=synthetic_shapes --output={path} "
            f"--vocab_size=1000 (or --text_file=your_captions.txt, or "
            f"--dataset=image_caption_folder --gin_bindings=\"image_caption_folder.path="
            f"'/my/images'\")")


def read_model_proto(model_path):
    """The bytes of a SentencePiece model file, or a ZooError that says how to make one."""
    if not isinstance(model_path, (str, os.PathLike)) or not str(model_path):
        raise ZooError(f"SentencePiece model path must be a file path, got {model_path!r}; "
                       + _how_to_make("/path/to/spm.model"))
    path = os.fspath(model_path)
    if not tf.io.gfile.exists(path):
        raise ZooError(f"SentencePiece model {path!r} not found; " + _how_to_make(path))
    if tf.io.gfile.isdir(path):
        raise ZooError(f"SentencePiece model {path!r} is a directory, not a .model file; "
                       + _how_to_make(os.path.join(path, "spm.model")))
    with tf.io.gfile.GFile(path, "rb") as f:
        return f.read()


@TEXT_TOKENIZERS.register("sentencepiece", needs="a SentencePiece .model file (model_path)")
class SentencePieceTokenizer(tf.Module):
    """SentencePiece tokenizer in the TF graph: fixed-length ids with EOS, mask, truncation flag.

    Args:
        model_path: str. A SentencePiece `.model` file (local or any tf.io.gfile path).
        max_length: int. Length of `ids` and `mask` (Parti: 128). Longer prompts are cut to
            `max_length` tokens (the last one stays EOS) and flagged in `truncated`.
        add_eos: bool. Append the model's EOS id after the pieces.
    """

    def __init__(self, model_path, max_length=128, add_eos=True):
        super().__init__(name="sentencepiece_tokenizer")
        import sentencepiece
        import tensorflow_text as tf_text

        check_positive_ints("sentencepiece", max_length=max_length)
        if add_eos and max_length < 2:
            raise ZooError(f"sentencepiece.max_length={max_length} leaves no room for a token "
                           f"before EOS; use max_length >= 2 (Parti uses 128)")
        proto = read_model_proto(model_path)
        processor = sentencepiece.SentencePieceProcessor()
        try:
            processor.LoadFromSerializedProto(proto)
        except Exception as e:  # noqa: BLE001 -- any failure means "not a model file"
            raise ZooError(f"{os.fspath(model_path)!r} is not a valid SentencePiece model "
                           f"({type(e).__name__}: {str(e).strip().splitlines()[0][:120]}); "
                           + _how_to_make(os.fspath(model_path))) from None
        self.model_path = os.fspath(model_path)
        self.max_length = int(max_length)
        self.add_eos = bool(add_eos)
        self.vocab_size = int(processor.get_piece_size())
        self.pad_id = PAD_ID
        self.eos_id = int(processor.eos_id())
        self.unk_id = int(processor.unk_id())
        if self.add_eos and self.eos_id < 0:
            raise ZooError(f"SentencePiece model {self.model_path!r} has no EOS piece; pass "
                           f"add_eos=False or train a model with zoo-train-spm")
        self._processor = processor  # python twin, for tests and host-side helpers
        self._sp = tf_text.SentencepieceTokenizer(model=proto, out_type=tf.int32)

    # -- in-graph API ------------------------------------------------------------------------

    def __call__(self, strings):
        """Tokenizes a tf.string scalar [] or vector [B].

        Returns dict(ids=int32 [B, L], mask=int32 [B, L], truncated=bool [B]) with
        L = max_length; for a scalar input the batch dimension is dropped.
        """
        strings = tf.convert_to_tensor(strings, dtype=tf.string)
        rank = strings.shape.rank
        if rank not in (0, 1):
            raise ZooError(f"text tokenizer takes a string or a vector of strings, got a "
                           f"tensor of shape {strings.shape}")
        scalar = rank == 0
        if scalar:
            strings = strings[tf.newaxis]
        pieces = self._sp.tokenize(strings)  # RaggedTensor int32 [B, (n)]
        room = self.max_length - 1 if self.add_eos else self.max_length
        truncated = pieces.row_lengths() > room
        pieces = pieces[:, :room]
        if self.add_eos:
            eos = tf.fill(tf.stack([pieces.nrows(), tf.constant(1, tf.int64)]),
                          tf.constant(self.eos_id, tf.int32))
            pieces = tf.concat([pieces, eos], axis=1)
        ids = pieces.to_tensor(default_value=self.pad_id,
                               shape=[None, self.max_length])
        mask = tf.sequence_mask(pieces.row_lengths(), self.max_length, dtype=tf.int32)
        out = {"ids": tf.ensure_shape(ids, [None, self.max_length]),
               "mask": tf.ensure_shape(mask, [None, self.max_length]),
               "truncated": truncated}
        if scalar:
            out = {k: v[0] for k, v in out.items()}
        return out

    def tokenize(self, strings):
        """Same as calling the tokenizer."""
        return self(strings)

    def detokenize(self, ids, mask=None):
        """Strings from ids [B, L] or [L] (int); stops at the first EOS, ignores padding."""
        ids = tf.cast(tf.convert_to_tensor(ids), tf.int32)
        rank = ids.shape.rank
        if rank not in (1, 2):
            raise ZooError(f"detokenize takes ids of shape [L] or [B, L], got {ids.shape}")
        scalar = rank == 1
        if scalar:
            ids = ids[tf.newaxis]
        keep = tf.not_equal(ids, self.pad_id)
        if mask is not None:
            mask = tf.convert_to_tensor(mask)
            keep &= tf.cast(mask[tf.newaxis] if scalar else mask, tf.bool)
        if self.eos_id >= 0:
            is_eos = tf.cast(tf.equal(ids, self.eos_id), tf.int32)
            keep &= tf.equal(tf.cumsum(is_eos, axis=1), 0)  # before the first EOS
        # Ids outside the vocabulary would make SentencePiece fail; show them as unknown.
        in_vocab = (ids >= 0) & (ids < self.vocab_size)
        ids = tf.where(in_vocab, ids, tf.fill(tf.shape(ids), max(self.unk_id, 0)))
        text = self._sp.detokenize(tf.ragged.boolean_mask(ids, keep))
        return text[0] if scalar else text

    # -- host helpers ------------------------------------------------------------------------

    def count_tokens(self, text):
        """Number of pieces of a python string (without EOS), via the python library."""
        return len(self._processor.encode(text))

    def id_to_piece(self, i):
        return self._processor.id_to_piece(int(i))

    def get_config(self):
        return {"model_path": self.model_path, "max_length": self.max_length,
                "add_eos": self.add_eos}

    def __repr__(self):
        return (f"SentencePieceTokenizer({self.model_path!r}, max_length={self.max_length}, "
                f"vocab_size={self.vocab_size})")
