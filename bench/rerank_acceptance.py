"""Does reranking with the contrastive scorer raise the shapes checker's acceptance rate?

For held-out synthetic_shapes captions, draws `--samples` images per prompt from a trained
Parti run, then compares the checker's acceptance of
  - unreranked samples: every sample counts (the expected acceptance of a random pick), and
  - reranked: the sample the contrastive scorer ranks first (what zoo-sample keeps).
Prints both; append them to bench/RESULTS.md.

    python bench/rerank_acceptance.py --parti_dir=runs/demo/parti \
        --scorer_dir=runs/demo/contrastive --prompts=64 --samples=16
"""

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

flags.DEFINE_string("parti_dir", None, "A trained `parti` zoo-train run.")
flags.DEFINE_string("scorer_dir", None, "A trained `contrastive` zoo-train run.")
flags.DEFINE_integer("prompts", 64, "Held-out prompts.")
flags.DEFINE_integer("samples", 16, "Samples per prompt (Parti: 16).")
flags.DEFINE_string("split", "validation", "synthetic_shapes split the prompts come from.")
flags.DEFINE_float("guidance_scale", 1.2, "Classifier-free guidance scale.")
flags.DEFINE_integer("seed", 0, "Sampling seed.")
flags.DEFINE_integer("parti_step", None, "Parti checkpoint step (default: the newest).")
flags.DEFINE_integer("batch_prompts", 8, "Prompts sampled at once.")
flags.mark_flags_as_required(["parti_dir", "scorer_dir"])
FLAGS = flags.FLAGS


def main(argv):
    del argv
    import numpy as np

    from zoo import plugins
    plugins.ensure_loaded()
    from zoo.data import shapes
    from zoo.models.sampling import TextToImage
    from zoo.registry import DATASETS, SCORERS

    t0 = time.time()
    scorer = SCORERS.create("contrastive_scorer", model_dir=FLAGS.scorer_dir)
    pipe = TextToImage.from_model_dir(FLAGS.parti_dir, step=FLAGS.parti_step,
                                      guidance_scale=FLAGS.guidance_scale)
    task = pipe.task
    dataset = DATASETS.create(getattr(task, "dataset_name", "synthetic_shapes"),
                              **(getattr(task, "dataset_options", None) or {}))
    prompts = [dataset.example(i, FLAGS.split)["caption"] for i in range(FLAGS.prompts)]
    accepted_all, accepted_top, accepted_worst = [], [], []
    for start in range(0, len(prompts), FLAGS.batch_prompts):
        batch = prompts[start:start + FLAGS.batch_prompts]
        images, _ = pipe(batch, prompt_ids=list(range(start, start + len(batch))),
                         num_samples=FLAGS.samples, seed=FLAGS.seed)
        for prompt, samples in zip(batch, images):
            ok = np.array([shapes.check(prompt, im) for im in samples])
            order, _ = scorer.rerank(samples, prompt)
            accepted_all.append(ok.mean())
            accepted_top.append(ok[order[0]])
            accepted_worst.append(ok[order[-1]])
    print(f"rerank_acceptance: {len(prompts)} {FLAGS.split} prompts x {FLAGS.samples} samples "
          f"(guidance {FLAGS.guidance_scale}); checker acceptance unreranked "
          f"{np.mean(accepted_all):.3f}, reranked top-1 {np.mean(accepted_top):.3f} "
          f"(scorer's last pick {np.mean(accepted_worst):.3f}); {time.time() - t0:.0f} s; "
          f"parti {FLAGS.parti_dir} (step {getattr(task, 'restored_step', '?')}), scorer "
          f"{FLAGS.scorer_dir}")


if __name__ == "__main__":
    app.run(main)
