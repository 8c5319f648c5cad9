"""Sampling speed against the memory-bandwidth floor: cached steps, the uncached baseline,
batched throughput, and (on a trained run) greedy agreement and Jacobi decoding.

    python bench/sampling.py                               # parti-pytorch's configuration, 32x32
    python bench/sampling.py --grid=16 --phases=cached,uncached
    python bench/sampling.py --phases=batched --prompts=1,8,32
    python bench/sampling.py --phases=matmul               # fused op vs oneDNN by rows
    python bench/sampling.py --phases=agreement,jacobi --model_dir=runs/demo/parti
    python bench/sampling.py --phases=window --config=tiny --jacobi=4,8,16   # step vs call

Configurations (random weights: speed does not depend on training):
  peer:       parti-pytorch 0.2.0's benchmark configuration (issue 14): decoder width 512,
              6 layers, 8 heads of 64, MLP 2048, 8192 codes, 64 text tokens; zoo adds its own
              1-layer text encoder (16k vocabulary): 45M parameters
  tiny:       parti_tiny sizes (width 256, 2 + 4 layers, 4 heads), 8192 codes
  350m_width: Parti-350M width (1024, MLP 4096, 16 heads), 1 encoder + 2 decoder layers
All decode one prompt of 64 tokens with classifier-free guidance 1.2 (2 rows per step:
conditional and unconditional batched through one pass), DALL-E's attention schedule.

Phases:
  floor     streaming-read bandwidth (bench/bandwidth.py) and, per weights mode, the bytes one
            decode step reads (packed weights + cross-attention keys/values + the KV-cache
            entries attended): floor = N steps x bytes / bandwidth.
  cached    seconds per image for each --weights mode x --xla, best of --repeats (after a
            first call that traces/compiles), next to its floor.
  uncached  the decoder re-run at every step over the prefix decoded so far (rounded up to
            whole grid rows: the sparse kernels take whole rows), with no cache: timed per
            prefix of r rows at --uncached_rows and integrated over the N steps.
  batched   images/s for 1, 8 and 32 prompts per call (--prompts), per --weights mode.
  matmul    the decoder's weights through the fused compact-weight op (bfloat16, int8) and
            oneDNN (float32, bfloat16) by rows per product: where the fused op stops paying.
  overhead  per-step op dispatch (a decoder too narrow to compute anything): TensorFlow's
            default executor against the single-threaded one the sampler runs on.
  agreement (--model_dir) greedy codes of each weights mode against float32 on the shapes
            captions (fraction of tokens and of images equal).
  jacobi    (--model_dir) model calls and seconds per image, ordinary vs Jacobi decoding
            (--jacobi windows), same prompts and seeds, per --xla mode, with the sampler's
            default weights (bfloat16).
  window    (random weights, --config) the cost of ONE ordinary decode step against ONE Jacobi
            window call (--jacobi windows), per model call under the sampler's own executor
            and weights (bfloat16): two decode lengths (--window_tokens) differenced, so the
            per-call prompt encoding and weight packing cancel. Then the window call split into
            the decoder step on L tokens (a loop of steps alone) and the draft / verify /
            accept bookkeeping (jacobi.decode with a stub step returning fixed logits), and
            the ops of each traced loop body by kind.
The machine is shared: the load average is printed with every figure; compare ratios within
one run.
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

CONFIGS = {
    "peer": dict(width=512, encoder_layers=1, decoder_layers=6, mlp_dim=2048, heads=8,
                 text_vocab_size=16000, max_text_length=64),
    "tiny": dict(width=256, encoder_layers=2, decoder_layers=4, mlp_dim=1024, heads=4,
                 text_vocab_size=1000, max_text_length=64),
    "350m_width": dict(width=1024, encoder_layers=1, decoder_layers=2, mlp_dim=4096, heads=16,
                       text_vocab_size=1000, max_text_length=64),
}
TEXT_TOKENS = 64


def load():
    return f"load {os.getloadavg()[0]:.1f}"


def build(name, grid):
    import zoo.plugins
    zoo.plugins.load_builtins()
    from zoo.registry import MODELS
    model = MODELS.create("parti_350m", image_grid=(grid, grid), image_vocab_size=8192,
                          decoder_attention=None, dropout=0.0, **CONFIGS[name])
    model.build()
    return model


def prompts(model, count=1):
    """`count` prompts of TEXT_TOKENS tokens (all valid)."""
    rng = np.random.default_rng(0)
    tokens = rng.integers(3, model.text_vocab_size, (count, TEXT_TOKENS)).astype(np.int32)
    return tf.constant(tokens), tf.ones_like(tokens)


def time_sampler(sampler, tokens, mask, repeats):
    """Best seconds per call over `repeats` calls after a first (tracing) call."""
    sampler(tokens, mask, 1, 0)
    best = float("inf")
    for i in range(repeats):
        start = time.perf_counter()
        sampler(tokens, mask, 1, i + 1).numpy()
        best = min(best, time.perf_counter() - start)
    return best


def step_bytes(model, mode, rows=2, native=None):
    """Bytes one decode step reads: packed weights, cross-attention keys/values of the text,
    and the KV-cache entries the kernels attend (each position's allowed keys)."""
    from zoo.layers import packed
    decoder = model.decoder
    if native is None:
        native = packed.native_library() is not None
    weights = decoder.inference_weights(mode, native=native)
    size = tf.as_dtype(weights.dtype).size
    h, w = model.image_grid
    n = h * w
    kv = 0
    for block in decoder.blocks:
        keys = block.self_attention.attention_kernel.mask((h, w)).sum() / n  # per position
        kv += 2 * rows * keys * block.width * size  # keys and values, every head
        kv += 2 * rows * TEXT_TOKENS * block.width * size  # cross-attention memory
    return weights.nbytes(), int(kv)


def phase_floor(model, modes, bandwidth):
    from bench.bandwidth import stream_read_gbps
    bandwidth = bandwidth or stream_read_gbps()
    n = model.decoder.num_tokens
    print(f"[floor] streaming read {bandwidth:.1f} GB/s ({load()})", flush=True)
    floors = {}
    for mode in modes:
        weights, kv = step_bytes(model, mode)
        floors[mode] = n * (weights + kv) / (bandwidth * 1e9)
        print(f"[floor] weights={mode}: a step reads {weights / 1e6:.1f} MB of weights + "
              f"{kv / 1e6:.2f} MB of keys/values -> floor {floors[mode]:.2f} s per image "
              f"({n} steps)", flush=True)
    return bandwidth, floors


def phase_cached(model, modes, xla_modes, repeats, floors):
    from zoo.models.sampling import Sampler
    tokens, mask = prompts(model)
    n = model.decoder.num_tokens
    results = []
    for mode in modes:
        for xla in xla_modes:
            sampler = Sampler(model, temperature=1.0, weights=mode, jit_compile=xla)
            seconds = time_sampler(sampler, tokens, mask, repeats)
            floor = floors.get(mode)
            ratio = f"; {seconds / floor:.2f}x its floor ({floor:.2f} s)" if floor else ""
            print(f"[cached] weights={mode} xla={xla}: {seconds:.2f} s per image, "
                  f"{n / seconds:.0f} tokens/s{ratio} ({load()})", flush=True)
            results.append(dict(weights=mode, xla=xla, seconds=seconds, floor=floor))
    return results


def prefix_seconds(model, rows, repeats=2):
    """Seconds of one guided decoder pass (2 rows) over the first `rows` grid rows."""
    tokens, mask = prompts(model)
    w = model.image_grid[1]
    uncond = tf.constant([False, True])
    memory, memory_mask = model.encode_text(tf.repeat(tokens, 2, 0), tf.repeat(mask, 2, 0),
                                            uncond)
    codes = tf.zeros([2, rows * w], tf.int32)
    fn = tf.function(lambda c: model.decoder(c, memory, memory_mask)[:, -1])
    fn(codes).numpy()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn(codes).numpy()
        best = min(best, time.perf_counter() - start)
    return best


def phase_uncached(model, sample_rows):
    """Seconds per image of uncached decoding over the prefix, integrated over the steps:
    step t runs the decoder on rows 1 .. t // w + 1."""
    h, w = model.image_grid
    sample_rows = sorted({r for r in sample_rows if 1 <= r <= h} | {1, h})
    cost = {r: prefix_seconds(model, r) for r in sample_rows}
    total = 0.0
    for r in range(1, h + 1):
        lo = max(x for x in sample_rows if x <= r)
        hi = min(x for x in sample_rows if x >= r)
        c = cost[lo] if hi == lo else cost[lo] + (cost[hi] - cost[lo]) * (r - lo) / (hi - lo)
        total += w * c
    n = h * w
    passes = ", ".join(f"{r} rows {c * 1e3:.0f} ms" for r, c in cost.items())
    print(f"[uncached] prefix passes {passes} -> {total:.1f} s per image, {n / total:.1f} "
          f"tokens/s ({load()})", flush=True)
    return total


def phase_batched(model, counts, repeats, modes):
    from zoo.models.sampling import Sampler
    results = []
    for mode in modes:
        for count in counts:
            tokens, mask = prompts(model, count)
            sampler = Sampler(model, temperature=1.0, weights=mode)
            seconds = time_sampler(sampler, tokens, mask, repeats)
            print(f"[batched] weights={mode}, {count} prompts per call: {seconds:.2f} s, "
                  f"{count / seconds:.2f} images/s ({load()})", flush=True)
            results.append(dict(weights=mode, prompts=count, seconds=seconds,
                                images_per_s=count / seconds))
    return results


def phase_matmul(model, row_counts, steps=20):
    """Seconds per decode step's worth of products by rows and path."""
    from zoo.layers import packed
    decoder = model.decoder
    paths = [("float32", False), ("bfloat16", False), ("bfloat16", True), ("int8", True)]
    for rows in row_counts:
        line = []
        for mode, native in paths:
            weights = decoder.inference_weights(mode, native=native)
            linears = [lin for block in weights.blocks for lin in block] + [weights.logits]
            inputs = [tf.random.normal([rows, lin.kernel.shape[1] if lin.panels
                                        else lin.kernel.shape[0]]) for lin in linears]

            @tf.function
            def run():
                def body(i, acc):
                    for lin, x in zip(linears, inputs):
                        acc += tf.reduce_sum(tf.cast(lin(x + acc), tf.float32)) * 1e-9
                    return i + 1, acc
                return tf.while_loop(lambda i, a: i < steps, body, (0, tf.constant(0.0)))[1]
            run().numpy()
            best = float("inf")
            for _ in range(3):
                start = time.perf_counter()
                run().numpy()
                best = min(best, (time.perf_counter() - start) / steps)
            line.append(f"{mode}{' fused' if native else ''} {best * 1e3:.2f} ms")
        print(f"[matmul] {rows} rows: " + ", ".join(line) + f" ({load()})", flush=True)


def phase_overhead(grid, repeats):
    """Per-step cost of a decode step whose arithmetic is negligible (width 64, 6 layers, 64
    codes): what op dispatch costs, on TensorFlow's default executor and on the single-
    threaded one the sampler uses."""
    import zoo.models.sampling as sampling
    import zoo.plugins
    zoo.plugins.load_builtins()
    from zoo.registry import MODELS
    model = MODELS.create("parti_350m", image_grid=(grid, grid), image_vocab_size=64, width=64,
                          encoder_layers=1, decoder_layers=6, heads=8, mlp_dim=128,
                          text_vocab_size=100, max_text_length=TEXT_TOKENS, dropout=0.0)
    model.build()
    tokens, mask = prompts(model)
    chosen = sampling._executor
    try:
        for name in ("default", "single-threaded"):
            if name == "default":
                sampling._executor = lambda *args, **kwargs: ""
            else:
                sampling._executor = chosen
            seconds = time_sampler(sampling.Sampler(model, temperature=1.0), tokens, mask,
                                   repeats)
            print(f"[overhead] {name} executor: {seconds / model.decoder.num_tokens * 1e3:.2f} "
                  f"ms per step (6 layers of width 64) ({load()})", flush=True)
    finally:
        sampling._executor = chosen


def _timed_calls(sampler, tokens, mask, repeats):
    """(best seconds, model calls) of `sampler` after a tracing call; same seed each time."""
    sampler(tokens, mask, 1, 7)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        sampler(tokens, mask, 1, 7).numpy()
        best = min(best, time.perf_counter() - start)
    return best, sampler.last_model_calls


def _per_call(make, tokens, mask, lengths, repeats):
    """Seconds per model call: samplers decoding two lengths, the difference over the
    difference in calls (the per-sampler-call encoding and weight packing cancel)."""
    (t0, c0), (t1, c1) = (_timed_calls(make(n), tokens, mask, repeats) for n in lengths)
    return (t1 - t0) / max(c1 - c0, 1), c1


def loop_ops(sampler, tokens, mask):
    """Op kinds (Counter, constants left out) of the largest while-loop body in the sampler's
    traced decode function."""
    import collections
    from zoo.models.selection import row_keys_for
    sampler(tokens, mask, 1)
    fn = next(iter(sampler._fns.values()))
    graph = fn.get_concrete_function(tokens, mask, row_keys_for(0, tf.range(1), 1))
    bodies = [f for f in graph.graph.as_graph_def().library.function
              if "body" in f.signature.name]
    body = max(bodies, key=lambda f: len(f.node_def))
    return collections.Counter(n.op for n in body.node_def if n.op != "Const")


def baseline_decode(rev):
    """`zoo.models.jacobi.decode` as it was at git revision `rev` (loaded from `git show`)."""
    import importlib.util
    import subprocess
    import tempfile
    root = os.path.join(os.path.dirname(__file__), "..")
    text = subprocess.run(["git", "-C", root, "show", f"{rev}:zoo/models/jacobi.py"],
                          check=True, capture_output=True, text=True).stdout
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(text)
    spec = importlib.util.spec_from_file_location(f"jacobi_{rev}", f.name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.decode


def phase_window(model, windows, lengths, repeats, baseline=None):
    """Per model call: an ordinary step against a Jacobi window call of L tokens, and the
    call's split into decoder step and bookkeeping (see the module docstring); with
    `baseline` (a git revision) also its jacobi.decode, same run."""
    from zoo.models import jacobi
    from zoo.models.sampling import Sampler
    tokens, mask = prompts(model)
    real = jacobi.decode
    variants = {"current": real}
    if baseline:
        variants[f"baseline {baseline}"] = baseline_decode(baseline)

    def make(w):
        return lambda n: Sampler(model, temperature=1.0, num_tokens=n, jacobi_window=w)

    def using(decode, fn, *args):
        jacobi.decode = decode
        try:
            return fn(*args)
        finally:
            jacobi.decode = real

    step_s, _ = _per_call(make(0), tokens, mask, lengths, repeats)
    ops0 = loop_ops(make(0)(lengths[1]), tokens, mask)
    print(f"[window] ordinary step: {step_s * 1e3:.2f} ms per step; loop body "
          f"{sum(ops0.values())} ops ({load()})", flush=True)
    results = [dict(window=0, call_ms=step_s * 1e3, ops=sum(ops0.values()))]

    def steps_only(step, cache, keys, num_tokens, window, *args, **kwargs):
        """The decoder step on L tokens, once per iteration, nothing else."""
        n, length = int(num_tokens), min(int(window), int(num_tokens))
        inputs = tf.zeros([tf.shape(keys)[0], length], tf.int32)

        def body(i, acc, cache):
            logits, cache = step(inputs, tf.minimum(i, n - length), cache)
            return i + 1, acc + logits[0, 0, 0], cache
        i, acc, _ = tf.while_loop(lambda i, *_: i < n, body, (0, 0.0, cache),
                                  maximum_iterations=n)
        codes = tf.zeros([tf.shape(keys)[0], n], tf.int32) + tf.cast(acc * 0, tf.int32)
        return codes, i

    def stubbed(decode):
        def stub_step(step, cache, keys, num_tokens, window, *args, **kwargs):
            """`decode` with a step that returns one call's real logits, fixed."""
            length = min(int(window), int(num_tokens))
            logits, cache = step(tf.zeros([tf.shape(keys)[0], length], tf.int32), 0, cache)
            return decode(lambda inputs, t, cache: (logits, cache), cache, keys, num_tokens,
                          window, *args, **kwargs)
        return stub_step

    for w in windows:
        dec_s, _ = using(steps_only, _per_call, make(w), tokens, mask, lengths, repeats)
        dec_ops = sum(using(steps_only, loop_ops, make(w)(lengths[1]), tokens, mask).values())
        print(f"[window] L={w}: decoder step on {w} tokens alone {dec_s * 1e3:.2f} ms "
              f"= {dec_s / step_s:.2f} steps ({dec_ops} ops) ({load()})", flush=True)
        for name, decode in variants.items():
            call_s, calls = using(decode, _per_call, make(w), tokens, mask, lengths, repeats)
            ops = using(decode, loop_ops, make(w)(lengths[1]), tokens, mask)
            book_s, _ = using(stubbed(decode), _per_call, make(w), tokens, mask, lengths,
                              repeats)
            book_ops = sum(using(stubbed(decode), loop_ops, make(w)(lengths[1]), tokens,
                                 mask).values())
            top = ", ".join(f"{k} {v}" for k, v in ops.most_common(8))
            print(f"[window] L={w} {name}: {call_s * 1e3:.2f} ms per call = "
                  f"{call_s / step_s:.2f} steps ({calls} calls for {lengths[1]} tokens); "
                  f"bookkeeping alone (stub step) {book_s * 1e3:.2f} ms ({book_ops} ops); loop "
                  f"body {sum(ops.values())} ops: {top} ({load()})", flush=True)
            results.append(dict(window=w, variant=name, call_ms=call_s * 1e3,
                                step_ratio=call_s / step_s, decoder_step_ms=dec_s * 1e3,
                                bookkeeping_ms=book_s * 1e3, ops=sum(ops.values())))
    return results


def shapes_prompts(model_dir, count):
    """The run's held-out shapes captions (what `zoo-eval --prompts=shapes` samples),
    tokenized for it."""
    from zoo.models.sampling import TextToImage
    from zoo.eval.runner import load_prompt_set
    pipe = TextToImage.from_model_dir(model_dir)
    texts = [p.text for p in load_prompt_set("shapes", count, model_dir)]
    ids, mask = pipe.tokenize(texts)
    return pipe, ids, mask


def phase_agreement(model_dir, modes, count):
    from zoo.models.sampling import Sampler
    pipe, ids, mask = shapes_prompts(model_dir, count)
    ref = Sampler(pipe.model, temperature=0, weights="float32")(ids, mask).numpy()
    for mode in modes:
        got = Sampler(pipe.model, temperature=0, weights=mode)(ids, mask).numpy()
        tokens = (got == ref).mean()
        images = (got == ref).all(axis=(1, 2)).mean()
        print(f"[agreement] weights={mode} vs float32, greedy, {count} shapes captions: "
              f"{tokens:.1%} of tokens, {images:.1%} of images identical", flush=True)


def phase_jacobi(model_dir, windows, count, temperature, repeats, xla=False):
    """Per image (one prompt per call): model calls, and the best over `repeats` rounds of the
    mean wall and CPU seconds per image; the samplers take turns within each round, so a
    change in the machine's load hits them alike."""
    from zoo.models.sampling import Sampler
    pipe, ids, mask = shapes_prompts(model_dir, count)
    n = pipe.model.decoder.num_tokens
    samplers = {w: Sampler(pipe.model, temperature=temperature, jacobi_window=w,
                           jit_compile=xla) for w in [0] + windows}
    calls = {w: [] for w in samplers}
    wall = {w: float("inf") for w in samplers}
    cpu = {w: float("inf") for w in samplers}
    for sampler in samplers.values():
        sampler(ids[:1], mask[:1], 1, 0)  # trace
    for r in range(repeats):
        spent = {w: [0.0, 0.0] for w in samplers}
        for i in range(count):
            for w, sampler in samplers.items():
                start, start_cpu = time.perf_counter(), time.process_time()
                sampler(ids[i:i + 1], mask[i:i + 1], 1, seed=r, prompt_ids=[i])
                spent[w][0] += time.perf_counter() - start
                spent[w][1] += time.process_time() - start_cpu
                calls[w].append(sampler.last_model_calls)
        for w in samplers:
            wall[w] = min(wall[w], spent[w][0] / count)
            cpu[w] = min(cpu[w], spent[w][1] / count)
    results = []
    for w in samplers:
        per_image = float(np.mean(calls[w]))
        print(f"[jacobi] window={w}: {per_image:.1f} model calls per image ({n / per_image:.2f} "
              f"tokens per call; {np.mean(calls[0]) / per_image:.2f}x fewer), "
              f"{wall[w] * 1e3:.0f} ms per image ({wall[0] / wall[w]:.2f}x less), CPU "
              f"{cpu[w] * 1e3:.0f} ms ({cpu[0] / cpu[w]:.2f}x less); temperature {temperature}, "
              f"weights={samplers[w].weights}, xla={xla}, {count} captions x {repeats} rounds "
              f"({load()})", flush=True)
        results.append(dict(window=w, xla=xla, calls=per_image, seconds=wall[w],
                            cpu_seconds=cpu[w]))
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="peer", choices=sorted(CONFIGS))
    parser.add_argument("--grid", type=int, default=32)
    parser.add_argument("--phases", default="floor,cached,uncached")
    parser.add_argument("--weights", default="auto,bfloat16,int8")
    parser.add_argument("--xla", default="both", choices=["both", "on", "off"])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--uncached_rows", default="1,4,8,16,24,32")
    parser.add_argument("--prompts", default="1,8,32")
    parser.add_argument("--matmul_rows", default="1,2,4,8,16,32,64")
    parser.add_argument("--bandwidth", type=float, default=None,
                        help="GB/s to use instead of measuring (floor phase)")
    parser.add_argument("--model_dir", default=None, help="a trained parti run (agreement, "
                        "jacobi)")
    parser.add_argument("--captions", type=int, default=32)
    parser.add_argument("--jacobi", default="4,8,16")
    parser.add_argument("--window_tokens", default="48,240", help="window phase: the two "
                        "decode lengths (tokens) whose difference is timed")
    parser.add_argument("--baseline", default=None, help="window phase: also time "
                        "zoo/models/jacobi.py as of this git revision")
    parser.add_argument("--temperature", type=float, default=0.5)
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args()
    phases = args.phases.split(",")
    modes = args.weights.split(",")
    xla_modes = {"both": [False, True], "on": [True], "off": [False]}[args.xla]
    print(f"{args.config} config, {args.grid}x{args.grid} grid; {os.cpu_count()} cpus; "
          f"{load()}", flush=True)
    out = {"config": args.config, "grid": args.grid}
    if {"floor", "cached", "uncached", "batched", "matmul", "window"} & set(phases):
        model = build(args.config, args.grid)
        print(f"[{args.config}] {model.count_params() / 1e6:.1f}M params", flush=True)
        floors = {}
        if "floor" in phases:
            out["bandwidth_gbps"], floors = phase_floor(model, modes, args.bandwidth)
            out["floors"] = floors
        if "cached" in phases:
            out["cached"] = phase_cached(model, modes, xla_modes, args.repeats, floors)
        if "uncached" in phases:
            out["uncached_seconds"] = phase_uncached(
                model, [int(r) for r in args.uncached_rows.split(",")])
        if "batched" in phases:
            out["batched"] = phase_batched(model, [int(c) for c in args.prompts.split(",")],
                                           args.repeats, modes)
        if "matmul" in phases:
            phase_matmul(model, [int(r) for r in args.matmul_rows.split(",")])
        if "window" in phases:
            out["window"] = phase_window(model, [int(w) for w in args.jacobi.split(",")],
                                         [int(n) for n in args.window_tokens.split(",")],
                                         args.repeats, args.baseline)
    if "overhead" in phases:
        phase_overhead(args.grid, args.repeats)
    if "agreement" in phases:
        phase_agreement(args.model_dir, [m for m in modes if m != "float32"], args.captions)
    if "jacobi" in phases:
        out["jacobi"] = []
        for xla in xla_modes:
            out["jacobi"] += phase_jacobi(args.model_dir, [int(w) for w in args.jacobi.split(",")],
                                          args.captions, args.temperature, args.repeats, xla)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
