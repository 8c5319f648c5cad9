"""Shapes checker acceptance: overall and per caption feature."""

import numpy as np
import pytest

from zoo.data import shapes
from zoo.errors import ZooError
from zoo.eval import prompts as prompts_lib
from zoo.eval.shapes_eval import describe, shapes_acceptance


def _examples(n, split="test"):
    examples = [shapes.generate(0, i, split) for i in range(n)]
    return [e["caption"] for e in examples], np.stack([e["image"] for e in examples])


def test_true_images_accepted_mismatched_rejected():
    captions, images = _examples(12)
    result = shapes_acceptance(captions, images)
    assert result["acceptance"] == 1.0 and result["count"] == 12
    assert all(v == 1.0 for v in result["by_feature"].values())
    assert result["accepted"] == [True] * 12
    # Black images satisfy nothing; float images in [0, 1] are read like uint8 ones.
    black = shapes_acceptance(captions, np.zeros((12, 64, 64, 3), np.float32))
    assert black["acceptance"] == 0.0 and black["by_feature"]["colour"] == 0.0
    assert shapes_acceptance(captions, images.astype(np.float32) / 255)["acceptance"] == 1.0


def test_per_feature_rates_isolate_what_is_wrong():
    scene = shapes.Scene(groups=(shapes.Group(1, "red", "circle", None, "top left"),),
                         objects=(shapes.Obj("red", "circle", "large", 0, 0),))
    image = shapes.render(scene, 64)
    moved = np.zeros_like(image)
    moved[42:, 42:] = image[:22, :22]  # the same circle in the bottom right cell
    recoloured = image[..., [2, 1, 0]]  # red -> blue
    captions = ["a red circle at the top left"] * 3
    result = shapes_acceptance(captions, np.stack([image, moved, recoloured]))
    assert result["accepted"] == [True, False, False]
    assert result["by_feature"]["position"] == pytest.approx(2 / 3)
    assert result["by_feature"]["colour"] == pytest.approx(2 / 3)
    assert result["by_feature"]["shape"] == 1.0 and result["by_feature"]["count"] == 1.0
    assert "size" not in result["by_feature"]  # the caption names no size
    assert describe(result["features"][1]) == ("checker: colour ok, shape ok, "
                                               "position wrong, count ok")


def test_unreadable_captions_and_errors():
    captions, images = _examples(2)
    result = shapes_acceptance(captions + ["a photo of a dog"], np.concatenate([images,
                                                                               images[:1]]))
    assert result["unreadable"] == 1 and result["accepted"][2] is None
    assert result["acceptance"] == 1.0
    with pytest.raises(ZooError, match="none of the 1 prompts.*--prompts=shapes"):
        shapes_acceptance(["a photo of a dog"], images[:1])
    with pytest.raises(ZooError, match="2 captions for 1 images"):
        shapes_acceptance(captions, images[:1])


def test_shapes_prompt_set_is_the_heldout_split():
    prompts = prompts_lib.load_prompts("shapes", limit=6)
    assert [p.text for p in prompts] == [shapes.caption(0, i, "test") for i in range(6)]
    assert all(p.category in ("1 object", "2 objects") for p in prompts)
    train = {shapes.sample(0, i, "train")[0].key() for i in range(300)}
    assert not train & {shapes.sample(0, i, "test")[0].key() for i in range(6)}
