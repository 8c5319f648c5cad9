"""Test fixtures for the data and text-tokenizer tests, made at test time in temporary folders."""

import json
import os

import numpy as np

VARIED_TEXT = [
    "a red circle at the top left",
    "Two BLUE squares, and a small green triangle on the right!",
    "héllo wörld: café, naïve, façade",
    "日本語のテキストと中文文本",
    "emoji 🙂🚀 and symbols #$%&*()[]{}",
    "tabs\tand\nnewlines   and    spaces",
    "numbers 0123456789 3.14159 -42",
    "the quick brown fox jumps over the lazy dog",
    "Пример текста на русском языке",
    "مرحبا بالعالم",
]


def corpus(n_shapes=400):
    """Varied sentences (several scripts) plus synthetic_shapes captions."""
    from zoo.data import shapes
    return VARIED_TEXT * 5 + [shapes.caption(0, i) for i in range(n_shapes)]


def train_spm(path, model_type="unigram", vocab_size=120):
    from zoo.tokenizers.spm_training import train_sentencepiece
    return train_sentencepiece(corpus(), str(path), vocab_size=vocab_size,
                               model_type=model_type, shrink_to_fit=True)


def save_image(path, array, fmt=None):
    from PIL import Image
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(array).save(path, format=fmt)


def make_folder(root, n=6, seed=0):
    """A small image-caption folder with every kind of broken row.

    Kept (train): n images (png at the top, jpg in a subfolder, various sizes);
    test split: one image in test/ with its own metadata.csv.
    Skipped: a random-bytes .jpg, a truncated .jpg, a .tiff, a missing file, two rows without
    caption, one malformed JSON line.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        array = (rng.random((40 + 10 * i, 60, 3)) * 255).astype(np.uint8)
        name = f"sub/img{i}.jpg" if i % 2 else f"img{i}.png"
        save_image(os.path.join(root, name), array)
        rows.append({"file_name": name, "text": f"caption {i}", "score": i * 0.5,
                     "source": "me"})
    with open(os.path.join(root, "bad.jpg"), "wb") as f:
        f.write(b"this is not an image")
    save_image(os.path.join(root, "trunc.jpg"), array)
    with open(os.path.join(root, "trunc.jpg"), "rb") as f:
        data = f.read()
    with open(os.path.join(root, "trunc.jpg"), "wb") as f:
        f.write(data[: len(data) // 2])
    save_image(os.path.join(root, "x.tiff"), array)
    rows += [{"file_name": "bad.jpg", "text": "bad"}, {"file_name": "trunc.jpg", "text": "t"},
             {"file_name": "x.tiff", "text": "tiff"}, {"file_name": "missing.png", "text": "m"},
             {"file_name": "img0.png"}, {"file_name": "img0.png", "text": ""}]
    with open(os.path.join(root, "metadata.jsonl"), "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
        f.write("{broken json\n")
    save_image(os.path.join(root, "test", "t0.png"), array)
    with open(os.path.join(root, "test", "metadata.csv"), "w") as f:
        f.write("file_name,text,score\nt0.png,a test caption,3\n")
    return root


def make_shapes_folder(root, n=64, image_size=96, seed=0, fmt="jpg"):
    """A folder of synthetic_shapes images (JPEG by default) for benchmarks and pipelines."""
    from zoo.data import shapes
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, "metadata.jsonl"), "w") as f:
        for i in range(n):
            ex = shapes.generate(seed, i, image_size=image_size)
            name = f"{i:05d}.{fmt}"
            save_image(os.path.join(root, name), ex["image"])
            f.write(json.dumps({"file_name": name, "text": ex["caption"]}) + "\n")
    return root
