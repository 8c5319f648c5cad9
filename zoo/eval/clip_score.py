"""Image-text agreement (CLIP-score style): mean cosine similarity of images to their prompts.

    metric = METRICS.create("clip_score")   # with contrastive_scorer.model_dir bound in gin
    metric(images, prompts)   # float: mean over pairs of cos(image_i, prompt_i), in [-1, 1]

The scorer is a registered scorer name (built with its gin bindings) or a scorer object with
`score(images, captions) -> [B]`. Hessel et al. (2021) report 100 * max(cos, 0) as CLIPScore;
`scale=100, clip_negative=True` gives that form.
"""

import numpy as np

from zoo.errors import ZooError
from zoo.registry import METRICS, SCORERS


@METRICS.register("clip_score", needs="a contrastive run (contrastive_scorer.model_dir)")
class ClipScore:
    """Mean cosine similarity of images to their prompts under a contrastive scorer.

    Args:
        scorer: registered scorer name (default `contrastive_scorer`) or a scorer object.
        batch_size: pairs scored at once.
        scale: multiply the mean by this (CLIPScore uses 100).
        clip_negative: score max(cos, 0) per pair, as CLIPScore does.
    """

    def __init__(self, scorer="contrastive_scorer", batch_size=64, scale=1.0,
                 clip_negative=False):
        self.scorer = SCORERS.create(scorer) if isinstance(scorer, str) else scorer
        if not callable(getattr(self.scorer, "score", None)):
            raise ZooError(f"clip_score needs a scorer with score(images, captions), got "
                           f"{type(self.scorer).__name__}")
        self.batch_size = int(batch_size)
        self.scale = float(scale)
        self.clip_negative = bool(clip_negative)

    def scores(self, images, prompts) -> np.ndarray:
        """Per-pair scores [N] (cosine, clipped and scaled as configured)."""
        images = np.asarray(images, np.float32)
        prompts = [p.decode("utf-8") if isinstance(p, bytes) else str(p) for p in prompts]
        if images.ndim != 4 or len(images) != len(prompts):
            raise ZooError(f"clip_score needs images [N, H, W, 3] and N prompts, got images "
                           f"of shape {images.shape} and {len(prompts)} prompts")
        if not len(prompts):
            raise ZooError("clip_score got no images to score")
        out = np.concatenate([
            np.asarray(self.scorer.score(images[i:i + self.batch_size],
                                         prompts[i:i + self.batch_size]), np.float32)
            for i in range(0, len(prompts), self.batch_size)])
        if self.clip_negative:
            out = np.maximum(out, 0.0)
        return out * self.scale

    def __call__(self, images, prompts) -> float:
        return float(np.mean(self.scores(images, prompts)))
