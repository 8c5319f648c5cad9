"""The trained contrastive model as an image-text scorer (registered scorer `contrastive_scorer`).

    scorer = SCORERS.create("contrastive_scorer", model_dir="runs/contrastive_shapes")
    scorer.score(images, captions)        # float32 [B]: cosine similarity of each pair
    order, scores = scorer.rerank(images, "a red circle at the top")   # best first

Used by `zoo-sample` to rerank the N samples of a prompt (Parti draws 16 and keeps the best)
and by the `clip_score` metric (`zoo/eval/clip_score.py`). Images are float32 [B, H, W, 3] in
[0, 1] of any size (resized to the model's); captions are strings.
"""

import os
from typing import Optional, Sequence, Tuple

import numpy as np

from zoo.errors import ZooError
from zoo.registry import SCORERS


def _as_strings(captions, n: Optional[int] = None):
    if isinstance(captions, (str, bytes)):
        captions = [captions] * (n if n is not None else 1)
    if hasattr(captions, "numpy"):
        captions = captions.numpy()
    out = [c.decode("utf-8") if isinstance(c, bytes) else str(c) for c in np.ravel(captions)]
    return out


@SCORERS.register("contrastive_scorer", needs="a contrastive run (model_dir)")
class ContrastiveScorer:
    """Cosine similarity of images and captions under a trained contrastive dual encoder.

    Args:
        model_dir: a `zoo-train` run of the `contrastive` task.
        step: its checkpoint step (None: the newest valid one).
        batch_size: images embedded per batch.
    """

    def __init__(self, model_dir=None, step=None, batch_size=64):
        from zoo.text_encoders.contrastive import ContrastiveTask  # noqa: PLC0415
        from zoo.train import loop, run_info  # noqa: PLC0415

        if model_dir is None:
            raise ZooError("the contrastive scorer needs a trained model: set "
                           "contrastive_scorer.model_dir = 'runs/contrastive_shapes' (train one "
                           "with "
                           "zoo-train --gin_file=runs/contrastive_shapes.gin)")
        model_dir = os.fspath(model_dir)
        info = run_info.read(model_dir) if os.path.isdir(model_dir) else None
        if info is not None and info.get("task") != "contrastive":
            raise ZooError(f"{model_dir} is a {info.get('task')!r} run, not a 'contrastive' "
                           f"one; the contrastive scorer needs a contrastive run")
        self.task = loop.load_task(model_dir, step)
        if not isinstance(self.task, ContrastiveTask):
            raise ZooError(f"{model_dir} does not hold a contrastive model")
        self.model_dir = model_dir
        self.batch_size = int(batch_size)
        self.image_size = self.task.image_size

    def embed_images(self, images) -> np.ndarray:
        return self.task.embed_images(images, self.batch_size)

    def embed_text(self, captions) -> np.ndarray:
        return self.task.embed_text(_as_strings(captions))

    def score(self, images, captions) -> np.ndarray:
        """Cosine similarity of image i and caption i: float32 [B] in [-1, 1].

        `captions` may be one string for every image.
        """
        images = np.asarray(images, np.float32)
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ZooError(f"scorer images must be [B, H, W, 3] in [0, 1], got shape "
                           f"{images.shape}")
        captions = _as_strings(captions, len(images))
        if len(captions) != len(images):
            raise ZooError(f"scorer got {len(images)} images but {len(captions)} captions")
        if not len(images):
            return np.zeros([0], np.float32)
        unique = sorted(set(captions))
        text = dict(zip(unique, self.embed_text(unique)))
        image_emb = self.embed_images(images)
        return np.einsum("bd,bd->b", image_emb,
                         np.stack([text[c] for c in captions])).astype(np.float32)

    __call__ = score

    def rerank(self, images, caption) -> Tuple[np.ndarray, np.ndarray]:
        """(indices best first, scores [N] in the original order) of N samples for a caption."""
        scores = self.score(images, caption)
        return np.argsort(-scores, kind="stable"), scores

    def similarity(self, images, captions: Sequence[str]) -> np.ndarray:
        """Cosine similarities of every image with every caption: [B, C]."""
        return self.embed_images(np.asarray(images, np.float32)) @ self.embed_text(captions).T
