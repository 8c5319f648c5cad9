"""zoo-demo --data=FOLDER: every stage on a folder of real photos, held-out captions never trained
on, and every kind of bad input answered with one clear line before anything is written."""

import json
import os

import numpy as np
import pytest

from helpers_data import photo_folder, save_image
from helpers_tools import run_tool
from zoo.errors import ZooError


def _photos(tmp_path_factory):
    root = photo_folder(str(tmp_path_factory.mktemp("photos")))
    if root is None:
        pytest.fail("scikit-image is not installed: its wheel ships the photos this test uses "
                    "(pip install --no-deps -r requirements-test.txt)")
    return root


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return _photos(tmp_path_factory)


def _folder(root, n, columns=("file_name", "text"), size=(12, 10)):
    rng = np.random.default_rng(0)
    with open(os.path.join(root, "metadata.jsonl"), "w") as f:
        for i in range(n):
            save_image(os.path.join(root, f"{i}.png"),
                       (rng.random(size + (3,)) * 255).astype(np.uint8))
            f.write(json.dumps({columns[0]: f"{i}.png", columns[1]: f"caption {i}"}) + "\n")
    return str(root)


@pytest.mark.slow
def test_quick_run_on_real_photos_trains_on_the_train_split_only(photos, tmp_path, monkeypatch):
    from zoo.data.folder import ImageCaptionFolder
    from zoo.pipeline import run_demo

    # Every read of the folder's data, by split: a stage reaches images through reader() and
    # captions through captions(); nothing else hands out the folder's rows.
    reads = []
    reader, captions = ImageCaptionFolder.reader, ImageCaptionFolder.captions

    def spy_reader(self, split, image_size=None):
        reads.append((split, {r["file_name"] for r in self.rows[split]},
                      {r["caption"] for r in self.rows[split]}))
        return reader(self, split, image_size)

    def spy_captions(self, split="train"):
        reads.append((split, {r["file_name"] for r in self.rows[split]},
                      {r["caption"] for r in self.rows[split]}))
        return captions(self, split)

    monkeypatch.setattr(ImageCaptionFolder, "reader", spy_reader)
    monkeypatch.setattr(ImageCaptionFolder, "captions", spy_captions)
    out = tmp_path / "mine"
    lines = []
    options = dict(quick=True, bindings=["HOLDOUT_PERCENT = 25"], print_fn=lines.append)
    run_demo(str(out), photos, stages=["spm", "tokenizer", "contrastive", "parti"], **options)
    training_reads = list(reads)

    held = ImageCaptionFolder(path=photos, holdout_percent=25)
    held_files = {r["file_name"] for r in held.rows["test"]}
    held_captions = set(held.captions("test"))
    assert len(held_files) >= 3 and not held_captions & set(held.captions("train"))
    assert training_reads, "the training stages read nothing through the dataset"
    for split, files, texts in training_reads:
        assert split == "train" and not files & held_files and not texts & held_captions

    # Every stage's record names the folder and the train split.
    assert json.loads((out / "pipeline.json").read_text())["data"] == photos
    assert json.loads((out / "spm" / "spm.json").read_text())["data"] == photos
    for stage in ("tokenizer", "contrastive", "parti"):
        config = json.loads((out / stage / "run.json").read_text())["task_config"]
        assert config["dataset"] == "image_caption_folder", stage
        options = config["dataset_options"]
        assert options["path"] == photos and options["holdout_percent"] == 25, stage
        assert config.get("split", "train") == "train", stage
    text = "\n".join(lines)
    assert "$ zoo-train --gin_file=runs/folder_tokenizer.gin" in text
    assert f"--gin_bindings=\"DATA_DIR = '{photos}'\"" in text
    assert "$ zoo-train --gin_file=runs/folder_parti.gin" in text

    # Sampling grid and evaluation: the held-out captions are the prompts.
    reads.clear()
    lines.clear()
    run_demo(str(out), photos, stages=["sampling", "eval"], **options)
    recorded = json.loads((out / "parti" / "sampling.json").read_text())
    assert set(recorded["prompts"]) <= held_captions and len(recorded["prompts"]) == 2
    best = max(recorded["grid"], key=lambda r: r["score"])
    assert {k: best[k] for k in recorded["settings"]} == recorded["settings"]
    results = json.loads((out / "eval" / "results.json").read_text())
    assert set(results["sampling_settings_from"].values()) == {"recorded"}
    assert results["temperature"] == recorded["settings"]["temperature"]
    prompts = [s["prompt"] for s in results["samples"]]
    assert set(prompts) <= held_captions and len(prompts) == min(4, len(held_captions))
    m = results["metrics"]
    assert m["caption_following_chance"] == pytest.approx(1 / len(prompts))
    assert m["retrieval_chance"] == pytest.approx(1 / len(held_captions))
    assert m["heldout_images"] == len(held_files) and m["fid_reference_images"] == len(held_files)
    assert m["fid_images"] == 2 * len(prompts) and m["fid_feature_network"] == "random_conv"
    for name in ("caption_following", "retrieval_accuracy", "tokenizer_psnr_db", "fid", "kid"):
        assert np.isfinite(m[name]), name
    summary = (out / "eval" / "summary.txt").read_text()
    assert "not comparable with published FIDs" in summary
    assert summary.strip() in "\n".join(lines)  # printed at the end


def test_bad_folders_are_one_clear_line(tmp_path):
    from zoo.pipeline import make_demo
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ZooError, match=r"no metadata.jsonl or metadata.csv under .*empty"):
        make_demo(str(tmp_path / "run"), str(empty))
    other = tmp_path / "other"
    other.mkdir()
    _folder(other, 3, columns=("file_name", "caption"))
    with pytest.raises(ZooError, match=r"no 'text' column \(columns found: 'file_name', "
                                       r"'caption'\)"):
        make_demo(str(tmp_path / "run"), str(other))
    few = tmp_path / "few"
    few.mkdir()
    _folder(few, 20)
    with pytest.raises(ZooError, match=r"has only 20 usable image-caption pairs; .*at least 100"
                                       r".*--quick"):
        make_demo(str(tmp_path / "run"), str(few))
    assert make_demo(str(tmp_path / "run"), str(few), quick=True).stages  # a smoke test may
    (tmp_path / "a.jpg").write_bytes(b"x")
    with pytest.raises(ZooError, match=r"--data .*a\.jpg is a file, not a folder"):
        make_demo(str(tmp_path / "run"), str(tmp_path / "a.jpg"))
    with pytest.raises(ZooError, match=r"--data .*nope does not exist"):
        make_demo(str(tmp_path / "run"), str(tmp_path / "nope"))
    with pytest.raises(ZooError, match="unknown preset 'gpu265'; did you mean 'gpu256'"):
        make_demo(str(tmp_path / "run"), str(few), quick=True, preset="gpu265")
    with pytest.raises(ZooError, match="--preset needs --data"):
        make_demo(str(tmp_path / "run"), preset="gpu256")
    assert not (tmp_path / "run").exists()  # nothing was written


def test_a_model_dir_made_from_another_folder_is_refused(tmp_path):
    from zoo.pipeline import make_demo
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    _folder(a, 20)
    _folder(b, 20)
    run = tmp_path / "run"
    pipeline = make_demo(str(run), str(a), quick=True)
    pipeline.stages = []  # record the folder only
    pipeline.run()
    before = (run / "pipeline.json").read_text()
    with pytest.raises(ZooError, match=rf"--model_dir {run} was made from {a}, not {b}; use "
                                       rf"another --model_dir \(nothing was changed\)"):
        make_demo(str(run), str(b), quick=True).run()
    with pytest.raises(ZooError, match=rf"made from {a}, not synthetic_shapes"):
        make_demo(str(run)).run(["spm"])
    assert (run / "pipeline.json").read_text() == before and sorted(os.listdir(run)) == [
        "pipeline.json"]


def test_plan_follows_the_images(tmp_path):
    from zoo.pipeline.folder import plan_folder
    small = tmp_path / "small"
    small.mkdir()
    _folder(small, 120, size=(40, 30))
    plan, dataset = plan_folder(str(small), [], [])
    assert (plan.native_size, plan.image_size, plan.patch_size) == (30, 32, 4)
    assert plan.splits["train"] + plan.splits["test"] == 120 and plan.heldout_split == "test"
    assert plan.vocab_size == 192  # 1.5 x 121 distinct words, rounded up to 64
    large = tmp_path / "large"
    large.mkdir()
    _folder(large, 120, size=(90, 70))
    plan, _ = plan_folder(str(large), [], [])
    assert (plan.native_size, plan.image_size, plan.patch_size) == (70, 64, 8)


def test_gpu_preset_gin_parses_for_every_stage(tmp_path):
    """The preset's bindings reach each stage's configuration (building Parti-350M on a CPU
    is for another machine: this checks what the stages would be given)."""
    from zoo import config
    from zoo.pipeline.folder import PRESETS
    for stage in ("tokenizer", "contrastive", "parti"):
        config.parse([f"runs/folder_{stage}.gin", PRESETS["gpu256"]],
                     [f"DATA_DIR = '{tmp_path}'", "SPM_MODEL = 'x'", "TOKENIZER_DIR = 'y'"],
                     finalize=False)
        assert config.query("%DATA_DIR") == str(tmp_path)
        assert config.query("%IMAGE_SIZE") == 256 and config.query("%HOLDOUT_PERCENT") == 2.0
        assert config.query("image_caption_folder.verify") == "header"
        if stage == "tokenizer":
            assert config.query("%TOKENIZER") == "vit_vqgan_small"
            assert config.query("vit_vqgan.feature_network") == "vgg16"
        if stage == "contrastive":
            assert config.query("%CONTRASTIVE_PATCH") == 16
        if stage == "parti":
            assert config.query("%PARTI_MODEL") == "parti_350m"
            assert config.query("%PARTI_BATCH") == 512


def test_cli_bad_folder_is_one_line(tmp_path):
    (tmp_path / "x.png").write_bytes(b"x")
    r = run_tool("demo", f"--data={tmp_path / 'x.png'}", f"--model_dir={tmp_path / 'run'}")
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [
        f"zoo-demo: error: --data {tmp_path / 'x.png'} is a file, not a folder; give the folder "
        f"holding the images and metadata.jsonl (or metadata.csv)"]
