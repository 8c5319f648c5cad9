r"""zoo-encode: encodes a dataset once with a trained image tokenizer into TFRecords of codes +
caption tokens, so the transformer stage trains without running the tokenizer every step.

    zoo-encode --tokenizer_dir=runs/tokenizer_tiny --spm_model=runs/spm/spm.model \
        --dataset=synthetic_shapes --split=train --num_examples=20000 --output=runs/codes

Writes `<output>/<split>-00000-of-0000N.tfrecord` and `<output>/<split>.json` (grid size,
codebook size, text settings, example count). The format and its readers live in
`zoo.data.records` (`read_encoded(output, split, batch_size, seed, start_step)` gives the
batches a `parti` task with `code_records` trains on).
"""

from absl import flags

from zoo.tools import common

FLAGS = flags.FLAGS


def define_flags():
    common.define_gin_flags()
    flags.DEFINE_string("tokenizer_dir", None, "Model directory of a trained `vit_vqgan` run.")
    flags.DEFINE_string("output", None, "Output directory for the TFRecords.")
    flags.DEFINE_string("dataset", "synthetic_shapes", "Registered dataset to encode.")
    flags.DEFINE_string("split", "train", "Dataset split.")
    flags.DEFINE_string("spm_model", None, "SentencePiece .model for the captions (None: "
                        "captions only, no text tokens).")
    flags.DEFINE_integer("max_length", 128, "Text token length (Parti: 128).")
    flags.DEFINE_integer("num_examples", None, "Encode only the first N examples.")
    flags.DEFINE_integer("batch_size", 64, "Images per encoder call.")
    flags.DEFINE_integer("shard_size", 50000, "Examples per TFRecord file.")


def main(argv):
    common.setup(argv)
    from zoo.train.tokenizer_task import encode_run
    info = encode_run(FLAGS.tokenizer_dir, FLAGS.output, dataset=FLAGS.dataset,
                      split=FLAGS.split, spm_model=FLAGS.spm_model, max_length=FLAGS.max_length,
                      num_examples=FLAGS.num_examples, batch_size=FLAGS.batch_size,
                      shard_size=FLAGS.shard_size)
    print(f"zoo-encode: {info['num_examples']} examples of {FLAGS.dataset}/{FLAGS.split} -> "
          f"{FLAGS.output} ({len(info['files'])} file(s), {info['grid_size'][0]}x"
          f"{info['grid_size'][1]} codes, {info['seconds']}s)")


def run():
    common.run(main, define_flags)


if __name__ == "__main__":
    run()
