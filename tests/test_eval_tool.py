"""zoo-eval on a tiny trained run: prompts from the run's own shapes data, metrics, reranking by
a scorer, results/summary/gallery/grid files, resume, and every bad input as one clear line."""

import json

import numpy as np
import pytest
from PIL import Image

from helpers_parti_run import tiny_parti_run
from helpers_tools import run_tool
from zoo.errors import ZooError
from zoo.registry import SCORERS


@pytest.fixture
def brightness_scorer():
    class Brightness:
        """Stand-in for the contrastive scorer: brighter images score higher."""

        def score(self, images, captions):
            assert len(images) == len(captions)
            return np.asarray(images, np.float32).mean(axis=(1, 2, 3))

        def similarity(self, images, captions):
            return np.repeat(self.score(images, ["x"] * len(images))[:, None], len(captions), 1)

    SCORERS.register("test_brightness")(Brightness)
    yield "test_brightness"
    SCORERS.unregister("test_brightness")


@pytest.mark.slow
def test_eval_tiny_run_end_to_end(tmp_path, brightness_scorer, monkeypatch):
    from zoo.data import shapes
    from zoo.models.sampling import TextToImage
    from zoo.eval.runner import evaluate_run as run_eval

    run = tiny_parti_run()
    model_dir = str(run / "parti")
    out = tmp_path / "eval"
    # A 2-step model's samples are noise that the checker rejects, so every figure would be 0
    # and a report of 0 could not be told from a broken one: prompts 0 and 2 get the true
    # rendering of their caption as one sample (as a trained model's best sample would be).
    config = shapes.ShapesConfig(max_objects=1)
    sample = TextToImage.__call__

    def with_renderings(self, prompts, prompt_ids=None, num_samples=1, seed=0):
        images, _ = sample(self, prompts, prompt_ids, num_samples, seed)
        images = np.array(images)
        for row, p in enumerate(prompt_ids):
            if p != 1:
                true = shapes.generate(3, int(p), "test", config, images.shape[2])
                assert true["caption"] == prompts[row]
                images[row, 1] = true["image"] / 255.0
        flat = images.reshape((-1,) + images.shape[2:])
        scores = self.scorer.score(flat, [p for p in prompts for _ in range(num_samples)])
        scores = np.asarray(scores).reshape(len(prompts), num_samples)
        order = np.argsort(-scores, axis=1, kind="stable")
        return (np.take_along_axis(images, order[:, :, None, None, None], axis=1),
                np.take_along_axis(scores, order, axis=1))

    monkeypatch.setattr(TextToImage, "__call__", with_renderings)
    results = run_eval(model_dir, "shapes", str(out), num_prompts=3, num_samples=2, seed=1,
                       guidance_scale=1.2, scorer=brightness_scorer, progress=False)

    # Held-out captions of the run's data: seed 3, one object per image (bound in gin).
    assert [s["prompt"] for s in results["samples"]] == [
        shapes.caption(3, i, "test", config) for i in range(3)]
    assert results["checkpoint_step"] == 2 and results["guidance_scale"] == 1.2
    metrics = results["metrics"]
    # The figures are the checker's verdicts on the saved images, recomputed here.
    from zoo.eval.shapes_eval import shapes_acceptance
    images = np.stack([[np.asarray(Image.open(out / n), np.float32) / 255 for n in s["images"]]
                       for s in results["samples"]])
    texts = [s["prompt"] for s in results["samples"] for _ in range(2)]
    checked = shapes_acceptance(texts, images.reshape((-1,) + images.shape[2:]))
    assert metrics["shapes_acceptance"] == checked["acceptance"] >= 2 / 6  # the renderings
    assert checked["accepted"].count(True) >= 2
    assert metrics["shapes_acceptance_by_feature"] == checked["by_feature"]
    assert set(checked["by_feature"]) >= {"colour", "shape", "position", "count"}
    verdicts = [a for s in results["samples"] for a in s["accepted"]]
    assert verdicts == checked["accepted"]
    firsts = [s["accepted"][0] for s in results["samples"] if s["accepted"][0] is not None]
    assert results["shapes"]["acceptance_top1"] == pytest.approx(np.mean(firsts))
    # Reranked by the scorer: best first, and the agreement score is the scorer's mean.
    brightness = images.mean(axis=(2, 3, 4))
    # Caption following under this scorer: caption i's sample s is the brightest of sample s
    # of every prompt.
    wins = [brightness[i, k] > np.delete(brightness[:, k], i).max()
            for i in range(3) for k in range(2)]
    assert metrics["caption_following"] == pytest.approx(np.mean(wins))
    assert metrics["caption_following_chance"] == pytest.approx(1 / 3)
    for sample, b in zip(results["samples"], brightness):
        assert sample["scores"] == sorted(sample["scores"], reverse=True)
        np.testing.assert_allclose(sample["contrastive"], b, atol=1e-6)
    assert metrics["contrastive_score"] == pytest.approx(brightness.mean(), abs=1e-6)
    for name in ("results.json", "summary.txt", "index.html", "grid.png", "samples.jsonl"):
        assert (out / name).is_file(), name
    assert json.loads((out / "results.json").read_text())["num_samples"] == 2
    grid = Image.open(out / "grid.png")
    assert grid.size[1] > 3 * 96

    # The same command again resumes: nothing is generated twice.
    calls = []
    original = sample
    monkeypatch.setattr(TextToImage, "__call__",
                        lambda self, *a, **k: calls.append(a) or original(self, *a, **k))
    again = run_eval(model_dir, "shapes", str(out), num_prompts=3, num_samples=2, seed=1,
                     guidance_scale=1.2, scorer=brightness_scorer, progress=False)
    assert calls == [] and again["metrics"] == results["metrics"]


@pytest.mark.slow
def test_cli_partiprompts_grouped(tmp_path):
    run = tiny_parti_run()
    out = tmp_path / "p2"
    r = run_tool("eval", f"--model_dir={run / 'parti'}", "--prompts=partiprompts",
                 "--num_prompts=3", "--num_samples=1", f"--output_dir={out}", "--noprogress",
                 "--xla")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "by category" in r.stdout and "gallery:" in r.stdout
    results = json.loads((out / "results.json").read_text())
    assert len(results["groups"]["category"]) == 3  # one prompt from each of 3 categories
    assert "shapes_acceptance" not in results["metrics"]
    assert results["xla"] is True  # --xla reached the sampler (an XLA-compiled decode loop)
    page = (out / "index.html").read_text()
    assert "<h2" in page and "<h3" in page


@pytest.mark.parametrize("content,match", [
    (b"", "is empty"),
    (b"\xff\xfe bad", "not UTF-8: byte 0xff at byte offset 0"),
    (b"a red circle\n\ntwo blue squares\n", "line 2 is empty"),
])
def test_bad_prompt_files(tmp_path, content, match):
    from zoo.eval.runner import evaluate_run as run_eval
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    prompts = tmp_path / "prompts.txt"
    prompts.write_bytes(content)
    with pytest.raises(ZooError, match=match):
        run_eval(str(model_dir), str(prompts), str(tmp_path / "out"))


def test_bad_dirs(tmp_path):
    from zoo.eval.runner import evaluate_run as run_eval
    with pytest.raises(ZooError, match=r"--model_dir '.*nope' does not exist.*parti"):
        run_eval(str(tmp_path / "nope"), "shapes")
    with pytest.raises(ZooError, match="--model_dir is required"):
        run_eval(None, "shapes")
    (tmp_path / "model").mkdir()
    with pytest.raises(ZooError, match=r"reference image folder '.*refs' does not exist"):
        run_eval(str(tmp_path / "model"), "shapes", reference=str(tmp_path / "refs"))
    with pytest.raises(ZooError, match=r"--scorer_dir '.*nope' does not exist"):
        run_eval(str(tmp_path / "model"), "shapes", scorer_dir=str(tmp_path / "nope"))
    with pytest.raises(ZooError, match="--num_prompts must be at least 1"):
        run_eval(str(tmp_path / "model"), "shapes", num_prompts=0)



@pytest.mark.slow
def test_recorded_sampling_settings_are_used_unless_a_flag_overrides(tmp_path):
    import shutil
    from zoo.eval.runner import evaluate_run
    from zoo.models import sampling_settings
    run = tmp_path / "run"
    shutil.copytree(tiny_parti_run() / "parti", run)
    sampling_settings.record(str(run), {"temperature": 0.5, "top_k": 3, "guidance_scale": 2.0})
    results = evaluate_run(str(run), "shapes", str(tmp_path / "a"), num_prompts=1,
                           num_samples=1, guidance_scale=1.5, progress=False)
    assert (results["temperature"], results["top_k"], results["top_p"],
            results["guidance_scale"]) == (0.5, 3, 1.0, 1.5)
    assert results["sampling_settings_from"] == {"temperature": "recorded", "top_k": "recorded",
                                                 "top_p": "default", "guidance_scale": "flag"}
    assert (results["weights"], results["jacobi_window"], results["xla"]) == (
        "bfloat16", 0, False)  # the decoding used: the default resolved
    from zoo.models.export import INFO_FILE, export_model_dir
    exported = export_model_dir(str(run), str(tmp_path / "export"), top_p=0.9)
    info = json.loads((exported / INFO_FILE).read_text())
    assert (info["temperature"], info["top_k"], info["top_p"], info["guidance_scale"]) == (
        0.5, 3, 0.9, 2.0)
    r = run_tool("sample", f"--model_dir={run}", "--prompt=a red circle", "--num_samples=1",
                 f"--output_dir={tmp_path / 's'}", "--noprogress", "--temperature=0.25",
                 "--weights=int8", "--jacobi_window=4")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "zoo-sample: decoding: weights int8, jacobi_window 4, xla off" in r.stderr, r.stderr
    assert ("zoo-sample: sampling settings: temperature 0.25 (flag), top_k 3 (recorded), top_p 1 "
            "(default), guidance_scale 2 (recorded); recorded in " + str(run / "sampling.json")
            in r.stderr), r.stderr
    # The default weights, as resolved (bfloat16 on the cached path), are what the line names.
    r = run_tool("sample", f"--model_dir={run}", "--prompt=a red circle", "--num_samples=1",
                 f"--output_dir={tmp_path / 's2'}", "--noprogress")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "zoo-sample: decoding: weights bfloat16, jacobi_window 0, xla off" in r.stderr, r.stderr
