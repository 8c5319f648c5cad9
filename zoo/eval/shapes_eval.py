"""The share of generated images the synthetic-shapes checker accepts, overall and per feature.

    result = shapes_acceptance(["a red circle at the top left", ...], images)
    result["acceptance"]              # share of images showing everything the caption says
    result["by_feature"]["position"]  # share whose objects are where the caption puts them
    result["accepted"]                # one verdict per image (for the gallery)

Per feature (colour, shape, size, position, count; see `zoo.data.shapes.check_features`): the
share of images that agree with their caption on that feature alone, over the images whose
caption mentions it (size and position are not always named). Captions the checker cannot read
(not shapes captions) are counted in `unreadable` and left out of the rates.
"""

from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from zoo.errors import ZooError
from zoo.registry import METRICS


@METRICS.register("shapes_acceptance", tiny=lambda: dict(
    captions=["a red circle"], images=np.zeros((1, 32, 32, 3), np.float32)))
def shapes_acceptance(captions: Sequence[str], images) -> Dict[str, Any]:
    """Share of images the synthetic-shapes checker accepts, overall and per caption feature.

    Takes images [N, H, W, 3] (float [0, 1] or uint8) and their N captions. Returns dict(acceptance, by_feature={feature: rate}, accepted=[bool|None per image],
    features=[per-image dicts], count, unreadable).
    """
    from zoo.data import shapes

    captions = [c.decode("utf-8") if isinstance(c, bytes) else str(c) for c in captions]
    if len(captions) != len(images):
        raise ZooError(f"shapes acceptance needs one caption per image, got {len(captions)} "
                       f"captions for {len(images)} images")
    if not captions:
        raise ZooError("shapes acceptance needs at least one image")
    per_image: List[Optional[Dict[str, Optional[bool]]]] = []
    for caption, image in zip(captions, images):
        try:
            per_image.append(shapes.check_features(caption, np.asarray(image)))
        except ZooError as e:
            if "not a synthetic_shapes caption" not in str(e):
                raise
            per_image.append(None)  # a prompt that is not a shapes caption: no verdict
    readable = [f for f in per_image if f is not None]
    if not readable:
        raise ZooError(f"none of the {len(captions)} prompts is a synthetic_shapes caption (e.g. "
                       f"{captions[0]!r}); the shapes checker only judges captions like 'a red "
                       f"circle at the top left' (use --prompts=shapes)")
    by_feature = {}
    for feature in shapes.FEATURES:
        values = [f[feature] for f in readable if f.get(feature) is not None]
        if values:
            by_feature[feature] = float(np.mean(values))
    return {
        "acceptance": float(np.mean([f["all"] for f in readable])),
        "by_feature": by_feature,
        "accepted": [None if f is None else bool(f["all"]) for f in per_image],
        "features": per_image,
        "count": len(readable),
        "unreadable": len(per_image) - len(readable),
    }


def describe(features: Optional[Dict[str, Optional[bool]]]) -> str:
    """One line for the gallery, e.g. 'checker: colour ok, shape ok, position wrong, count ok'."""
    if features is None:
        return "checker: not a shapes caption"
    parts = [f"{k} {'ok' if v else 'wrong'}" for k, v in features.items()
             if k != "all" and v is not None]
    return "checker: " + ", ".join(parts)
