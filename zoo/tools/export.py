"""zoo-export: a SavedModel that turns prompt strings into images, tokenizer included.

    zoo-export --model_dir=runs/demo/parti --output_dir=runs/demo/export

Serve it with nothing but TensorFlow and tensorflow-text (which registers the SentencePiece
ops the graph uses):

    import tensorflow as tf, tensorflow_text  # noqa: F401
    model = tf.saved_model.load("runs/demo/export")
    out = model.signatures["serving_default"](prompts=tf.constant(["a red circle"]))
    out = model.signatures["generate"](
        prompts=tf.constant(["a red circle", "two blue squares"]),
        seed=tf.constant(7, tf.int64), num_samples=tf.constant(4),
        guidance_scale=tf.constant(1.2))
    out["images"]     # uint8 [2, 4, H, W, 3]
    out["png"]        # string [2, 4]: PNG files (tf.io.write_file(path, out["png"][0, 0]))
    out["codes"]      # int32 [2, 4, h, w] image codes
    out["truncated"]  # bool [2]: prompts cut at the tokenizer's max length

Signatures: `serving_default` takes only `prompts` (seed, number of samples and guidance scale
as exported); `generate` takes all four. Sample s of prompt p depends only on (seed, p, s), as
in zoo-sample, so the same seed gives the same images as `zoo-sample` for the same prompts.
Temperature, top-k and top-p are fixed at export time (flags, else the run's recorded settings
in sampling.json, else the defaults; printed at start). The library side is `zoo.models.export`.
"""

import sys

from absl import flags

from zoo.tools import common

FLAGS = flags.FLAGS


def define_flags():
    common.define_gin_flags()
    flags.DEFINE_string("output_dir", None, "Folder to write the SavedModel to (default: "
                        "<model_dir>/export; an earlier export there is replaced).")
    common.define_sampling_flags(decoding=False)  # baked into the graph; `generate` takes
    # guidance_scale as an input (the flag sets serving_default's)
    flags.DEFINE_integer("num_samples", 1, "Default samples per prompt for serving_default.")
    flags.DEFINE_integer("seed", 0, "Default seed for serving_default.")
    flags.DEFINE_integer("step", None, "Checkpoint step of --model_dir (default: newest).")
    flags.DEFINE_string("upsampler_dir", None, "A super-resolution run to include.")


def main(argv):
    common.setup(argv)
    from zoo.models.export import SIGNATURE_FULL, export_model_dir
    out = export_model_dir(
        FLAGS.model_dir, FLAGS.output_dir, step=FLAGS.step, upsampler_dir=FLAGS.upsampler_dir,
        temperature=FLAGS.temperature, top_k=FLAGS.top_k, top_p=FLAGS.top_p,
        guidance_scale=FLAGS.guidance_scale, num_samples=FLAGS.num_samples, seed=FLAGS.seed)
    print(f"zoo-export: wrote {out} (signatures serving_default and {SIGNATURE_FULL}; load "
          f"with tf.saved_model.load after `import tensorflow_text`)")
    sys.stdout.flush()


def run():
    common.run(main, define_flags)


if __name__ == "__main__":
    run()
