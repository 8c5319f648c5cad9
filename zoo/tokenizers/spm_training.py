"""Training SentencePiece models for `SentencePieceTokenizer` (what zoo-train-spm runs).

    train_sentencepiece(["a red circle", ...], "runs/spm/spm.model", vocab_size=1000)
    # a dataset's captions and text files: zoo.data.text_sources.train_sentencepiece_from

The model uses pad=0, eos=1, unk=2 and no bos, as `SentencePieceTokenizer` expects (Parti:
16,000 pieces). When the text cannot fill the vocabulary, the error (`VocabSizeError`) says so
and suggests the largest size that works (`shrink_to_fit=True` uses it directly). The same
text gives a byte-identical model.
"""

import logging
import os
import re
import shutil
import tempfile
from typing import Iterable, Optional

from zoo.errors import ZooError

log = logging.getLogger("zoo")

MODEL_TYPES = ("unigram", "bpe", "char", "word")
PAD_ID, EOS_ID, UNK_ID = 0, 1, 2


class VocabSizeError(ZooError):
    """The text cannot make `vocab_size` pieces; `suggested` is a size that works."""

    def __init__(self, message, suggested):
        super().__init__(message)
        self.suggested = suggested


def train_sentencepiece(texts: Iterable[str], output: str, vocab_size: int = 16000,
                        model_type: str = "unigram", character_coverage: float = 1.0,
                        max_sentences: Optional[int] = None, shrink_to_fit: bool = False,
                        num_threads: int = 2) -> str:
    """Trains a SentencePiece model on `texts` and writes it to `output` (a .model path).

    Also writes the matching `.vocab` next to it. Returns the model path. Raises
    VocabSizeError (a ZooError with `.suggested`) when the text is too small for `vocab_size`,
    unless `shrink_to_fit`, which then trains with the suggested size.
    """
    import sentencepiece as spm

    if not isinstance(vocab_size, int) or isinstance(vocab_size, bool) or vocab_size < 4:
        raise ZooError(f"vocab_size must be an integer >= 4, got {vocab_size!r}")
    if model_type not in MODEL_TYPES:
        raise ZooError(f"model_type must be one of {', '.join(MODEL_TYPES)}, got "
                       f"{model_type!r}")
    if not 0.0 < float(character_coverage) <= 1.0:
        raise ZooError(f"character_coverage must be in (0, 1], got {character_coverage!r}")
    if not output or os.path.isdir(output):
        raise ZooError(f"--output must be a file path such as runs/spm/spm.model, got "
                       f"{output!r}")
    output = os.path.abspath(os.path.expanduser(output))
    out_dir = os.path.dirname(output)
    os.makedirs(out_dir, exist_ok=True)
    stem = output[:-len(".model")] if output.endswith(".model") else output

    with tempfile.TemporaryDirectory(prefix=".spm-", dir=out_dir) as tmp:
        corpus = os.path.join(tmp, "corpus.txt")
        n_sentences, words = 0, set()
        with open(corpus, "w", encoding="utf-8") as f:
            for text in texts:
                if max_sentences is not None and n_sentences >= max_sentences:
                    break
                # SentencePiece reads one sentence per line.
                line = " ".join(str(text).split())
                if not line:
                    continue
                f.write(line + "\n")
                n_sentences += 1
                if len(words) < 10_000_000:
                    words.update(line.split())
        if not n_sentences:
            raise ZooError("no text to train SentencePiece on (all sentences empty)")
        prefix = os.path.join(tmp, "spm")
        size = vocab_size
        for attempt in range(2):
            try:
                spm.SentencePieceTrainer.train(
                    input=corpus, model_prefix=prefix, vocab_size=size,
                    model_type=model_type, character_coverage=float(character_coverage),
                    pad_id=PAD_ID, eos_id=EOS_ID, unk_id=UNK_ID, bos_id=-1,
                    input_sentence_size=0, num_threads=max(1, int(num_threads)),
                    minloglevel=2)
                break
            except RuntimeError as e:
                err = _explain(str(e), size, n_sentences, len(words), model_type)
                if shrink_to_fit and isinstance(err, VocabSizeError) and attempt == 0:
                    log.info("zoo-train-spm: vocab_size=%d does not fit the text; using %d",
                             size, err.suggested)
                    size = err.suggested
                    continue
                raise err from None
        _drop_temporary_paths(prefix + ".model", os.path.basename(stem))
        sp = spm.SentencePieceProcessor(model_file=prefix + ".model")
        pieces = sp.get_piece_size()
        if pieces != vocab_size:
            log.info("zoo-train-spm: the model has %d pieces (asked for %d)", pieces,
                     vocab_size)
        shutil.move(prefix + ".vocab", stem + ".vocab.tmp")
        shutil.move(prefix + ".model", output + ".tmp")
    os.replace(stem + ".vocab.tmp", stem + ".vocab")
    os.replace(output + ".tmp", output)  # atomic: a reader never sees half a model
    return output


def piece_count(model_path: str) -> int:
    """Number of pieces of a SentencePiece model file."""
    import sentencepiece as spm
    return spm.SentencePieceProcessor(model_file=model_path).get_piece_size()


def _drop_temporary_paths(model_file: str, name: str) -> None:
    """Rewrites the model without the temporary corpus path SentencePiece records in it, so
    the same text gives a byte-identical model."""
    from sentencepiece import sentencepiece_model_pb2
    proto = sentencepiece_model_pb2.ModelProto()
    with open(model_file, "rb") as f:
        proto.ParseFromString(f.read())
    del proto.trainer_spec.input[:]
    proto.trainer_spec.model_prefix = name
    with open(model_file, "wb") as f:
        f.write(proto.SerializeToString(deterministic=True))


_TOO_HIGH = re.compile(r"Vocabulary size too high \((\d+)\)\. Please set it to a value <= (\d+)")
_TOO_SMALL = re.compile(r"Vocabulary size is smaller than required_chars\. (\d+) vs (\d+)")


def _explain(message, vocab_size, n_sentences, n_words, model_type) -> ZooError:
    m = _TOO_HIGH.search(message)
    if m:
        most = int(m.group(2))
        return VocabSizeError(
            f"the text ({n_sentences} sentences, {n_words} distinct words) has too few "
            f"distinct pieces for vocab_size={vocab_size} with model_type={model_type}: the "
            f"most it supports is {most}; rerun with --vocab_size={most} (or add text, or "
            f"pass --shrink_to_fit)", suggested=most)
    m = _TOO_SMALL.search(message)
    if m:
        need = int(m.group(2))
        return VocabSizeError(
            f"vocab_size={vocab_size} is smaller than the {need} pieces the text's "
            f"characters need; rerun with --vocab_size={need} or more (or lower "
            f"--character_coverage)", suggested=need)
    first = message.strip().splitlines()[0] if message.strip() else "unknown error"
    return ZooError(f"SentencePiece training failed: {first}")
