"""The training loss's cost: TensorFlow's softmax cross-entropy against zoo's fused one.

    python bench/train_loss.py                       # 32x32, 16 alternations
    python bench/train_loss.py --grid=16 --repeats=12

1. The loss alone: forward + backward of the mean cross-entropy on [batch, grid^2, 8192]
   logits (`tf.nn.sparse_softmax_cross_entropy_with_logits` against
   `zoo.layers.fused.sparse_softmax_cross_entropy`), best and median of --repeats.
2. The training step at parti-pytorch 0.2.0's configuration (bench/peer_parti_pytorch.py's
   `zoo_train_step`: decoder width 512, 6 layers, 8 heads, MLP 2048, 8192 codes, batch --batch,
   forward + backward), one tf.function per loss, alternated in one process so that both see
   the same machine load (this VM's speed drifts between runs). TensorFlow's oneDNN kernels
   on, as zoo-train sets them up.
Prints best and median seconds of each, with the load average.
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))


def alternate(functions, repeats):
    """{name: [seconds, ...]} calling each function once per round, round after round."""
    times = {name: [] for name in functions}
    for _ in range(repeats):
        for name, fn in functions.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def report(label, times):
    for name, seconds in times.items():
        ordered = sorted(seconds)
        print(f"[{label}] {name}: best {ordered[0] * 1e3:.1f} ms, median "
              f"{ordered[len(ordered) // 2] * 1e3:.1f} ms ({len(ordered)} runs, "
              f"load {os.getloadavg()[0]:.1f})", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--grid", type=int, default=32)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=16)
    args = parser.parse_args()

    from zoo.tools.common import prefer_onednn
    prefer_onednn()  # as zoo-train, before TensorFlow is imported
    import numpy as np
    import tensorflow as tf

    from bench.peer_parti_pytorch import zoo_train_batch, zoo_train_step
    from bench.sampling import build
    from zoo.layers import fused

    losses = {"tensorflow": tf.nn.sparse_softmax_cross_entropy_with_logits,
              "fused": fused.sparse_softmax_cross_entropy}
    data = zoo_train_batch(args.batch, args.grid)
    positions = args.grid * args.grid
    targets = tf.reshape(data["image_codes"], [args.batch, positions])
    rng = np.random.default_rng(0)
    logits = tf.constant(rng.normal(size=(args.batch, positions, 8192)).astype(np.float32) * 3)

    def loss_alone(xent):
        @tf.function
        def run():
            with tf.GradientTape() as tape:
                tape.watch(logits)
                loss = tf.reduce_mean(xent(targets, logits))
            return loss, tape.gradient(loss, logits)
        return lambda: run()[1].numpy()
    runs = {name: loss_alone(xent) for name, xent in losses.items()}
    for run in runs.values():
        run()
    report(f"loss alone, [{args.batch}, {positions}, 8192]", alternate(runs, args.repeats))

    model = build("peer", args.grid)

    def step(xent):
        run = zoo_train_step(model, xent)
        return lambda: float(run(data))
    runs = {name: step(xent) for name, xent in losses.items()}
    for run in runs.values():
        run()
    report(f"train step {args.grid}x{args.grid}, batch {args.batch}",
           alternate(runs, args.repeats))


if __name__ == "__main__":
    main()
