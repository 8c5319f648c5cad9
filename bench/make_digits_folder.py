"""Makes an image-caption folder from a real labelled dataset that a pip wheel ships: the 1,797
handwritten digits of scikit-learn (UCI ML hand-written digits, 8x8 pixels, 16 grey levels).

    .venv/bin/pip install --no-deps scikit-learn==1.9.1     # (requirements-test.txt pins it)
    .venv/bin/python -m bench.make_digits_folder --output=/tmp/digits
    zoo-demo --data=/tmp/digits --model_dir=runs/digits

Each digit becomes a 32x32 grey PNG (the 8x8 image enlarged with bilinear smoothing, white ink
on black) named digits/<index>_<label>.png, captioned "a handwritten digit <word>" in
metadata.jsonl. The file is read straight from the installed wheel
(sklearn/datasets/data/digits.csv.gz): scikit-learn is not imported, nothing is downloaded.
"""

import argparse
import gzip
import importlib.util
import json
import os
import sys

import numpy as np

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def digits_csv() -> str:
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("scikit-learn is not installed: pip install --no-deps scikit-learn==1.9.1")
    path = os.path.join(list(spec.submodule_search_locations)[0], "datasets", "data",
                        "digits.csv.gz")
    if not os.path.isfile(path):
        sys.exit(f"{path} is missing from the installed scikit-learn")
    return path


def make_folder(output: str, size: int = 32) -> int:
    from PIL import Image
    with gzip.open(digits_csv(), "rt") as f:
        data = np.loadtxt(f, delimiter=",")
    pixels, labels = data[:, :64].reshape(-1, 8, 8), data[:, 64].astype(int)
    os.makedirs(os.path.join(output, "digits"), exist_ok=True)
    with open(os.path.join(output, "metadata.jsonl"), "w", encoding="utf-8") as meta:
        for i, (image, label) in enumerate(zip(pixels, labels)):
            grey = Image.fromarray(np.round(image * 255.0 / 16.0).astype(np.uint8), "L")
            name = f"digits/{i:04d}_{label}.png"
            grey.resize((size, size), Image.BILINEAR).save(os.path.join(output, name))
            meta.write(json.dumps({"file_name": name,
                                   "text": f"a handwritten digit {WORDS[label]}"}) + "\n")
    return len(labels)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", required=True, help="folder to write")
    parser.add_argument("--size", type=int, default=32, help="side of the PNGs")
    args = parser.parse_args()
    n = make_folder(args.output, args.size)
    print(f"wrote {n} digits to {args.output} (metadata.jsonl + digits/*.png)")


if __name__ == "__main__":
    main()
