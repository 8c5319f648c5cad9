"""Shapes-checker acceptance of a trained Parti run on held-out captions (the done-when figure).

    python bench/parti_shapes.py --model_dir=runs/demo/parti --prompts=64 --guidance=1,1.2,3

Held-out captions: the synthetic_shapes `test` split (caption meanings that never occur in
training; the default) or the `validation` split (new examples, from held-out seeds, of the
meanings training draws from). For each guidance scale it samples one image per caption (seeded) and reports the
share the checker accepts, overall and per feature. The ceiling is the same measure on the
tokenizer's reconstructions of real test-split images (what a perfect code predictor gets).
Pass the dataset settings the run trained on, e.g. --gin_file=data/synthetic_shapes_easy.gin.
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import numpy as np  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_dir", required=True)
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--split", default="test", choices=["test", "validation"],
                        help="test: caption meanings never seen in training; validation: "
                        "new examples of seen meanings")
    parser.add_argument("--guidance", default="1.0,1.2,2.0,3.0")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top_k", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--step", type=int, default=None)
    parser.add_argument("--gin_file", action="append", default=[])
    parser.add_argument("--gin_bindings", action="append", default=[])
    parser.add_argument("--samples_dir", default=None, help="also write PNGs here")
    args = parser.parse_args()

    from zoo import config, plugins
    plugins.ensure_loaded()
    config.parse(args.gin_file, args.gin_bindings, finalize=False)
    from zoo.data import shapes
    from zoo.eval.shapes_eval import shapes_acceptance
    from zoo.models.sampling import TextToImage
    from zoo.registry import DATASETS

    dataset = DATASETS.create("synthetic_shapes")
    data_config, data_seed = dataset.config, dataset.seed
    pipe = TextToImage.from_model_dir(args.model_dir, step=args.step)
    print(f"run {args.model_dir} at step {pipe.task.restored_step}; {args.prompts} held-out "
          f"captions (synthetic_shapes {args.split} split, seed {data_seed})")
    size = pipe.image_tokenizer.image_size
    examples = [shapes.generate(data_seed, i, args.split, data_config, size)
                for i in range(args.prompts)]
    prompts = [e["caption"] for e in examples]
    real = np.stack([e["image"] for e in examples]).astype(np.float32) / 255.0
    recon = np.asarray(pipe.image_tokenizer.decode(pipe.image_tokenizer.encode(real)))
    for name, images in (("real images", real), ("tokenizer reconstructions", recon)):
        result = shapes_acceptance(prompts, images)
        print(f"  ceiling, {name}: acceptance {result['acceptance']:.3f}")
    for scale in (float(s) for s in args.guidance.split(",")):
        pipe.sampler.guidance_scale = scale
        pipe.sampler.temperature = args.temperature
        pipe.sampler.top_k = args.top_k
        pipe.sampler._fns.clear()  # noqa: SLF001 -- settings changed: retrace
        start = time.time()
        images, _ = pipe(prompts, num_samples=1, seed=args.seed)
        seconds = time.time() - start
        result = shapes_acceptance(prompts, images[:, 0])
        features = ", ".join(f"{k} {v:.2f}" for k, v in result["by_feature"].items())
        print(f"  guidance {scale:g}: acceptance {result['acceptance']:.3f} ({features}); "
              f"{seconds:.1f} s for {len(prompts)} images", flush=True)
        if args.samples_dir:
            from PIL import Image
            os.makedirs(args.samples_dir, exist_ok=True)
            for i, img in enumerate(images[:, 0]):
                Image.fromarray((img * 255).round().astype(np.uint8)).save(
                    os.path.join(args.samples_dir, f"g{scale:g}_{i:03d}.png"))


if __name__ == "__main__":
    main()
