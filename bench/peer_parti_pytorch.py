"""zoo against parti-pytorch 0.2.0 in one run: training step and sampling, 16x16 and 32x32.

    python bench/peer_parti_pytorch.py --peer_python=/work/peer_venv/bin/python
    python bench/peer_parti_pytorch.py --grids=16 --parts=sample

parti-pytorch runs through the offline script `../shared/peer/bench_parti_pytorch.py`
(--peer_script; not part of zoo) in its own virtualenv (--peer_python; set up as that
folder's README says: torch==2.13.0 CPU, parti-pytorch==0.2.0). Both sides use parti-pytorch's
benchmark configuration (issue 14): decoder width 512, 6 layers, 8 heads of 64, MLP 2048, 8192
codes, 64 text tokens, the grid given; zoo adds its own 1-layer text encoder (parti-pytorch is
fed random text embeddings).

  train:  forward + backward of one batch (--batch, default 2), best of --steps after a
          warm-up; parti-pytorch's `fwd_bwd_s_min`, zoo's tf.function step with the parti
          task's loss (`zoo.layers.fused`; no optimizer on either side), in a process of
          its own started as zoo-train starts (TensorFlow's oneDNN kernels on:
          `zoo.tools.common.prefer_onednn`; the sampling figures stay in this process, as
          zoo-sample runs).
  sample: one image, one prompt, classifier-free guidance (2 rows per token): parti-pytorch's
          full `generate()` (no KV cache) on 16x16, reported by its script's contention-robust
          total (each step's cost the minimum over its neighbours; the raw total is printed
          too: on a busy machine torch's threads lose far more than that); on 32x32 (many
          minutes) its `curve` phase: the step cost (best of 3) at 9 prefix lengths,
          integrated over the 1024 steps (--peer_full_32 runs the real thing). zoo: `Sampler`
          per --weights mode (bfloat16, the sampler's default; float32; auto; int8), best of
          --repeats after a first call, next to the memory-bandwidth floor of the weights it
          reads (bench/bandwidth.py; measured in the same run).
Prints each figure with the load average and the ratio parti-pytorch / zoo.
"""

import argparse
import json
import os
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# ../shared/peer next to the project (a git worktree one level deeper: ../../shared/peer).
DEFAULT_SCRIPT = next((p for p in (
    os.path.normpath(os.path.join(ROOT, *[".."] * up, "shared", "peer", "bench_parti_pytorch.py"))
    for up in (1, 2)) if os.path.isfile(p)), "../shared/peer/bench_parti_pytorch.py")


def peer(args, phase, grid, extra=()):
    """One phase of the peer script in its own process -> its RESULT dict."""
    cmd = [args.peer_python, args.peer_script, "--phase", phase, "--tokens-side", str(grid),
           "--batch", str(args.batch), "--threads", str(os.cpu_count()), *extra]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        sys.exit(f"parti-pytorch {phase} ({grid}x{grid}) failed (exit {done.returncode}):\n"
                 f"{done.stderr[-2000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def zoo_train_batch(batch, grid):
    """A fixed batch at the peer configuration: random prompts of TEXT_TOKENS tokens and codes."""
    import numpy as np
    import tensorflow as tf

    from bench.sampling import TEXT_TOKENS
    rng = np.random.default_rng(0)
    return {"text_tokens": tf.constant(rng.integers(3, 16000, (batch, TEXT_TOKENS)), tf.int32),
            "text_mask": tf.ones((batch, TEXT_TOKENS), tf.int32),
            "image_codes": tf.constant(rng.integers(0, 8192, (batch, grid, grid)), tf.int32)}


def zoo_train_step(model, xent=None):
    """A tf.function(data) -> one float: forward + backward of `model` with the mean of
    `xent(targets, logits)` (default: the loss the parti task trains on, `zoo.layers.fused`),
    no optimizer."""
    import tensorflow as tf

    from zoo.layers import fused
    xent = xent or fused.sparse_softmax_cross_entropy

    @tf.function
    def step(data):
        with tf.GradientTape() as tape:
            logits = model(data, training=True)
            targets = tf.reshape(data["image_codes"], [tf.shape(logits)[0], -1])
            loss = tf.reduce_mean(xent(targets, logits))
        grads = tape.gradient(loss, model.trainable_variables)
        # Every gradient computed (the unconditional embedding has none without dropped
        # prompts), summed so that one number waits for all of them.
        return tf.add_n([tf.reduce_sum(g) for g in grads if g is not None])
    return step


def zoo_train(grid, batch, steps):
    """Best seconds of forward + backward at the peer configuration."""
    from bench.sampling import build
    model = build("peer", grid)
    data = zoo_train_batch(batch, grid)
    step = zoo_train_step(model)

    float(step(data))
    best = float("inf")
    for _ in range(steps):
        start = time.perf_counter()
        float(step(data))
        best = min(best, time.perf_counter() - start)
    return best


def zoo_train_process(grid, batch, steps):
    """(`zoo_train` in a new process set up as zoo-train sets itself up, whether TensorFlow's
    oneDNN kernels ran there)."""
    cmd = [sys.executable, os.path.abspath(__file__), "--zoo_train_grid", str(grid),
           "--batch", str(batch), "--steps", str(steps)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("ZOO_TRAIN ")]
    if done.returncode != 0 or not lines:
        sys.exit(f"zoo train {grid}x{grid} failed (exit {done.returncode}):\n"
                 f"{done.stderr[-2000:]}")
    result = json.loads(lines[-1][len("ZOO_TRAIN "):])
    return result["seconds"], result["onednn"]


def zoo_train_child(args):
    """The child of `zoo_train_process`: prints ZOO_TRAIN {"seconds": ..., "onednn": ...}."""
    from zoo.tools.common import prefer_onednn
    prefer_onednn()  # as zoo-train, before TensorFlow is imported
    seconds = zoo_train(args.zoo_train_grid, args.batch, args.steps)
    from tensorflow.python.util import _pywrap_util_port
    print("ZOO_TRAIN " + json.dumps({"seconds": seconds,
                                     "onednn": bool(_pywrap_util_port.IsMklEnabled())}))


def zoo_sample(grid, repeats, bandwidth, weights):
    """(best seconds per image, the bandwidth floor of the weights it reads)."""
    from bench.sampling import build, prompts, step_bytes, time_sampler
    from zoo.models.sampling import Sampler
    model = build("peer", grid)
    sampler = Sampler(model, temperature=1.0, weights=weights)
    seconds = time_sampler(sampler, *prompts(model), repeats)
    read, kv = step_bytes(model, weights)
    floor = model.decoder.num_tokens * (read + kv) / (bandwidth * 1e9)
    return seconds, floor


def load():
    return f"load {os.getloadavg()[0]:.1f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peer_python", default="/work/peer_venv/bin/python")
    parser.add_argument("--peer_script", default=DEFAULT_SCRIPT)
    parser.add_argument("--grids", default="16,32")
    parser.add_argument("--parts", default="train,sample")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--peer_full_32", action="store_true")
    parser.add_argument("--weights", default="bfloat16,float32",
                        help="zoo's sampling weights modes (bfloat16: the sampler's default)")
    parser.add_argument("--json", default=None)
    parser.add_argument("--zoo_train_grid", type=int, default=None,
                        help=argparse.SUPPRESS)  # the child process of zoo_train_process
    args = parser.parse_args()
    if args.zoo_train_grid:
        zoo_train_child(args)
        return
    for path in (args.peer_python, args.peer_script):
        if not os.path.isfile(path):
            sys.exit(f"{path} does not exist: set up parti-pytorch as "
                     f"{os.path.dirname(args.peer_script)}/README.md says and pass "
                     f"--peer_python / --peer_script")
    from bench.bandwidth import stream_read_gbps
    parts = args.parts.split(",")
    print(f"{os.cpu_count()} cpus; {load()}; uptime: {os.popen('uptime').read().strip()}",
          flush=True)
    bandwidth = stream_read_gbps() if "sample" in parts else None
    if bandwidth:
        print(f"streaming read: {bandwidth:.1f} GB/s ({load()})", flush=True)
    rows = []
    for grid in (int(g) for g in args.grids.split(",")):
        if "train" in parts:
            ours, onednn = zoo_train_process(grid, args.batch, args.steps)
            print(f"[train {grid}x{grid}] zoo forward + backward, batch {args.batch}: "
                  f"{ours:.2f} s (oneDNN {'on' if onednn else 'off'}; {load()})", flush=True)
            theirs = peer(args, "train", grid, ["--steps", str(args.steps)])["fwd_bwd_s_min"]
            print(f"[train {grid}x{grid}] parti-pytorch: {theirs:.2f} s; ratio "
                  f"{theirs / ours:.2f}x ({load()})", flush=True)
            rows.append(dict(part="train", grid=grid, zoo=ours, peer=theirs))
        if "sample" in parts:
            ours = {}
            for weights in args.weights.split(","):
                ours[weights] = zoo_sample(grid, args.repeats, bandwidth, weights)
                print(f"[sample {grid}x{grid}] zoo, weights={weights}: "
                      f"{ours[weights][0]:.2f} s per image (bandwidth floor "
                      f"{ours[weights][1]:.2f} s, {ours[weights][0] / ours[weights][1]:.2f}x "
                      f"it) ({load()})", flush=True)
            if grid <= 16 or args.peer_full_32:
                result = peer(args, "sample", grid)
                # The script's contention-robust total (each step's cost the minimum over its
                # +-8 neighbours): what a quiet machine gives, as zoo's best-of figure is.
                theirs, how = result["sample_robust_total_s"], (
                    f"generate(), robust total; raw {result['sample_total_s']:.1f} s")
            else:
                result = peer(args, "curve", grid)
                theirs, how = result["est_sample_total_s"], "curve estimate"
            print(f"[sample {grid}x{grid}] parti-pytorch ({how}): {theirs:.1f} s; ratio "
                  + ", ".join(f"{theirs / s:.1f}x (weights={w})" for w, (s, _) in ours.items())
                  + f" ({load()})", flush=True)
            for weights, (seconds, floor) in ours.items():
                rows.append(dict(part=f"sample, weights={weights}", grid=grid, zoo=seconds,
                                 peer=theirs, floor=floor, peer_how=how))
    print("\n| part | grid | zoo s | parti-pytorch s | parti-pytorch / zoo |")
    print("|---|---|---|---|---|")
    for r in rows:
        extra = f" (floor {r['floor']:.2f})" if "floor" in r else ""
        print(f"| {r['part']} | {r['grid']}x{r['grid']} | {r['zoo']:.2f}{extra} | "
              f"{r['peer']:.2f} | {r['peer'] / r['zoo']:.1f}x |")
    print(f"uptime after: {os.popen('uptime').read().strip()}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"bandwidth_gbps": bandwidth, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
