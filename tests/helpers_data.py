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


# Real photographs that scikit-image ships in its wheel (skimage/data, public domain or CC0 /
# CC-BY per its README), with a caption each. Read as files: skimage itself is not imported.
PHOTOS = {
    "astronaut.png": "an astronaut in a white space suit in front of a flag",
    "camera.png": "a black and white photo of a man with a camera on a tripod",
    "chelsea.png": "a ginger cat looking to the side",
    "coffee.png": "a cup of coffee on a saucer with a spoon",
    "coins.png": "old coins lying on a dark background",
    "rocket.jpg": "a rocket on its launch pad under a blue sky",
    "motorcycle_left.png": "a red motorcycle in a workshop",
    "hubble_deep_field.jpg": "galaxies in the deep night sky",
    "retina.jpg": "the orange retina of an eye with blood vessels",
    "moon.png": "a grey close up of the surface of the moon",
    "horse.png": "the black silhouette of a horse",
    "brick.png": "a grey brick wall",
    "grass.png": "green grass seen from above",
    "gravel.png": "grey gravel stones",
    "page.png": "a page of printed text",
    "text.png": "handwritten text on a grey background",
    "logo.png": "the scikit-image logo, a snake over a grid",
    "ihc.png": "a stained tissue sample under a microscope",
    "cell.png": "a cell under a microscope",
    "color.png": "a chart of colour patches",
}


def skimage_data_dir():
    import importlib.util
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(list(spec.submodule_search_locations)[0], "data")
    return path if os.path.isdir(path) else None


def photo_folder(root, size=48, variants=2):
    """An image-caption folder of real photos: each skimage photo (in its own mode: grey,
    RGB, RGBA, palette) at `size` px on its short side, plus flipped copies (`variants` per
    photo, each with its own caption). Returns the folder, or None without scikit-image."""
    from PIL import Image, ImageOps
    source = skimage_data_dir()
    if source is None:
        return None
    os.makedirs(root, exist_ok=True)
    rows = []
    for name, caption in PHOTOS.items():
        with Image.open(os.path.join(source, name)) as im:
            im.load()
            scale = size / min(im.size)
            small = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))))
        for v in range(variants):
            image = small if v == 0 else ImageOps.mirror(small.convert("RGB"))
            stem = os.path.splitext(name)[0]
            file_name = f"{stem}_{v}.png" if v else f"photos/{stem}.png"
            os.makedirs(os.path.dirname(os.path.join(root, file_name)), exist_ok=True)
            image.save(os.path.join(root, file_name))
            text = caption if v == 0 else f"{caption}, mirrored"
            rows.append({"file_name": file_name, "text": text})
    with open(os.path.join(root, "metadata.jsonl"), "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    return root
