"""The data a run trained on, its held-out split, and the figures measured on that split.

    dataset = run_dataset("runs/mine/parti")         # rebuilt from run.json (resolved options)
    prompts = heldout_prompts(dataset, limit=64)     # distinct held-out captions
    images, captions = heldout_examples(dataset, image_size=32)
    tokenizer_psnr("runs/mine/tokenizer", images)    # reconstruction of held-out images, dB
    retrieval(scorer, images, captions)              # {'accuracy', 'chance', 'candidates'}

Every training stage records its dataset's resolved options in run.json (`dataset_options`;
runs written as `dataset_config` are read under the new name), so the data can be rebuilt from
the run directory alone; `heldout_split()` of the dataset is what training never read (`test` of
synthetic_shapes: caption meanings never trained on; of a folder: its test/ or validation/
subfolder, or the hash-chosen share).
"""

import inspect
import logging
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from zoo.errors import ZooError
from zoo.eval.prompts import Prompt

log = logging.getLogger("zoo")


def run_dataset(model_dir: str):
    """The dataset a zoo-train run read (a `CaptionDataset`), from its run.json; None when the
    run records no dataset (e.g. one trained from encoded code records only)."""
    from zoo.data.pipeline import get_dataset
    from zoo.registry import DATASETS
    from zoo.train import run_info
    info = run_info.read(model_dir)
    if info is None:
        raise ZooError(f"{model_dir!r} is not a zoo-train model directory (no "
                       f"{run_info.RUN_FILE})")
    config = info.get("task_config") or {}
    name = config.get("dataset")
    if not name:
        return None
    options = dict(config.get("dataset_options") or {})  # run_info.read: current names
    accepted = inspect.signature(DATASETS.get(name).__init__).parameters
    # Arguments of other zoo versions (renamed or gone) do not change which data exists.
    options = {k: v for k, v in options.items() if k in accepted}
    try:
        return get_dataset(name, **options)
    except (TypeError, ZooError) as e:
        raise ZooError(f"cannot rebuild the {name} data of {model_dir} ({e}); held-out "
                       f"prompts and figures need it") from None


def heldout_prompts(dataset, limit: Optional[int] = None) -> List[Prompt]:
    """The distinct captions of the dataset's held-out split, in order (at most `limit`)."""
    split = dataset.heldout_split()
    seen, out = set(), []
    for text in dataset.captions(split):
        if text in seen or not text.strip():
            continue
        seen.add(text)
        out.append(Prompt(text, source=f"{dataset!r}, held-out split {split!r}"))
        if limit is not None and len(out) >= limit:
            break
    if not out:
        raise ZooError(f"{dataset!r}: its held-out split {split!r} has no captions")
    return out


def heldout_examples(dataset, image_size: int,
                     limit: Optional[int] = None) -> Tuple[np.ndarray, List[str]]:
    """(images float32 [N, S, S, 3] in [0, 1], captions) of the held-out split, in order,
    preprocessed as training preprocesses images (centre square, resized)."""
    from zoo.data.pipeline import make_dataset
    split = dataset.heldout_split()
    images, captions = [], []
    for batch in make_dataset(dataset, split=split, image_size=int(image_size), batch_size=64,
                              repeat=False, shuffle=False, drop_remainder=False):
        images.append(batch["image"].numpy())
        captions += [c.decode("utf-8") for c in batch["caption"].numpy()]
        if limit is not None and len(captions) >= limit:
            break
    if not captions:
        raise ZooError(f"{dataset!r}: no usable images in its held-out split {split!r}")
    images = np.concatenate(images)
    if limit is not None:
        images, captions = images[:limit], captions[:limit]
    return images, captions


def tokenizer_psnr(tokenizer_dir: str, images) -> Dict[str, float]:
    """{'psnr', 'mse', 'codebook_usage', 'perplexity'} of the trained tokenizer of a
    `vit_vqgan` run reconstructing `images` (e.g. held-out ones)."""
    from zoo.train.tokenizer_task import evaluate_reconstruction, load_tokenizer
    tokenizer = load_tokenizer(tokenizer_dir)
    images = np.asarray(images, np.float32)
    if images.shape[1] != tokenizer.image_size:
        import tensorflow as tf
        images = tf.image.resize(images, [tokenizer.image_size] * 2, antialias=True).numpy()
    return evaluate_reconstruction(tokenizer, images)


def retrieval(scorer, images, captions: Sequence[str], candidates: int = 32,
              seed: int = 0) -> Dict[str, Any]:
    """The reranker's caption retrieval on real held-out pairs: the share of images whose own
    caption scores highest among `candidates` distinct captions (fewer when the split has
    fewer distinct captions), with the chance level 1 / candidates."""
    from zoo.text_encoders.contrastive import retrieval_accuracy
    distinct = len(set(captions))
    if distinct < 2:
        raise ZooError("caption retrieval needs at least 2 distinct held-out captions")
    k = min(int(candidates), distinct)
    accuracy = retrieval_accuracy(scorer, images, captions, candidates=k, seed=seed)
    return {"accuracy": float(accuracy), "chance": 1.0 / k, "candidates": k,
            "images": len(captions)}


def describe_split(dataset) -> str:
    """'1706 train / 91 test (held out)' for a dataset with known split sizes."""
    held = dataset.heldout_split()
    parts = []
    for split in dataset.splits():
        n = dataset.num_examples(split)
        parts.append(f"{n} {split}" + (" (held out)" if split == held else ""))
    return " / ".join(parts)


def folder_of(dataset) -> Optional[str]:
    root = getattr(dataset, "root", None)
    return os.fspath(root) if root else None
