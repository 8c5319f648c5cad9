"""Sparse attention kernels against dense masked attention: time and peak memory.

    python bench/attention.py                       # 32x32 and 64x64 grids
    python bench/attention.py --grids=32 --backward

Inputs are one example's attention at Parti-350M width (16 heads of 64) unless changed:
q, k, v [batch, 16, h*w, 64] float32. "dense masked" is the reference the kernels are tested
against (every query scored against every key, then the conv_shaped mask applied); the
sparse kernels compute only the keys each query may see. "conv_shaped" runs its fused native
op (zoo.attention.native; with --backward or --xla it runs the pure-TF kernel, as it does
under any GradientTape or XLA compilation), "conv_shaped pure TF" and the --tiles rows the
tiled TF kernel (native=False). Every function is a tf.function (graph mode; --xla compiles
every one of them, the reference too); times are the best of --repeats runs, as wall time and
as the process's CPU time (all threads; on a machine shared with other jobs the CPU time is the
steadier measure of the work done); peak memory is TF's CPU allocator peak during one run minus
what was allocated before (inputs excluded). Ratios are measured in the same run.
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import tensorflow as tf  # noqa: E402


def measure(fn, args, repeats):
    """(best wall seconds, best process CPU seconds, peak MB) of `fn(*args)`."""
    fn(*args)  # trace
    best = best_cpu = float("inf")
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        out = fn(*args)
        tf.nest.map_structure(lambda t: t.numpy(), out)
        best = min(best, time.perf_counter() - start)
        best_cpu = min(best_cpu, time.process_time() - start_cpu)
    tf.config.experimental.reset_memory_stats("CPU:0")
    before = tf.config.experimental.get_memory_info("CPU:0")["current"]
    out = fn(*args)
    tf.nest.map_structure(lambda t: t.numpy(), out)
    peak = tf.config.experimental.get_memory_info("CPU:0")["peak"] - before
    del out
    return best, best_cpu, peak / 2**20


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grids", default="32,64")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--heads", type=int, default=16)
    parser.add_argument("--head_dim", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--backward", action="store_true",
                        help="time forward + gradients w.r.t. q, k, v")
    parser.add_argument("--xla", action="store_true",
                        help="XLA-compile every candidate, the dense reference included")
    parser.add_argument("--tiles", default="1x8,2x8,4x8,2x16",
                        help="extra pure-TF conv_shaped query tiles (rows x cols) to compare")
    args = parser.parse_args()
    import zoo.attention  # noqa: F401
    from zoo.attention.base import dense_masked_attention
    from zoo.registry import ATTENTION

    print(f"batch {args.batch}, {args.heads} heads of {args.head_dim}, float32, "
          f"{'forward + backward' if args.backward else 'forward'}"
          f"{', XLA' if args.xla else ''}")
    for g in (int(x) for x in args.grids.split(",")):
        n = g * g
        shape = [args.batch, args.heads, n, args.head_dim]
        q, k, v = (tf.random.normal(shape, seed=i) for i in range(3))
        conv = ATTENTION.create("conv_shaped")
        mask = tf.constant(conv.mask((g, g)))
        candidates = [("dense masked (reference)",
                       lambda q, k, v: dense_masked_attention(q, k, v, mask))]
        kernels = [(name, ATTENTION.create(name))
                   for name in ("dense", "row", "column", "conv_shaped")]
        kernels.append(("conv_shaped pure TF", ATTENTION.create("conv_shaped", native=False)))
        for name, kernel in kernels:
            candidates.append((name, lambda q, k, v, kernel=kernel: kernel(q, k, v, (g, g))))
        for tile in args.tiles.split(","):
            if not tile:
                continue
            rows, cols = (int(x) for x in tile.split("x"))
            if g % rows or g % cols:
                continue
            kernel = ATTENTION.create("conv_shaped", block_rows=rows, block_cols=cols,
                                      native=False)
            candidates.append((f"conv_shaped TF tiles {rows}x{cols}",
                               lambda q, k, v, kernel=kernel: kernel(q, k, v, (g, g))))
        results = []
        for name, f in candidates:
            if args.backward:
                def step(q, k, v, f=f):
                    with tf.GradientTape() as tape:
                        tape.watch([q, k, v])
                        loss = tf.reduce_sum(f(q, k, v))
                    return tape.gradient(loss, [q, k, v])
                fn = tf.function(step, jit_compile=args.xla)
            else:
                fn = tf.function(f, jit_compile=args.xla)
            seconds, cpu, peak = measure(fn, (q, k, v), args.repeats)
            results.append((name, seconds, cpu, peak))
        ref_t, ref_c, ref_m = results[0][1:]
        print(f"grid {g}x{g} ({n} tokens; load average {os.getloadavg()[0]:.1f}):")
        print(f"  {'kernel':28s} {'wall ms':>9s} {'cpu ms':>9s} {'peak MB':>8s}  "
              f"{'faster (wall, cpu)':>18s}  {'less memory':>11s}")
        for name, seconds, cpu, peak in results:
            print(f"  {name:28s} {seconds * 1e3:9.1f} {cpu * 1e3:9.1f} {peak:8.1f}  "
                  f"{ref_t / seconds:8.1f}x {ref_c / cpu:7.1f}x  "
                  f"{ref_m / max(peak, 1e-9):10.1f}x", flush=True)


if __name__ == "__main__":
    main()
