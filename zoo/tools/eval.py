"""zoo-eval: generate images for a prompt set with a trained Parti run, score them, report.

    zoo-eval --model_dir=runs/demo/parti --prompts=shapes --num_prompts=64 \
        --output_dir=runs/demo/eval
    zoo-eval --model_dir=runs/parti --prompts=partiprompts --num_prompts=120 \
        --scorer_dir=runs/contrastive --reference_dir=data/coco_val_images \
        --output_dir=runs/parti/eval_p2

    zoo-eval --model_dir=runs/mine/parti --prompts=heldout --reference_dir=heldout \
        --scorer_dir=runs/mine/contrastive

--prompts: `shapes` (held-out captions of the run's shapes data), `heldout` (the distinct
captions of the held-out split of the data the run trained on, e.g. your folder's),
`partiprompts`, a .tsv with a Prompt column, or a .txt with one prompt per line. Sampling
settings: the flags given, else the run's recorded ones (sampling.json, measured by zoo-demo),
else the defaults; printed at start. Reports, as they apply:
  - shapes checker acceptance, overall and per caption feature (shapes prompts);
  - with --scorer_dir / --scorer (which also reranks each prompt's samples): contrastive
    agreement (mean cosine of images and prompts) and the caption-following rate with its
    chance level (zoo/eval/following.py);
  - FID and KID against --reference_dir (a folder of images, `heldout` for the run's own
    held-out images, or the .npz of statistics a previous run wrote), with InceptionV3 when
    its weights file is present, else a random conv net (said so in the summary);
  - per category and challenge tables for PartiPrompts.
Writes images/, samples.jsonl, results.json, summary.txt, index.html (the gallery) and
grid.png into --output_dir. Interrupted runs resume: the same command continues with the
prompts not yet generated.
"""

import os
import sys

from absl import flags

from zoo.tools import common

FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_string("prompts", "shapes", "Prompt set: shapes, heldout, partiprompts, a .tsv "
                        "with a Prompt column or a .txt with one prompt per line.")
    flags.DEFINE_integer("num_prompts", None, "Use at most this many prompts (a category-"
                         "balanced subset; default: all, or 64 for shapes).")
    flags.DEFINE_string("output_dir", None, "Where to write images, results and the gallery "
                        "(default: <model_dir>/eval).")
    flags.DEFINE_string("reference_dir", None, "Reference images for FID/KID: a folder, "
                        "`heldout` (the run's own held-out images), or a .npz of statistics "
                        "written by an earlier zoo-eval. No FID without it.")
    flags.DEFINE_string("feature_network", None, "Registered feature network for FID/KID "
                        "(default: inception_v3 when ~/.keras/models/"
                        "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5 exists, "
                        "else random_conv, whose figures compare zoo runs only).")
    flags.DEFINE_integer("num_samples", 4, "Samples per prompt.")
    flags.DEFINE_integer("seed", 0, "Sampling seed.")
    flags.DEFINE_integer("batch_size", 8, "Prompts decoded together.")
    flags.DEFINE_string("scorer_dir", None, "A contrastive zoo-train run: reranks samples "
                        "and gives the contrastive agreement and caption-following figures.")
    flags.DEFINE_string("scorer", None, "A registered scorer name instead of --scorer_dir "
                        "(configured with --gin_bindings).")
    flags.DEFINE_integer("step", None, "Checkpoint step of --model_dir (default: newest).")
    flags.DEFINE_bool("progress", True, "Show progress bars.")
    common.define_sampling_flags()
    common.define_gin_flags()


def main(argv):
    common.setup(argv)
    from zoo.eval.report import summary_lines
    from zoo.eval.runner import evaluate_run
    results = evaluate_run(
        FLAGS.model_dir, FLAGS.prompts, FLAGS.output_dir, num_prompts=FLAGS.num_prompts,
        num_samples=FLAGS.num_samples, seed=FLAGS.seed, temperature=FLAGS.temperature,
        top_k=FLAGS.top_k, top_p=FLAGS.top_p, guidance_scale=FLAGS.guidance_scale,
        batch_size=FLAGS.batch_size, xla=FLAGS.xla, weights=FLAGS.weights,
        jacobi_window=FLAGS.jacobi_window, scorer_dir=FLAGS.scorer_dir,
        scorer=FLAGS.scorer, reference=FLAGS.reference_dir,
        feature_network=FLAGS.feature_network, step=FLAGS.step, progress=FLAGS.progress)
    sys.stdout.write(summary_lines(FLAGS.output_dir or os.path.join(FLAGS.model_dir, "eval"),
                                   results))
    sys.stdout.flush()


def run():
    common.run(main, define_flags)


if __name__ == "__main__":
    run()
