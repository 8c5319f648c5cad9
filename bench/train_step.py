"""Training-step throughput at Parti-350M width and its share of the measured matmul peak.

    python bench/train_step.py                      # float32 and mixed bfloat16
    python bench/train_step.py --precision=float32 --decoder_layers=4

Model: Parti-350M width (1024, MLP 4096, 16 heads, 16k text vocabulary, 8192 image codes,
32x32 grid = 1024 image tokens, 128 text tokens) with fewer layers (default 2 + 2) so a step
fits a shared 2-core CPU; DALL-E attention schedule. A step is forward + backward + Parti's
Adafactor update (one tf.function, no XLA unless --xla).

Model FLOPs per step (counted, not measured): 6 x (weights used per token) x tokens for every
projection, MLP and the logits, plus 12 x d x keys for the attention scores and mixing over
the keys each query actually sees (the sparse kernels' patterns; cross-attention over the 128
text tokens). Achieved = model FLOPs / step time. The peak is the best of large matmuls of the
model's shapes ([tokens, 1024] x [1024, 4096] and back) in the same precision, measured in the
same run just before the steps, so both see the same machine load.
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


def matmul_peak(dtype, tokens, width, mlp, repeats):
    shapes = [((tokens, width), (width, mlp)), ((tokens, mlp), (mlp, width)),
              ((2048, 2048), (2048, 2048))]
    best = 0.0
    for sa, sb in shapes:
        a = tf.cast(tf.random.normal(sa), dtype)
        b = tf.cast(tf.random.normal(sb), dtype)
        f = tf.function(tf.matmul)
        f(a, b).numpy()
        for _ in range(repeats):
            start = time.perf_counter()
            f(a, b).numpy()
            seconds = time.perf_counter() - start
            best = max(best, 2.0 * sa[0] * sa[1] * sb[1] / seconds)
    return best


def model_flops(model, batch, text_length):
    """Forward + backward FLOPs of one step (see the module docstring)."""
    h, w = model.image_grid
    n, d = h * w, model.width
    enc = model.text_encoder
    per_token_dec = 0
    for block in model.decoder.blocks:
        per_token_dec += (4 * d * d) + (2 * d * d) + 2 * d * model.mlp_dim  # self q,k,v,o; cross q,o; mlp
    cross_kv = model.decoder_layers * 2 * d * d * text_length  # cross k, v over the text
    logits = d * model.image_vocab_size
    per_token_enc = enc.num_layers * (4 * d * d + 2 * d * enc.mlp_dim)
    weights = n * (per_token_dec + logits) + cross_kv + text_length * per_token_enc
    attention = 0
    for block in model.decoder.blocks:
        keys = block.self_attention.attention_kernel.mask((h, w)).sum()
        attention += 2 * 2 * d * keys + 2 * 2 * d * n * text_length
    attention += enc.num_layers * 2 * 2 * d * text_length * text_length
    return batch * (6 * weights + 3 * attention)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precision", default="float32,mixed_bfloat16")
    parser.add_argument("--encoder_layers", type=int, default=2)
    parser.add_argument("--decoder_layers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--xla", action="store_true")
    args = parser.parse_args()
    import zoo.plugins
    zoo.plugins.load_builtins()
    from zoo.registry import MODELS
    from zoo.train.optimizers import Adafactor

    text_length = 128
    print(f"load average {os.getloadavg()[0]:.1f}; batch {args.batch}, "
          f"{args.encoder_layers} + {args.decoder_layers} layers at width 1024")
    for precision in args.precision.split(","):
        mixed = precision == "mixed_bfloat16"
        model = MODELS.create("parti_350m", encoder_layers=args.encoder_layers,
                              decoder_layers=args.decoder_layers, dropout=0.1,
                              mixed_precision=mixed)
        model.build()
        optimizer = Adafactor(learning_rate=1e-4)
        optimizer.build(model.trainable_variables)
        rng = np.random.default_rng(0)
        batch = {
            "text_tokens": tf.constant(rng.integers(3, 16000, (args.batch, text_length)),
                                       tf.int32),
            "text_mask": tf.ones((args.batch, text_length), tf.int32),
            "image_codes": tf.constant(rng.integers(0, 8192, (args.batch, 32, 32)), tf.int32),
        }

        def step(batch):
            with tf.GradientTape() as tape:
                logits = model(batch, training=True)
                targets = tf.reshape(batch["image_codes"], [args.batch, -1])
                loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
                    targets, logits))
            grads = tape.gradient(loss, model.trainable_variables)
            grads, _ = tf.clip_by_global_norm(grads, 4.0)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
            return loss

        fn = tf.function(step, jit_compile=args.xla)
        fn(batch).numpy()  # trace + first step
        peak = matmul_peak(tf.bfloat16 if mixed else tf.float32, args.batch * 1024, 1024, 4096,
                           args.repeats)
        times = []
        for _ in range(args.steps):
            start = time.perf_counter()
            fn(batch).numpy()
            times.append(time.perf_counter() - start)
        seconds = min(times)
        flops = model_flops(model, args.batch, text_length)
        achieved = flops / seconds
        print(f"[{precision}] {model.count_params() / 1e6:.0f}M params; step {seconds:.2f} s "
              f"(best of {args.steps}); {args.batch * 1024 / seconds:.0f} image tokens/s; "
              f"model {flops / 1e9:.0f} GFLOP/step -> {achieved / 1e9:.1f} GFLOP/s; "
              f"matmul peak {peak / 1e9:.1f} GFLOP/s; share {achieved / peak:.0%}", flush=True)


if __name__ == "__main__":
    main()
