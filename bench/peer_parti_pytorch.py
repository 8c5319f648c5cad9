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
          warm-up; parti-pytorch's `fwd_bwd_s_min`, zoo's tf.function step (no optimizer on
          either side).
  sample: one image, one prompt, classifier-free guidance (2 rows per token): parti-pytorch's
          full `generate()` (no KV cache) on 16x16; on 32x32 (many minutes) its `curve`
          phase: the step cost timed at 9 prefix lengths and integrated over the 1024 steps
          (--peer_full_32 runs the real thing). zoo: `Sampler` with its defaults, best of
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


def zoo_train(grid, batch, steps):
    """Best seconds of forward + backward at the peer configuration."""
    import numpy as np
    import tensorflow as tf

    from bench.sampling import TEXT_TOKENS, build
    model = build("peer", grid)
    rng = np.random.default_rng(0)
    data = {"text_tokens": tf.constant(rng.integers(3, 16000, (batch, TEXT_TOKENS)), tf.int32),
            "text_mask": tf.ones((batch, TEXT_TOKENS), tf.int32),
            "image_codes": tf.constant(rng.integers(0, 8192, (batch, grid, grid)), tf.int32)}

    @tf.function
    def step(data):
        with tf.GradientTape() as tape:
            logits = model(data, training=True)
            targets = tf.reshape(data["image_codes"], [batch, -1])
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(targets,
                                                                                 logits))
        return tape.gradient(loss, model.trainable_variables)

    tf.nest.map_structure(lambda g: g.numpy(), step(data))
    best = float("inf")
    for _ in range(steps):
        start = time.perf_counter()
        grads = step(data)
        float(tf.reduce_sum(grads[0]))
        best = min(best, time.perf_counter() - start)
    return best


def zoo_sample(grid, repeats, bandwidth):
    """(best seconds per image with the Sampler's defaults, the bandwidth floor)."""
    from bench.sampling import build, prompts, step_bytes, time_sampler
    from zoo.models.sampling import Sampler
    model = build("peer", grid)
    sampler = Sampler(model, temperature=1.0)
    seconds = time_sampler(sampler, *prompts(model), repeats)
    weights, kv = step_bytes(model, sampler.weights)
    floor = model.decoder.num_tokens * (weights + kv) / (bandwidth * 1e9)
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
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
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
            ours = zoo_train(grid, args.batch, args.steps)
            print(f"[train {grid}x{grid}] zoo forward + backward, batch {args.batch}: "
                  f"{ours:.2f} s ({load()})", flush=True)
            theirs = peer(args, "train", grid, ["--steps", str(args.steps)])["fwd_bwd_s_min"]
            print(f"[train {grid}x{grid}] parti-pytorch: {theirs:.2f} s; ratio "
                  f"{theirs / ours:.2f}x ({load()})", flush=True)
            rows.append(dict(part="train", grid=grid, zoo=ours, peer=theirs))
        if "sample" in parts:
            ours, floor = zoo_sample(grid, args.repeats, bandwidth)
            print(f"[sample {grid}x{grid}] zoo: {ours:.2f} s per image (bandwidth floor "
                  f"{floor:.2f} s, {ours / floor:.2f}x it) ({load()})", flush=True)
            if grid <= 16 or args.peer_full_32:
                result = peer(args, "sample", grid)
                theirs, how = result["sample_total_s"], "generate()"
            else:
                result = peer(args, "curve", grid)
                theirs, how = result["est_sample_total_s"], "curve estimate"
            print(f"[sample {grid}x{grid}] parti-pytorch ({how}): {theirs:.1f} s; ratio "
                  f"{theirs / ours:.1f}x ({load()})", flush=True)
            rows.append(dict(part="sample", grid=grid, zoo=ours, peer=theirs, floor=floor,
                             peer_how=how))
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
