"""zoo-demo: the whole Parti pipeline on a CPU with no download: on the built-in shapes data,
or on your own folder of image-caption pairs.

    zoo-demo --model_dir=runs/demo
    zoo-demo --data=/data/my_images --model_dir=runs/mine

Stages, one line each, every one printed with the standalone command that redoes it (each
training stage is an ordinary `zoo-train` run of a gin file in gin/runs/):

  1. text tokenizer   SentencePiece on the training captions              -> spm/spm.model
  2. image tokenizer  ViT-VQGAN (tiny)                                     -> tokenizer/
  3. reranker         contrastive dual encoder                             -> contrastive/
  4. transformer      Parti (tiny), targets from the frozen tokenizer       -> parti/
  5. sampling         a small grid of sampling settings on held-out captions; the best is
                      recorded in parti/sampling.json (zoo-sample/eval/export use it)
  6. evaluation       samples for held-out captions, reranked and judged    -> eval/ (index.html)

Without --data the stages read `synthetic_shapes` (gin/runs/demo_*.gin) and the shapes checker
judges the samples. With --data=FOLDER (metadata.jsonl or metadata.csv with file_name and text)
they read the folder's train split (gin/runs/folder_*.gin; its test/ or validation/ subfolder,
else a hash-chosen 5% of the files, is held out) at sizes picked from the folder, and the
evaluation reports the tokenizer's held-out PSNR, the reranker's caption retrieval, the
caption-following rate of the samples (with chance levels) and FID/KID against the held-out
images; `--preset=gpu256` runs Parti's sizes at 256 px instead (gin/runs/folder_gpu256.gin).

Every stage resumes: run the same command again after an interruption and it continues where it
stopped; a finished stage is skipped. A --model_dir made from other data is refused.
`--gin_file` and `--gin_bindings` apply to every stage after its own gin file (e.g.
`--gin_bindings="train.steps = 100"`); `--stages` runs a subset.
"""

from absl import flags

from zoo.tools import common

FLAGS = flags.FLAGS


def define_flags():
    common.define_gin_flags()
    flags.DEFINE_string("data", None, "A folder of images with metadata.jsonl / metadata.csv "
                        "(file_name, text): train every stage on it (default: the built-in "
                        "synthetic_shapes data).")
    flags.DEFINE_string("preset", None, "With --data: `gpu256`, Parti's sizes at 256 px for "
                        "accelerators (default: CPU sizes picked from the folder).")
    flags.DEFINE_list("stages", None, "Stages to run (default: all): spm, tokenizer, contrastive, "
                      "parti, sampling, eval.")
    flags.DEFINE_integer("num_prompts", None, "Held-out captions to sample in the eval stage "
                         "(default 64).")
    # Parti draws 16 samples per prompt and keeps the reranker's first. On the demo's Parti
    # (128 held-out captions, bench/RESULTS.md): 4 samples -> 68.8% of first picks accepted,
    # 8 -> 74.2%.
    flags.DEFINE_integer("num_samples", None, "Samples per prompt in the eval stage, reranked by "
                         "the contrastive scorer (default: 8 on shapes, 4 on a folder).")
    flags.DEFINE_float("temperature", None, "Sampling temperature for the eval stage (default: "
                       "the one the sampling stage measured best).")
    flags.DEFINE_float("guidance_scale", None, "Classifier-free guidance scale for the eval stage "
                       "(default: the one the sampling stage measured best).")
    flags.DEFINE_bool("quick", False, "Smoke test: a few steps per stage and a tiny eval (for "
                      "tests; the results mean nothing; a folder may have fewer than 100 pairs).")


def main(argv):
    common.prefer_onednn()  # its training stages, as zoo-train's (before TensorFlow loads)
    common.setup(argv, parse_gin=False)
    from zoo.pipeline import run_demo
    run_demo(FLAGS.model_dir or "runs/demo", FLAGS.data, stages=FLAGS.stages,
             gin_files=FLAGS.gin_file, bindings=FLAGS.gin_bindings, quick=FLAGS.quick,
             preset=FLAGS.preset, num_prompts=FLAGS.num_prompts,
             num_samples=FLAGS.num_samples, temperature=FLAGS.temperature,
             guidance_scale=FLAGS.guidance_scale)


def run():
    common.run(main, define_flags)


if __name__ == "__main__":
    run()
