"""Contrastive pretraining on synthetic_shapes: training time and held-out caption retrieval.

Trains the `contrastive` task with a run gin file through the one training loop (`zoo-train`'s
code path), then, for held-out images (the `validation` split, never trained on), asks the
trained model to pick the image's caption among `--candidates` captions: the true one and
others from the held-out set that the shapes checker says do NOT describe the image (so a
paraphrase is never counted as a wrong answer). Prints the figures; append them to
bench/RESULTS.md.

    python bench/contrastive_retrieval.py                       # runs/contrastive_shapes.gin
    python bench/contrastive_retrieval.py --gin_file=runs/contrastive_shapes_small.gin \
        --gin_file=data/synthetic_shapes_easy.gin
"""

import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

flags.DEFINE_multi_string("gin_file", ["runs/contrastive_shapes.gin"], "Run gin files.")
flags.DEFINE_multi_string("gin_bindings", [], "Extra gin bindings.")
flags.DEFINE_string("model_dir", None, "Run directory (default: a fresh temporary one).")
flags.DEFINE_integer("eval_images", 500, "Held-out images to evaluate.")
flags.DEFINE_integer("candidates", 32, "Captions to choose from per image.")
flags.DEFINE_integer("eval_step", None, "Evaluate this checkpoint step (default: the last).")
flags.DEFINE_integer("spm_vocab", 58, "SentencePiece vocabulary for the captions.")
FLAGS = flags.FLAGS


def _cpu_seconds():
    import resource
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(argv):
    del argv
    import numpy as np

    from zoo import config, plugins
    plugins.ensure_loaded()
    from zoo.data import pipeline, shapes
    from zoo.registry import DATASETS
    from zoo.text_encoders.contrastive import retrieval_accuracy
    from zoo.tokenizers.spm_training import train_sentencepiece
    from zoo.train.loop import load_task, train

    work = FLAGS.model_dir or tempfile.mkdtemp(prefix="zoo_bench_contrastive_")
    spm_path = os.path.join(work, "spm.model")
    if not os.path.exists(spm_path):
        os.makedirs(work, exist_ok=True)
        config.parse(FLAGS.gin_file, FLAGS.gin_bindings + ["SPM_MODEL = 'unused'"],
                     finalize=False)
        dataset = config.query("contrastive.dataset", "synthetic_shapes")
        train_sentencepiece(pipeline.captions(dataset, max_sentences=20000), spm_path,
                            vocab_size=FLAGS.spm_vocab, shrink_to_fit=True)
    config.parse(FLAGS.gin_file, FLAGS.gin_bindings + [f"SPM_MODEL = '{spm_path}'"])
    run_dir = os.path.join(work, "run")
    t0, cpu0 = time.time(), _cpu_seconds()
    result = train(model_dir=run_dir, progress=False)
    train_seconds, train_cpu = time.time() - t0, _cpu_seconds() - cpu0

    task = load_task(run_dir, FLAGS.eval_step)
    size = task.image_size
    data = DATASETS.create(task.dataset_name, **task.dataset_options)
    examples = [data.example(i, "validation", image_size=size)
                for i in range(FLAGS.eval_images)]
    images = np.stack([e["image"] for e in examples]).astype(np.float32) / 255.0
    captions = [e["caption"] for e in examples]
    t1 = time.time()
    acc = retrieval_accuracy(
        task, images, captions, FLAGS.candidates,
        wrong_for=lambda i, other: not shapes.check(other, examples[i]["image"]))
    chance = 1.0 / FLAGS.candidates
    print(f"contrastive_retrieval: gin {' '.join(FLAGS.gin_file)}; steps {task.restored_step}, "
          f"batch {config.query('train.batch_size')}, image {size}x{size}; "
          f"train {train_seconds:.0f} s wall, {train_cpu:.0f} s CPU (incl. start-up; "
          f"{result.steps_per_sec:.2f} steps/s); load average {os.getloadavg()[0]:.1f}; "
          f"final loss {result.losses.get('contrastive', float('nan')):.3f}; held-out "
          f"retrieval top-1 among {FLAGS.candidates}: {acc:.3f} over {len(captions)} images "
          f"(chance {chance:.3f}); eval {time.time() - t1:.0f} s; run dir {run_dir}")


if __name__ == "__main__":
    app.run(main)
