"""Examples per second of the full input pipeline (read, decode, crop, resize, tokenize, batch).

    python bench/data_pipeline.py                       # folder (JPEG) and shapes at 256x256
    python bench/data_pipeline.py --image_size=64 --batches=50

The folder benchmark writes a temporary image_caption_folder of non-square JPEGs (larger than
the target, so every example is decoded, centre-cropped and resized) and reads it through
`make_dataset`; the shapes benchmark draws synthetic_shapes at the target size. Both tokenize
captions in-graph with a SentencePiece model trained on the fly. Target (issue 3): >= 300
examples/s at 256x256 on the 2-core benchmark machine.
"""

import argparse
import json
import os
import platform
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def machine():
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{os.cpu_count()} cores, {cpu}, load average {load:.1f} at start"


def make_folder(root, n, source_size, seed=0):
    """n JPEGs of synthetic shapes, source_size x (source_size * 7 // 8), with captions."""
    import numpy as np
    from PIL import Image

    from zoo.data import shapes
    rng = np.random.default_rng(seed)
    with open(os.path.join(root, "metadata.jsonl"), "w") as f:
        for i in range(n):
            ex = shapes.generate(seed, i, image_size=source_size)
            image = ex["image"][: source_size * 7 // 8]  # not square: the crop does work
            image = np.clip(image.astype(np.int16) + rng.integers(-8, 9, image.shape), 0, 255)
            name = f"{i:05d}.jpg"
            Image.fromarray(image.astype(np.uint8)).save(os.path.join(root, name), quality=90)
            f.write(json.dumps({"file_name": name, "text": ex["caption"]}) + "\n")


def measure(ds, batch_size, batches, warmup):
    it = iter(ds)
    for _ in range(warmup):
        next(it)
    start = time.perf_counter()
    for _ in range(batches):
        batch = next(it)
    _ = batch["image"].numpy()
    seconds = time.perf_counter() - start
    return batch_size * batches / seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image_size", type=int, default=256)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--folder_images", type=int, default=512)
    parser.add_argument("--source_size", type=int, default=320,
                        help="width of the folder's JPEGs (height is 7/8 of it)")
    args = parser.parse_args()

    import tensorflow as tf  # noqa: F401

    from zoo.data import make_dataset, shapes
    from zoo.tokenizers.text import SentencePieceTokenizer
    from zoo.tokenizers.spm_training import train_sentencepiece

    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        model = train_sentencepiece((shapes.caption(0, i) for i in range(2000)),
                                    os.path.join(tmp, "spm.model"), vocab_size=16000,
                                    shrink_to_fit=True)
        tok = SentencePieceTokenizer(model, max_length=128)
        folder = os.path.join(tmp, "images")
        os.makedirs(folder)
        t = time.perf_counter()
        make_folder(folder, args.folder_images, args.source_size)
        print(f"wrote {args.folder_images} JPEGs of {args.source_size}x"
              f"{args.source_size * 7 // 8} in {time.perf_counter() - t:.1f} s")
        common = dict(image_size=args.image_size, batch_size=args.batch_size, tokenizer=tok,
                      seed=0)
        results = {
            "image_caption_folder (JPEG, decode+crop+resize)": make_dataset(
                "image_caption_folder", path=folder, **common),
            "synthetic_shapes (drawn at size)": make_dataset("synthetic_shapes", **common),
        }
        for name, ds in results.items():
            rate = measure(ds, args.batch_size, args.batches, args.warmup)
            print(f"{name} at {args.image_size}x{args.image_size}, batch {args.batch_size}: "
                  f"{rate:.0f} examples/s")
    print(f"machine after: load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
