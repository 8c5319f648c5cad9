"""Sampling throughput: image tokens per second with and without the KV cache.

    python bench/sampling.py                 # tiny and 350M-width configs, 32x32 = 1024 tokens
    python bench/sampling.py --configs=tiny --uncached_tokens=64

Configurations (fixed, random weights; speed does not depend on training):
  tiny:       parti_tiny sizes (width 256, 2 + 4 layers, 4 heads), 32x32 grid, 8192 codes
  350m_width: Parti-350M width (1024, MLP 4096, 16 heads) with 1 encoder + 2 decoder layers,
              32x32 grid, 8192 codes
Both decode one prompt with classifier-free guidance (scale 1.2, so 2 rows per step) with the
DALL-E attention schedule. The cached loop decodes all 1024 tokens; the uncached loop (a full
decoder pass over the 1024-token sequence per new token, the same compiled while loop) is
timed over its first --uncached_tokens tokens, since each of its steps costs the same. The
speed-up is the ratio of per-token times measured in the same run.
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

CONFIGS = {
    "tiny": dict(width=256, encoder_layers=2, decoder_layers=4, mlp_dim=1024, heads=4),
    "350m_width": dict(width=1024, encoder_layers=1, decoder_layers=2, mlp_dim=4096, heads=16),
}


def build(name, grid):
    import zoo.plugins
    zoo.plugins.load_builtins()
    from zoo.registry import MODELS
    model = MODELS.create("parti_350m", image_grid=(grid, grid), image_vocab_size=8192,
                          decoder_attention=None, text_vocab_size=1000, max_text_length=32,
                          dropout=0.0, **CONFIGS[name])
    model.build()
    return model


def time_sampler(sampler, tokens, mask, repeats):
    sampler(tokens, mask, 1, 0)  # trace / compile
    best = float("inf")
    for i in range(repeats):
        start = time.perf_counter()
        sampler(tokens, mask, 1, i).numpy()
        best = min(best, time.perf_counter() - start)
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="tiny,350m_width")
    parser.add_argument("--grid", type=int, default=32)
    parser.add_argument("--uncached_tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--xla", default="both", choices=["both", "on", "off"])
    args = parser.parse_args()
    from zoo.models.sampling import Sampler

    tokens = tf.constant(np.arange(1, 17)[None] % 900 + 3, tf.int32)
    tokens = tf.pad(tokens, [[0, 0], [0, 16]])
    mask = tf.cast(tokens > 0, tf.int32)
    n = args.grid * args.grid
    xla_modes = {"both": [False, True], "on": [True], "off": [False]}[args.xla]
    print(f"grid {args.grid}x{args.grid} = {n} tokens, 1 prompt, guidance 1.2, "
          f"cpu threads: {os.cpu_count()}")
    for name in args.configs.split(","):
        model = build(name, args.grid)
        print(f"[{name}] {model.count_params() / 1e6:.1f}M params")
        for xla in xla_modes:
            cached = Sampler(model, temperature=1.0, use_cache=True, jit_compile=xla)
            uncached = Sampler(model, temperature=1.0, use_cache=False, jit_compile=xla,
                               num_tokens=args.uncached_tokens)
            tc = time_sampler(cached, tokens, mask, args.repeats)
            tu = time_sampler(uncached, tokens, mask, 1)
            per_c, per_u = tc / n, tu / args.uncached_tokens
            print(f"[{name}] xla={xla}: cached {n / tc:8.1f} tokens/s ({tc:.2f} s for {n}); "
                  f"uncached {1 / per_u:8.2f} tokens/s ({tu:.2f} s for "
                  f"{args.uncached_tokens}); speed-up {per_u / per_c:.1f}x", flush=True)


if __name__ == "__main__":
    main()
