"""The evaluation run with a stand-in generator: metrics, resume, report and gallery files."""

import json

import numpy as np
import pytest

from zoo.data import shapes
from zoo.errors import ZooError
from zoo.eval import evaluate as evaluate_lib
from zoo.eval.prompts import Prompt, load_prompts
from zoo.registry import FEATURE_NETWORKS


class TruthfulGenerator:
    """Draws what a shapes caption of the test split says (sample 1 of each prompt is black)."""

    def __init__(self, prompts):
        self.scenes = {p.text: shapes.sample(0, i, "test")[0] for i, p in enumerate(prompts)}
        self.calls = []

    def __call__(self, texts, ids, num_samples, seed):
        self.calls.append(list(ids))
        out = np.zeros((len(texts), num_samples, 32, 32, 3), np.float32)
        for b, text in enumerate(texts):
            image = shapes.render(self.scenes[text], 32).astype(np.float32) / 255
            for s in range(num_samples):
                if s != 1:
                    out[b, s] = image
        scores = np.tile(np.arange(num_samples, dtype=np.float32), (len(texts), 1))
        return out, scores


@pytest.fixture
def mean_colour_features():
    class MeanColour:
        def __call__(self, images):
            x = np.asarray(images, np.float64)
            return np.concatenate([x.mean(axis=(1, 2)), x.std(axis=(1, 2))], axis=1)

    FEATURE_NETWORKS.register("test_mean_colour")(MeanColour)
    yield "test_mean_colour"
    FEATURE_NETWORKS.unregister("test_mean_colour")


def test_evaluate_shapes_with_fid_and_resume(tmp_path, mean_colour_features):
    prompts = load_prompts("shapes", limit=5)
    gen = TruthfulGenerator(prompts)
    ref = tmp_path / "ref"
    ref.mkdir()
    from PIL import Image
    for i in range(6):
        Image.fromarray(shapes.generate(0, i, "validation", image_size=32)["image"]).save(
            ref / f"{i}.png")
    out = tmp_path / "eval"
    results = evaluate_lib.evaluate(gen, prompts, out, num_samples=3, seed=1, batch_size=2,
                                    reference=str(ref), feature_network=mean_colour_features,
                                    info={"model_dir": "stand-in"}, progress=False)
    assert gen.calls == [[0, 1], [2, 3], [4]]
    metrics = results["metrics"]
    # Samples 0 and 2 are right, sample 1 black: exactly 2/3 accepted, per feature too.
    assert metrics["shapes_acceptance"] == pytest.approx(2 / 3)
    assert metrics["shapes_acceptance_by_feature"]["colour"] == pytest.approx(2 / 3)
    assert metrics["fid"] > 0 and metrics["fid_images"] == 15
    assert results["samples"][0]["accepted"] == [True, False, True]
    assert results["shapes"]["acceptance_top1"] == 1.0  # the first sample of each prompt
    assert results["samples"][0]["scores"] == [0.0, 1.0, 2.0]
    assert results["model_dir"] == "stand-in"
    assert (out / "index.html").is_file() and (out / "summary.txt").is_file()
    assert (out / evaluate_lib.FID_STATS_FILE).is_file()
    assert len(list((out / "images").glob("*.png"))) == 15
    assert "shapes_acceptance" in (out / "summary.txt").read_text()
    page = (out / "index.html").read_text()
    assert "images/p0004_s2.png" in page and "checker: colour wrong" in page

    # Interrupted after two prompts: the rerun generates only the rest, same results.
    lines = (out / evaluate_lib.SAMPLES_FILE).read_text().splitlines()
    (out / evaluate_lib.SAMPLES_FILE).write_text("\n".join(lines[:2]) + "\n{\"index\": 2, \"pro")
    gen.calls.clear()
    again = evaluate_lib.evaluate(gen, prompts, out, num_samples=3, seed=1, batch_size=2,
                                  reference=str(ref), feature_network=mean_colour_features,
                                  info={"model_dir": "stand-in"}, progress=False)
    assert gen.calls == [[2, 3], [4]]
    assert again["metrics"] == results["metrics"]
    # Other settings: everything is generated again.
    gen.calls.clear()
    evaluate_lib.evaluate(gen, prompts, out, num_samples=3, seed=2, batch_size=8,
                          progress=False)
    assert gen.calls == [[0, 1, 2, 3, 4]]
    data = json.loads((out / "results.json").read_text())
    assert "fid" not in data["metrics"] and any("--reference_dir" in n for n in data["notes"])


def test_evaluate_partiprompts_style_groups_and_scorer(tmp_path):
    prompts = [Prompt("a cat", "Animals", "Basic"), Prompt("a car", "Vehicles", "Basic"),
               Prompt("two cats", "Animals", "Quantity")]

    def generate(texts, ids, num_samples, seed):
        return np.full((len(texts), num_samples, 8, 8, 3), 0.5, np.float32)

    def scorer(images, texts):
        return np.array([len(t) / 10 for t in texts])

    results = evaluate_lib.evaluate(generate, prompts, tmp_path, num_samples=2,
                                    scorer=scorer, progress=False)
    assert "shapes_acceptance" not in results["metrics"]
    assert results["metrics"]["contrastive_score"] == pytest.approx((0.5 + 0.5 + 0.8) / 3)
    assert results["groups"]["category"]["Animals"]["prompts"] == 2
    assert results["groups"]["challenge"]["Basic"]["images"] == 4
    summary = (tmp_path / "summary.txt").read_text()
    assert "by category" in summary and "Vehicles" in summary


def test_bad_inputs(tmp_path):
    def generate(texts, ids, num_samples, seed):
        return np.zeros((len(texts), num_samples, 8, 8, 3))

    prompts = [Prompt("a cat")]
    with pytest.raises(ZooError, match="prompt set is empty"):
        evaluate_lib.evaluate(generate, [], tmp_path)
    with pytest.raises(ZooError, match="num_samples must be a positive integer, got 0"):
        evaluate_lib.evaluate(generate, prompts, tmp_path, num_samples=0)
    with pytest.raises(ZooError, match=r"reference image folder .*nope.* does not exist"):
        evaluate_lib.evaluate(generate, prompts, tmp_path, reference=str(tmp_path / "nope"))
    with pytest.raises(ZooError, match=r"--reference_dir .*x\.npz.* does not exist"):
        evaluate_lib.evaluate(generate, prompts, tmp_path, reference=str(tmp_path / "x.npz"))
    with pytest.raises(ZooError, match="--shapes_check needs synthetic_shapes captions"):
        evaluate_lib.evaluate(generate, prompts, tmp_path, shapes_check=True)
    with pytest.raises(ZooError, match=r"expected \[1, 2, H, W, 3\]"):
        evaluate_lib.evaluate(lambda *a: np.zeros((1, 8, 8, 3)), prompts, tmp_path,
                              num_samples=2, progress=False)


def test_caption_following_counts_wins_over_every_rival():
    from zoo.eval.following import caption_following
    # 3 prompts x 2 samples: sim[j, s, i] = score of sample s of prompt j with caption i.
    sim = np.zeros((3, 2, 3))
    sim[0, :, 0] = [0.9, 0.1]   # caption 0: own sample 0 wins, own sample 1 loses
    sim[1, :, 0] = [0.5, 0.5]
    sim[2, :, 0] = [0.2, 0.2]
    sim[1, :, 1] = [0.8, 0.8]   # caption 1: both own samples win
    sim[2, :, 2] = [0.1, 0.3]   # caption 2: sample 0 loses to prompt 0's 0.4, sample 1 wins
    sim[0, :, 2] = [0.4, 0.2]
    result = caption_following(sim, ["a", "b", "c"])
    assert result["rate"] == pytest.approx(4 / 6) and result["chance"] == pytest.approx(1 / 3)
    assert result["per_prompt"] == [0.5, 1.0, 0.5] and result["samples"] == 6
    first = caption_following(sim, ["a", "b", "c"], sample_index=0)
    assert first["rate"] == pytest.approx(2 / 3)
    # Prompts with the same text are never rivals: each "a" is compared with "b" only.
    same = caption_following(sim, ["a", "b", "a"])
    assert same["chance"] == pytest.approx((1 / 2 + 1 / 3 + 1 / 2) / 3)
    assert same["per_prompt"][0] == 0.5  # against prompt 1 only: 0.9 > 0.5, 0.1 < 0.5
    with pytest.raises(ZooError, match="at least 2 prompts"):
        caption_following(sim[:1, :, :1], ["a"])


def test_evaluate_reports_caption_following_from_the_similarity(tmp_path):
    """Samples whose brightness encodes their prompt; the similarity rewards matching
    brightness, so every sample follows its caption except where the generator is told to
    swap two prompts' images."""
    levels = {"dark": 0.1, "grey": 0.5, "light": 0.9}
    prompts = [Prompt(t) for t in levels]

    def generate(texts, ids, num_samples, seed):
        swap = {"grey": "light", "light": "grey"}
        images = []
        for t in texts:
            rows = [np.full((4, 4, 3), levels[t if s == 0 else swap.get(t, t)], np.float32)
                    for s in range(num_samples)]
            images.append(rows)
        return np.asarray(images)

    def similarity(images, texts):
        bright = np.asarray(images).mean(axis=(1, 2, 3))
        return -np.abs(bright[:, None] - np.asarray([levels[t] for t in texts])[None, :])

    results = evaluate_lib.evaluate(generate, prompts, tmp_path, num_samples=2,
                                    similarity=similarity, progress=False)
    m = results["metrics"]
    # Sample 0 of every prompt follows; sample 1 of grey and light are swapped: 4 of 6.
    assert m["caption_following"] == pytest.approx(4 / 6)
    assert m["caption_following_chance"] == pytest.approx(1 / 3)
    assert [s["caption_following"] for s in results["samples"]] == [1.0, 0.5, 0.5]
    assert "caption_following" in (tmp_path / "summary.txt").read_text()


def test_evaluate_fid_and_kid_against_an_array_of_images(tmp_path, mean_colour_features):
    rng = np.random.default_rng(0)
    prompts = [Prompt("a"), Prompt("b")]

    def generate(texts, ids, num_samples, seed):
        return rng.uniform(0.4, 0.6, size=(len(texts), num_samples, 8, 8, 3))

    reference = rng.uniform(0.0, 1.0, size=(6, 8, 8, 3)).astype(np.float32)
    results = evaluate_lib.evaluate(generate, prompts, tmp_path, num_samples=3,
                                    reference=reference, feature_network=mean_colour_features,
                                    progress=False)
    m = results["metrics"]
    from zoo.eval import fid as fid_lib
    net = FEATURE_NETWORKS.create(mean_colour_features)
    images = evaluate_lib.load_images(tmp_path, results["samples"]).reshape(-1, 8, 8, 3)
    gen, ref = np.asarray(net(images), np.float64), np.asarray(net(reference), np.float64)
    assert m["kid"] == pytest.approx(fid_lib.kernel_distance(gen, ref), rel=1e-9)
    assert m["fid"] == pytest.approx(fid_lib.frechet_distance_from_features(gen, ref), rel=1e-6)
    assert m["fid_images"] == 6 and m["fid_reference_images"] == 6
    assert results["reference"] == "6 images given as an array"
