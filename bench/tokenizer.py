"""ViT-VQGAN encode/decode throughput on CPU (images/s per size at 256x256), the share of this
machine's fp32 matmul peak it reaches (peak measured in the same run), and, with --eval_dir,
reconstruction quality of a trained tokenizer on held-out shapes images.

    python -m bench.tokenizer                                  # small, base, large at 256x256
    python -m bench.tokenizer --sizes=vit_vqgan_tiny --image_size=32 --batch=64
    python -m bench.tokenizer --eval_dir=runs/tokenizer_tiny   # PSNR, codebook usage, checker

With --eval_dir it also runs the shapes checker on the reconstructions of held-out images and
their captions: the acceptance a perfect code predictor would get, i.e. the ceiling of every
Parti trained on this tokenizer. Pass the data settings the tokenizer trained on with
--gin_file/--gin_bindings (e.g. --gin_file=runs/demo_data.gin).

FLOPs are counted analytically (2 per multiply-add: patch embedding, qkv/out projections,
attention scores and values, MLPs, heads); the matmul peak is the best of several 2048x2048
fp32 matmuls. Weights are random: speed does not depend on them.
"""

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

flags.DEFINE_list("sizes", ["vit_vqgan_small", "vit_vqgan_base", "vit_vqgan_large"],
                  "Registered tokenizer sizes to time.")
flags.DEFINE_integer("image_size", 256, "Image side.")
flags.DEFINE_integer("batch", 2, "Images per call.")
flags.DEFINE_integer("repeats", 3, "Timed calls per size (after one warm-up call).")
flags.DEFINE_string("eval_dir", None, "A vit_vqgan run directory to evaluate on held-out "
                    "synthetic_shapes images instead of timing.")
flags.DEFINE_string("eval_split", "validation", "Split of synthetic_shapes to evaluate on.")
flags.DEFINE_integer("num_eval", 1024, "Held-out images to evaluate.")
flags.DEFINE_integer("num_check", 256, "Of those, how many the shapes checker judges (real "
                     "image and reconstruction).")
flags.DEFINE_multi_string("gin_file", [], "Gin files with the data settings (e.g. "
                          "runs/demo_data.gin).")
flags.DEFINE_multi_string("gin_bindings", [], "Gin bindings applied after the files.")
FLAGS = flags.FLAGS


def matmul_peak(n=2048, repeats=10):
    """Best fp32 GFLOP/s of an n x n matmul on this machine, now."""
    import tensorflow as tf
    a = tf.random.normal((n, n))
    b = tf.random.normal((n, n))
    mm = tf.function(lambda x, y: tf.matmul(x, y))
    mm(a, b).numpy()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        mm(a, b).numpy()
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best / 1e9


def stack_flops(tokens, blocks, dim, heads, mlp_dim, head_dim):
    inner = heads * (head_dim or dim // heads)
    per_block = 2 * tokens * (dim * 3 * inner + inner * dim + 2 * dim * mlp_dim) \
        + 2 * 2 * tokens * tokens * inner
    return blocks * per_block


def tokenizer_flops(cfg):
    """(encode, decode) FLOPs per image of a ViTVQGAN config."""
    p, s = cfg["patch_size"], cfg["image_size"]
    n = (s // p) ** 2
    d, m = cfg["width"], cfg["mlp_dim"]
    enc = 2 * n * p * p * 3 * d + stack_flops(n, cfg["blocks"], d, cfg["heads"], m,
                                              cfg["head_dim"]) \
        + 2 * n * (d * m + m * cfg["lookup_dim"]) + 2 * n * cfg["lookup_dim"] * \
        cfg["codebook_size"]
    from zoo.tokenizers.vit_vqgan import decoder_sizes
    ds = decoder_sizes(cfg)
    dd, dm = ds["width"], ds["mlp_dim"]
    out = p * p * (6 if cfg["logit_laplace"] else 3)
    dec = 2 * n * cfg["lookup_dim"] * dd + stack_flops(
        n, ds["blocks"], dd, ds["heads"], dm, ds["head_dim"]) + 2 * n * (dd * dm + dm * out)
    return enc, dec


def time_size(name, image_size, batch, repeats):
    import numpy as np
    import tensorflow as tf
    from zoo.registry import IMAGE_TOKENIZERS
    t = time.perf_counter()
    tok = IMAGE_TOKENIZERS.create(name, image_size=image_size)
    build_s = time.perf_counter() - t
    x = tf.constant(np.random.default_rng(0).random((batch, image_size, image_size, 3)),
                    tf.float32)
    encode = tf.function(tok.encode)
    decode = tf.function(tok.decode)
    codes = encode(x)
    decode(codes).numpy()

    def best(fn, arg):
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            np.asarray(fn(arg))
            times.append(time.perf_counter() - t0)
        return min(times)

    te, td = best(encode, x), best(decode, codes)
    fe, fd = tokenizer_flops(tok.get_config())
    return {"size": name, "params_M": sum(int(np.prod(v.shape)) for v in tok.weights) / 1e6,
            "build_s": build_s, "encode_img_s": batch / te, "decode_img_s": batch / td,
            "encode_gflops": fe * batch / te / 1e9, "decode_gflops": fd * batch / td / 1e9}


def evaluate(model_dir, split, num, num_check=256):
    import numpy as np
    from zoo.data.pipeline import make_dataset
    from zoo.eval.shapes_eval import shapes_acceptance
    from zoo.train.tokenizer_task import evaluate_reconstruction, load_tokenizer
    tok = load_tokenizer(model_dir)
    ds = make_dataset(dataset="synthetic_shapes", split=split, image_size=tok.image_size,
                      batch_size=256, repeat=False, shuffle=False, drop_remainder=False)
    batches = list(ds.take(-(-num // 256)))
    images = np.concatenate([np.asarray(b["image"]) for b in batches])[:num]
    captions = [c.decode() for b in batches for c in np.asarray(b["caption"])][:num]
    stats = evaluate_reconstruction(tok, images)
    print(f"tokenizer {model_dir} (step {tok_step(model_dir)}): {len(images)} held-out "
          f"synthetic_shapes/{split} images at {tok.image_size}x{tok.image_size}: PSNR "
          f"{stats['psnr']:.2f} dB, MSE {stats['mse']:.5f}, codebook usage "
          f"{100 * stats['codebook_usage']:.1f}% of {tok.codebook_size}, perplexity "
          f"{stats['perplexity']:.1f}")
    n = min(num_check, len(images))
    recon = np.concatenate([np.asarray(tok.decode(tok.encode(images[i:i + 64])))
                            for i in range(0, n, 64)])
    for name, imgs in (("real images", images[:n]), ("reconstructions", recon)):
        result = shapes_acceptance(captions[:n], imgs)
        stats[f"acceptance_{name.split()[0]}"] = result["acceptance"]
        features = ", ".join(f"{k} {v:.2f}" for k, v in result["by_feature"].items())
        print(f"  shapes checker on {n} {name}: acceptance {result['acceptance']:.3f} "
              f"({features})")
    return stats


def tok_step(model_dir):
    from zoo.train import checkpoint as ckpt_lib
    steps = ckpt_lib.list_steps(model_dir)
    return steps[-1] if steps else None


def main(argv):
    del argv
    import zoo
    zoo.list("image_tokenizer")  # loads the built-in components
    if FLAGS.eval_dir:
        from zoo import config
        config.parse(FLAGS.gin_file, FLAGS.gin_bindings, finalize=False)
        evaluate(FLAGS.eval_dir, FLAGS.eval_split, FLAGS.num_eval, FLAGS.num_check)
        return
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start "
          f"(shared machine); batch {FLAGS.batch}, {FLAGS.image_size}x{FLAGS.image_size}, best "
          f"of {FLAGS.repeats} timed calls; %peak is against the fp32 matmul peak measured "
          f"just before each size (2048^3, best of 10)")
    print(f"{'size':<24}{'params':>9}{'encode img/s':>14}{'decode img/s':>14}"
          f"{'enc GFLOP/s':>13}{'dec GFLOP/s':>13}{'peak GFLOP/s':>14}{'enc %peak':>11}"
          f"{'dec %peak':>11}")
    for name in FLAGS.sizes:
        peak = matmul_peak()
        r = time_size(name, FLAGS.image_size, FLAGS.batch, FLAGS.repeats)
        print(f"{name:<24}{r['params_M']:>8.1f}M{r['encode_img_s']:>14.3f}"
              f"{r['decode_img_s']:>14.3f}{r['encode_gflops']:>13.1f}{r['decode_gflops']:>13.1f}"
              f"{peak:>14.1f}{100 * r['encode_gflops'] / peak:>10.0f}%"
              f"{100 * r['decode_gflops'] / peak:>10.0f}%", flush=True)
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    app.run(main)
