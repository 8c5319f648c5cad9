"""Full-size smoke run: Parti-350M at its real size trains a few steps under MirroredStrategy.

    nice -n 10 python bench/parti_350m_smoke.py                 # 3 steps, 2 virtual CPU devices
    python bench/parti_350m_smoke.py --steps=3 --batch_size=2 --grid=32

Parti-350M as registered (12 encoder + 12 decoder layers, width 1024, MLP 4096, 16 heads,
DALL-E's sparse decoder attention; 8192 image codes, a 16k text vocabulary, 128 text tokens,
a 32x32 code grid) is built under MirroredStrategy over `--devices` virtual CPU devices and
trained by the real loop (zoo.train.loop.train: two tf.functions per step, all-reduced
gradients, Parti's Adafactor, checkpoints). The batch is one fixed batch of random
text/codes (the same every step), so a working step must lower the loss. Prints, per step,
the loss, the wall time and the process's peak resident memory (VmHWM) after the step;
step 1 includes tracing.
"""

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))  # distribute_helpers: the task's loss


def peak_rss_gib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024 ** 2
    return float("nan")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--batch_size", type=int, default=2, help="global batch")
    p.add_argument("--devices", type=int, default=2, help="virtual CPU devices (replicas)")
    p.add_argument("--grid", type=int, default=32, help="code grid side (Parti: 32)")
    p.add_argument("--text_length", type=int, default=128)
    p.add_argument("--learning_rate", type=float, default=1e-4,
                   help="Adafactor's (no warm-up; 1e-3 overshot on step 3)")
    args = p.parse_args()

    from zoo.distribute.devices import set_virtual_devices
    set_virtual_devices(args.devices)  # before TensorFlow starts

    import keras
    import tensorflow as tf

    from distribute_helpers import TinyPartiTask
    from zoo import distribute
    from zoo.registry import MODELS, OPTIMIZERS
    from zoo.train.loop import train
    from zoo.train.summaries import read_scalars
    import zoo.models  # noqa: F401
    import zoo.train  # noqa: F401

    times, peaks = [], []

    class Parti350M(TinyPartiTask):
        """TinyPartiTask's cross-entropy and update group on the real Parti-350M."""

        def build(self):
            self.model = MODELS.create("parti_350m", image_grid=[args.grid, args.grid],
                                       max_text_length=args.text_length, dropout=0.0)
            self.model.build()
            self.optimizer = OPTIMIZERS.create("adafactor", learning_rate=args.learning_rate)
            self.optimizer.build(self.model.trainable_variables)
            self.t0 = time.perf_counter()

        def dataset(self, batch_size, seed, start_step=0):
            s = tf.constant([seed, 0], tf.int64)
            text = tf.random.stateless_uniform([batch_size, args.text_length], s, 1,
                                               self.model.text_vocab_size, tf.int32)
            codes = tf.random.stateless_uniform([batch_size, args.grid, args.grid], s + 1, 0,
                                                self.model.image_vocab_size, tf.int32)
            batch = {"text_tokens": text, "text_mask": tf.ones_like(text), "image_codes": codes}
            return tf.data.Dataset.from_tensors(batch).repeat()

        def after_step(self, step):
            now = time.perf_counter()
            times.append(now - self.t0)
            peaks.append(peak_rss_gib())
            self.t0 = now

    dist = distribute.get(strategy="mirrored", num_devices=args.devices)
    model_dir = tempfile.mkdtemp(prefix="parti_350m_smoke_")
    keras.utils.set_random_seed(0)
    task = Parti350M(clip_norm=4.0)
    t_start = time.perf_counter()
    result = train(task=task, model_dir=model_dir, steps=args.steps,
                   batch_size=args.batch_size, seed=0, distribution=dist, progress=False,
                   summary_every=1, image_summary_every=0, checkpoint_every=args.steps)
    total = time.perf_counter() - t_start
    params = sum(int(v.shape.num_elements()) for v in task.model.trainable_variables)
    losses = read_scalars(os.path.join(model_dir, "train"))["loss/main"]
    print(f"Parti-350M: {params:,} parameters, {task.model.encoder_layers} + "
          f"{task.model.decoder_layers} layers, width {task.model.width}; grid "
          f"{args.grid}x{args.grid}, text {args.text_length}; global batch {args.batch_size} "
          f"on {dist.describe()}")
    for i, (loss_step, t, peak) in enumerate(zip(sorted(losses), times, peaks), 1):
        note = " (includes tracing)" if i == 1 else ""
        print(f"step {i}: loss {losses[loss_step]:.4f}  {t:.1f} s{note}  peak RSS {peak:.2f} GiB")
    values = [losses[k] for k in sorted(losses)]
    verdict = "falls" if values[-1] < values[0] else "DOES NOT FALL"
    print(f"loss {values[0]:.4f} -> {values[-1]:.4f} ({verdict}); total {total:.1f} s (build, "
          f"checkpoint and all steps); peak RSS {peak_rss_gib():.2f} GiB")
    print(f"checkpoint {result.checkpoint}")


if __name__ == "__main__":
    main()
