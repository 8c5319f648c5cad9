"""zoo-demo end to end on the shapes data (a few steps per stage): every stage, the sampling
settings it measures and uses, figures that are the checker's verdicts on the saved samples, and
a second run resumes instead of restarting."""

import json
import os
import re

import numpy as np
import pytest

from helpers_tools import make_plugin_dist, run_tool

# A 3-step Parti draws noise that the checker rejects, so every figure of a --quick demo would
# be 0 and a demo that printed 0.0% whatever it measured would pass. This plugin (loaded by the
# demo like any other) makes the first evaluation prompt's sample the true rendering of its
# caption, as a trained model's would be: the right figure is then 50% (1 of 2 samples).
RENDERING_PLUGIN = """
import numpy as np

from zoo.data import shapes
from zoo.models import sampling

FIRST_PROMPT = shapes.caption(0, 0, "test")
_sample = sampling.TextToImage.__call__


def _with_rendering(self, prompts, *args, **kwargs):
    images, scores = _sample(self, prompts, *args, **kwargs)
    images = np.array(images)
    for row, prompt in enumerate(prompts):
        if prompt == FIRST_PROMPT:
            true = shapes.generate(0, 0, "test", image_size=images.shape[2])
            images[row, 0] = true["image"] / 255.0
    return images, scores


sampling.TextToImage.__call__ = _with_rendering
"""


@pytest.mark.slow
def test_demo_quick_runs_every_stage_and_resumes(tmp_path):
    out = tmp_path / "demo"
    site = make_plugin_dist(tmp_path / "site", "zoo_test_rendering", "test_rendering",
                            "zoo_test_rendering", RENDERING_PLUGIN)
    r = run_tool("demo", "--quick", f"--model_dir={out}", extra_path=site, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    titles = ["text tokenizer", "image tokenizer", "reranker", "transformer", "sampling settings",
              "samples + evaluation"]
    for i, title in enumerate(titles, 1):
        assert f"[{i}/6] {title}" in r.stdout, r.stdout
    # Each training stage prints the zoo-train command that reruns it alone.
    for stage in ("tokenizer", "contrastive", "parti"):
        assert f"$ zoo-train --gin_file=runs/demo_{stage}.gin --model_dir={out / stage}" \
            in r.stdout, r.stdout
    assert "zoo-demo: done" in r.stdout
    assert (out / "spm" / "spm.model").exists()
    # BPE keeps every caption word one piece (unigram on this little text splits words into
    # letters shared across words: "green" -> _ g re en).
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=str(out / "spm" / "spm.model"))
    assert sp.encode("a little green triangle at the top", out_type=str) == [
        "\u2581a", "\u2581little", "\u2581green", "\u2581triangle", "\u2581at", "\u2581the",
        "\u2581top"]
    # The demo's images are 48x48 (cells of the 3x3 grid are 4x4 codes of 4x4 pixels).
    tok = json.loads((out / "tokenizer" / "run.json").read_text())["task_config"]
    assert tok["tokenizer_options"]["image_size"] == 48, tok
    assert tok["tokenizer_options"]["patch_size"] == 4, tok
    for stage, task in (("tokenizer", "vit_vqgan"), ("contrastive", "contrastive"),
                        ("parti", "parti")):
        run = json.loads((out / stage / "run.json").read_text())
        assert run["task"] == task and run["task_config"]["dataset"] == "synthetic_shapes"
        assert (out / stage / "operative_config.gin").exists()

    # The sampling stage measured its grid with the shapes checker and recorded the best;
    # the eval stage sampled with exactly those settings.
    recorded = json.loads((out / "parti" / "sampling.json").read_text())
    assert recorded["chosen_by"] == "shapes checker acceptance"
    assert recorded["weights"] == "bfloat16"  # the decode weights the grid was sampled with
    assert [row["temperature"] for row in recorded["grid"]] == [1.0, 0.5]  # --quick's grid
    best = max(recorded["grid"], key=lambda row: row["score"])["score"]
    chosen = [row for row in recorded["grid"]
              if row["temperature"] == recorded["settings"]["temperature"]]
    assert chosen[0]["score"] == best
    results = json.loads((out / "eval" / "results.json").read_text())
    # The evaluation's prompts are held-out captions (caption meanings never trained on, the
    # test split of the run's data); the grid was measured on other held-out captions.
    from zoo.data import shapes
    prompts = [s["prompt"] for s in results["samples"]]
    assert prompts == [shapes.caption(0, i, "test") for i in range(2)]
    assert recorded["prompts"] == [shapes.caption(0, i, "test") for i in range(2, 4)]
    assert results["temperature"] == recorded["settings"]["temperature"]
    assert set(results["sampling_settings_from"].values()) == {"recorded"}

    # The printed figure is the shapes checker's verdict on the saved samples.
    from PIL import Image

    from zoo.eval.shapes_eval import shapes_acceptance
    samples = results["samples"]
    images = np.stack([np.asarray(Image.open(out / "eval" / s["images"][0]), np.float32) / 255
                       for s in samples])
    checked = shapes_acceptance([s["prompt"] for s in samples], images)
    # The rendering is accepted, the noise is not: the figure is not 0.
    assert checked["accepted"] == [True, False], checked["accepted"]
    assert results["shapes"]["acceptance"] == checked["acceptance"] == 0.5
    shown = re.search(r"shapes checker acceptance ([\d.]+)% of all samples, gallery ", r.stdout)
    assert shown and float(shown.group(1)) == round(100 * checked["acceptance"], 1), r.stdout
    assert (out / "eval" / "index.html").exists() and (out / "eval" / "grid.png").exists()
    assert (out / "eval" / "summary.txt").read_text().strip() in r.stdout  # printed at the end
    assert "Traceback" not in r.stderr

    # Run again: finished stages are not redone.
    spm_mtime = os.path.getmtime(out / "spm" / "spm.model")
    r2 = run_tool("demo", "--quick", f"--model_dir={out}", "--stages=spm,tokenizer,sampling",
                  extra_path=site, timeout=600)
    assert r2.returncode == 0, r2.stderr[-3000:]
    assert "(exists)" in r2.stdout and "sampling.json (exists)" in r2.stdout
    assert "already at step 3" in r2.stdout
    assert os.path.getmtime(out / "spm" / "spm.model") == spm_mtime


def test_demo_rejects_unknown_stage(tmp_path):
    r = run_tool("demo", "--stages=tokeniser", f"--model_dir={tmp_path}")
    assert r.returncode == 1
    assert "unknown stage 'tokeniser'" in r.stderr and "did you mean 'tokenizer'" in r.stderr
    assert not os.listdir(tmp_path)  # refused before anything was written


def test_demo_asks_for_onednn_for_its_training_stages(monkeypatch, tmp_path):
    # As zoo-train: TensorFlow's oneDNN kernels unless the environment says otherwise (run in
    # process: main sets the variable first thing, then refuses the stage).
    from absl import flags

    from zoo.tools import common, demo
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    argv = ["zoo-demo", "--stages=tokeniser", f"--model_dir={tmp_path}"]
    flags.FLAGS.unparse_flags()
    with pytest.raises(SystemExit):
        common.run(demo.main, argv=argv)
    flags.FLAGS.unparse_flags()
    assert os.environ.get("TF_ENABLE_ONEDNN_OPTS") == "1"
