"""The draft / verify / accept bookkeeping of one Jacobi window call alone: jacobi.decode with
a stub step returning fixed logits [1, L, 8192] (temperature 0.5), 240 tokens, on the
sampler's single-threaded executor; ms per model call, current code against --baseline.

    python bench/jacobi_bookkeeping.py --baseline=5b87fce

Measured (2-core AMD EPYC, load 1.3-2.1, best of 7 interleaved rounds): baseline 5b87fce
0.78 / 1.18 / 1.66 ms per call for L = 4 / 8 / 16; with compact draft distributions and the
two-level categorical 0.34 / 0.34 / 0.56 ms.
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow.python.eager import context  # noqa: E402

from bench.sampling import baseline_decode  # noqa: E402
from zoo.models import jacobi  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="5b87fce")
    parser.add_argument("--windows", default="4,8,16")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    vocab, n = 8192, 240
    rng = np.random.default_rng(0)
    variants = {"current": jacobi.decode, f"baseline {args.baseline}":
                baseline_decode(args.baseline)}
    keys = tf.constant([12345], tf.int64)
    for length in (int(w) for w in args.windows.split(",")):
        logits = tf.constant(rng.normal(size=(1, length, vocab)).astype(np.float32) * 3)
        fns = {}
        for name, decode in variants.items():
            def run(k, decode=decode):
                return decode(lambda inputs, t, c: (logits + 0.0 * tf.cast(c, tf.float32), c),
                              tf.constant(0), k, n, length, vocab, vocab, 32, 0.5)
            fns[name] = tf.function(run, autograph=False)
        best = {name: float("inf") for name in fns}
        with context.function_executor_type("SINGLE_THREADED_EXECUTOR"):
            for f in fns.values():
                f(keys)
            for _ in range(args.rounds):
                for name, f in fns.items():
                    start = time.perf_counter()
                    calls = int(f(keys)[1])
                    best[name] = min(best[name], (time.perf_counter() - start) / calls)
        print(f"L={length}: " + ", ".join(f"{name} {s * 1e3:.3f} ms per call"
                                          for name, s in best.items())
              + f" (load {os.getloadavg()[0]:.1f})", flush=True)


if __name__ == "__main__":
    main()
