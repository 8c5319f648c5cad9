"""Per-step cost of the training loop's bookkeeping, against a bare loop of the same step.

    python bench/loop_overhead.py                 # hidden widths 16 and 1024, 300 steps each

The loop (zoo.train.loop.train) adds to the two step tf.functions: a host sync per step (the
finite-check of every loss and gradient norm), the step counter, `after_step`, summaries every
100 steps and the progress bar (off here). The bare loop runs the very same two tf.functions
(`zoo.train.steps.make_step_functions`) back to back and syncs once at the end. Both on the
same task: an MLP regression (tests/tiny_task.py) with batch 64. Times are wall seconds after
one warm-up step; the machine is shared, so the load average is printed.
"""

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

import tiny_task  # noqa: E402
from zoo.distribute.base import Distribution  # noqa: E402
from zoo.train import loop  # noqa: E402
from zoo.train import steps as steps_lib  # noqa: E402


def bare(hidden, steps, batch):
    keras.utils.set_random_seed(0)
    task = tiny_task.TinyRegression(hidden=hidden, in_dim=64, dropout=0.0)
    task.build()
    groups = task.update_groups()
    grad_step, apply_step = steps_lib.make_step_functions(task, groups, Distribution(), False)
    it = iter(task.dataset(batch, 0, 0))
    _, _, _, grads = grad_step(next(it))
    apply_step(grads)
    t = time.time()
    for _ in range(steps):
        losses, _, _, grads = grad_step(next(it))
        apply_step(grads)
    float(losses["main"])
    return steps / (time.time() - t)


def full(hidden, steps, batch):
    with tempfile.TemporaryDirectory() as d:
        task = tiny_task.TinyRegression(hidden=hidden, in_dim=64, dropout=0.0)
        r = loop.train(task, d, steps=steps + 1, batch_size=batch, checkpoint_every=10 ** 6,
                       summary_every=100, image_summary_every=0, progress=False)
        return r.steps_per_sec  # measured after the first (tracing) step


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--hidden", type=int, nargs="+", default=[16, 1024])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch", type=int, default=64)
    a = p.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.1f}")
    print("| hidden | bare steps/s | loop steps/s | loop overhead per step |")
    print("|---|---|---|---|")
    for h in a.hidden:
        b = bare(h, a.steps, a.batch)
        f = full(h, a.steps, a.batch)
        print(f"| {h} | {b:.0f} | {f:.0f} | {1e3 * (1 / f - 1 / b):.2f} ms |", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
