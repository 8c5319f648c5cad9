"""Streaming-read memory bandwidth of this machine: the floor under a memory-bound decode step.

    python bench/bandwidth.py                 # 512 MB, best of 10
    python bench/bandwidth.py --mb=1024 --repeats=20

Reads a float32 buffer much larger than the last-level cache once per repeat and reports the
best rate: `tf.reduce_sum` (TensorFlow's own threads, all cores, vectorised: what a decode
step's matmuls can hope for) and numpy's single-threaded sum for reference. A decode step that
reads B bytes of weights cannot take less than B / (this rate) seconds.
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))


def stream_read_gbps(mb=512, repeats=10):
    """Best streaming-read rate in GB/s (1e9 bytes/s) over `repeats` reductions of `mb` MB."""
    import tensorflow as tf
    data = tf.random.uniform([mb * (1 << 20) // 4])
    total = tf.function(tf.reduce_sum)
    total(data).numpy()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        total(data).numpy()
        best = min(best, time.perf_counter() - start)
    return data.shape[0] * 4 / best / 1e9


def numpy_read_gbps(mb=512, repeats=5):
    import numpy as np
    data = np.random.default_rng(0).random(mb * (1 << 20) // 8)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        data.sum()
        best = min(best, time.perf_counter() - start)
    return data.nbytes / best / 1e9


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f}; {os.cpu_count()} cpus")
    print(f"streaming read, tf.reduce_sum over {args.mb} MB float32: "
          f"{stream_read_gbps(args.mb, args.repeats):.1f} GB/s (best of {args.repeats})")
    print(f"streaming read, numpy sum (1 thread) over {args.mb} MB float64: "
          f"{numpy_read_gbps(args.mb):.1f} GB/s")


if __name__ == "__main__":
    main()
