r"""zoo-train-spm: trains a SentencePiece model from a dataset's captions and/or text files.

    zoo-train-spm --dataset=synthetic_shapes --output=runs/spm/spm.model --vocab_size=1000
    zoo-train-spm --dataset=image_caption_folder \
        --gin_bindings="image_caption_folder.path='/my/images'" --output=/my/spm.model
    zoo-train-spm --text_file=a.txt --text_file=b.txt --output=spm.model --model_type=bpe

The model uses pad=0, eos=1, unk=2 and no bos, as `SentencePieceTokenizer` expects (Parti:
16,000 pieces). When the text cannot fill the vocabulary, the tool says so and suggests the
largest size that works (`--shrink_to_fit` uses it directly). The library side is
`zoo.tokenizers.spm_training` (and `zoo.data.text_sources` for the text).
"""

import sys

from absl import flags

from zoo.tools import common

FLAGS = flags.FLAGS


def define_flags():
    common.define_gin_flags()
    flags.DEFINE_string("dataset", None, "Registered dataset whose captions to train on, e.g. "
                        "synthetic_shapes or image_caption_folder (see zoo-list dataset).")
    flags.DEFINE_string("split", "train", "Dataset split to read captions from.")
    flags.DEFINE_multi_string("text_file", [], "UTF-8 text file, one sentence per line "
                              "(repeatable; used with or instead of --dataset).")
    flags.DEFINE_string("output", None, "Where to write the model, e.g. runs/spm/spm.model "
                        "(the .vocab goes next to it).")
    flags.DEFINE_integer("vocab_size", 16000, "Number of pieces (Parti: 16000).")
    flags.DEFINE_string("model_type", "unigram", "SentencePiece model type: unigram, bpe, char "
                        "or word.")
    flags.DEFINE_float("character_coverage", 1.0, "Share of characters covered (1.0 for "
                       "small alphabets; 0.9995 for Chinese/Japanese).")
    flags.DEFINE_integer("max_sentences", 1_000_000, "Use at most this many sentences.")
    flags.DEFINE_bool("shrink_to_fit", False, "When the text cannot fill --vocab_size, train "
                      "with the largest size it supports instead of stopping.")


def main(argv):
    common.setup(argv)
    from zoo.data.text_sources import train_sentencepiece_from
    from zoo.tokenizers.spm_training import piece_count
    path = train_sentencepiece_from(
        FLAGS.output, dataset=FLAGS.dataset, text_files=FLAGS.text_file, split=FLAGS.split,
        max_sentences=FLAGS.max_sentences, vocab_size=FLAGS.vocab_size,
        model_type=FLAGS.model_type, character_coverage=FLAGS.character_coverage,
        shrink_to_fit=FLAGS.shrink_to_fit)
    what = " + ".join(([FLAGS.dataset + "/" + FLAGS.split] if FLAGS.dataset else [])
                      + list(FLAGS.text_file))
    print(f"wrote {path} ({piece_count(path)} pieces, {FLAGS.model_type}) from {what}")
    sys.stdout.flush()


def run():
    common.run(main, define_flags)


if __name__ == "__main__":
    run()
