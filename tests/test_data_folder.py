"""image_caption_folder: ImageFolder metadata, broken files skipped and counted, TFDS, fuzzing."""

import json
import logging

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers_data import make_folder, save_image
from zoo.data import make_dataset
from zoo.data.folder import ImageCaptionFolder, scan_folder
from zoo.errors import ZooError
from zoo.registry import DATASETS


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_folder(str(tmp_path_factory.mktemp("folder")))


def test_scan_keeps_good_rows_and_counts_the_rest(folder, caplog):
    with caplog.at_level(logging.WARNING, logger="zoo"):
        ds = ImageCaptionFolder(path=folder)
    assert ds.splits() == ("train", "test")
    assert ds.num_examples("train") == 6 and ds.num_examples("test") == 1
    skipped = {k: sorted(v) for k, v in ds.report.skipped.items()}
    assert skipped == {"corrupt images": ["bad.jpg", "trunc.jpg"],
                       "unsupported images": ["x.tiff"], "missing images": ["missing.png"],
                       "rows without caption": ["img0.png", "img0.png"],
                       "malformed metadata lines": ["metadata.jsonl:13"]}
    lines = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(lines) == 1 and "skipped 7 of 14 rows" in lines[0] and "bad.jpg" in lines[0]
    assert "\n" not in lines[0]
    names = sorted(r["file_name"] for r in ds.rows["train"])
    assert names == ["img0.png", "img2.png", "img4.png", "sub/img1.jpg", "sub/img3.jpg",
                     "sub/img5.jpg"]
    assert sorted(ds.captions("train")) == [f"caption {i}" for i in range(6)]


def test_batches_keep_other_columns(folder):
    ds = ImageCaptionFolder(path=folder)
    batches = list(make_dataset(ds, image_size=24, batch_size=3, repeat=False, shuffle=False))
    assert len(batches) == 2
    b = batches[0]
    assert b["image"].shape == (3, 24, 24, 3) and b["image"].dtype.name == "float32"
    assert 0.0 <= float(b["image"].numpy().min()) and float(b["image"].numpy().max()) <= 1.0
    rows = ds.rows["train"][:3]
    assert [c.decode() for c in b["caption"].numpy()] == [r["caption"] for r in rows]
    assert [s.decode() for s in b["score"].numpy()] == [r["score"] for r in rows]
    assert set(b) >= {"image", "caption", "file_name", "score", "source", "index"}
    test = next(iter(make_dataset(ds, split="test", image_size=24, batch_size=1)))
    assert test["caption"].numpy().tolist() == [b"a test caption"]
    with pytest.raises(ZooError, match="no split 'validation'"):
        make_dataset(ds, split="validation")


def test_gin_binding_points_the_dataset_at_a_folder(folder, gin_clean):
    from zoo import config
    config.parse([], [f"image_caption_folder.path = '{folder}'"], finalize=False)
    ds = DATASETS.create("image_caption_folder")
    assert ds.num_examples("train") == 6
    batch = next(iter(make_dataset("image_caption_folder", image_size=16, batch_size=2)))
    assert batch["image"].shape == (2, 16, 16, 3)


def test_errors_name_what_is_wrong(tmp_path):
    with pytest.raises(ZooError, match="path is not set"):
        ImageCaptionFolder()
    with pytest.raises(ZooError, match="not a directory"):
        ImageCaptionFolder(path=str(tmp_path / "nope"))
    with pytest.raises(ZooError, match="no metadata.jsonl or metadata.csv"):
        ImageCaptionFolder(path=str(tmp_path))
    (tmp_path / "metadata.csv").write_text("image,caption,extra\na.png,hello,1\n")
    with pytest.raises(ZooError) as e:
        ImageCaptionFolder(path=str(tmp_path))
    msg = str(e.value)
    assert "'file_name' or 'text'" in msg and "'image', 'caption', 'extra'" in msg
    save_image(str(tmp_path / "a.png"), np.zeros((8, 8, 3), np.uint8))
    ds = ImageCaptionFolder(path=str(tmp_path), image_column="image", caption_column="caption")
    assert ds.num_examples("train") == 1 and ds.extras == ["extra"]
    (tmp_path / "metadata.csv").write_text("file_name,text\nmissing.png,hello\n")
    with pytest.raises(ZooError, match="no usable image-caption pairs.*1 missing images"):
        ImageCaptionFolder(path=str(tmp_path))


def _corrupt_folder(root, n, corrupt):
    """n PNGs (caption 'c<i>'), those in `corrupt` replaced by a PNG signature and zeros (they
    pass a scan with verify='none' and fail to decode)."""
    rows = []
    root.mkdir(exist_ok=True)
    for i in range(n):
        if i in corrupt:
            (root / f"{i}.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 50)
        else:
            save_image(str(root / f"{i}.png"), np.full((10, 12, 3), 5 * i, np.uint8))
        rows.append({"file_name": f"{i}.png", "text": f"c{i}"})
    (root / "metadata.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return ImageCaptionFolder(path=str(root), verify="none", holdout_percent=0)


def test_images_failing_to_decode_are_skipped_counted_and_named(tmp_path, caplog):
    ds = _corrupt_folder(tmp_path, 12, corrupt={3, 7})
    assert ds.num_examples("train") == 12  # the scan was told not to look
    with caplog.at_level(logging.WARNING, logger="zoo"):
        batches = list(make_dataset(ds, image_size=8, batch_size=1, repeat=False,
                                    shuffle=False))
    assert [b["caption"].numpy()[0].decode() for b in batches] == [
        f"c{i}" for i in range(12) if i not in (3, 7)]
    lines = [r.getMessage() for r in caplog.records if "failed to decode" in r.getMessage()]
    assert lines[-1] == (f"image_caption_folder {tmp_path}: skipped 2 images that failed to "
                         f"decode: 3.png, 7.png")


def test_a_folder_where_nothing_decodes_fails_fast_naming_it(tmp_path):
    ds = _corrupt_folder(tmp_path, 40, corrupt=set(range(40)))
    with pytest.raises(tf.errors.OpError) as e:  # one pass: without the check it just ends
        list(make_dataset(ds, image_size=8, batch_size=4, repeat=False))
    from zoo.tools.common import zoo_error_in
    message = zoo_error_in(e.value)
    assert message.startswith(f"image_caption_folder {tmp_path}: no usable images: the first "
                              f"32 examples all failed to decode ("), message


def test_training_on_a_folder_where_nothing_decodes_stops_with_one_line(tmp_path):
    """Repeating forever over images that all fail would hang training (what ignore_errors
    did); it stops within seconds, as one line naming the folder."""
    import time

    from helpers_tools import run_tool
    _corrupt_folder(tmp_path / "data", 40, corrupt=set(range(40)))
    start = time.time()
    r = run_tool("train", "--gin_file=runs/folder_tokenizer.gin",
                 f"--gin_bindings=DATA_DIR = '{tmp_path / 'data'}'",
                 "--gin_bindings=image_caption_folder.verify = 'none'",
                 f"--model_dir={tmp_path / 'run'}", "--noprogress", timeout=180)
    assert r.returncode == 1, r.stderr[-2000:]
    assert r.stderr.strip().splitlines()[-1].startswith(
        f"zoo-train: error: image_caption_folder {tmp_path / 'data'}: no usable images: the "
        f"first 32 examples all failed to decode ("), r.stderr[-2000:]
    assert time.time() - start < 120


def test_holdout_split_by_file_name_hash(tmp_path):
    from zoo.data.folder import holdout_bucket
    rows = []
    for i in range(400):
        name = f"d{i % 3}/img{i}.png"
        save_image(str(tmp_path / name), np.full((4, 4, 3), i % 250, np.uint8))
        rows.append({"file_name": name, "text": f"caption {i}"})
    (tmp_path / "metadata.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    ds = ImageCaptionFolder(path=str(tmp_path), verify="none")
    assert ds.splits() == ("train", "test") and ds.heldout_split() == "test"
    held = {r["file_name"] for r in ds.rows["test"]}
    train = {r["file_name"] for r in ds.rows["train"]}
    assert not held & train and len(held | train) == 400
    assert 8 <= len(held) <= 32  # ~5% of 400
    assert held == {f"d{i % 3}/img{i}.png" for i in range(400)
                    if holdout_bucket(f"d{i % 3}/img{i}.png") < 5.0}
    # Deterministic and independent of the order of the rows; another share moves files.
    (tmp_path / "metadata.jsonl").write_text("\n".join(json.dumps(r) for r in rows[::-1]))
    again = ImageCaptionFolder(path=str(tmp_path), verify="none")
    assert {r["file_name"] for r in again.rows["test"]} == held
    assert set(again.captions("test")) == {r["caption"] for r in ds.rows["test"]}
    ten = ImageCaptionFolder(path=str(tmp_path), verify="none", holdout_percent=10)
    assert held < {r["file_name"] for r in ten.rows["test"]}
    none = ImageCaptionFolder(path=str(tmp_path), verify="none", holdout_percent=0)
    assert none.splits() == ("train",)
    with pytest.raises(ZooError, match="no held-out split.*holdout_percent > 0"):
        none.heldout_split()
    with pytest.raises(ZooError, match="holdout_percent must be a number in"):
        ImageCaptionFolder(path=str(tmp_path), holdout_percent=80)


def test_the_folders_own_splits_win_over_the_hash(folder):
    ds = ImageCaptionFolder(path=folder, holdout_percent=50)
    assert ds.heldout_split() == "test" and ds.num_examples("test") == 1
    assert ds.num_examples("train") == 6


def test_images_of_any_mode_and_size_become_rgb(tmp_path):
    from PIL import Image
    y, x = np.mgrid[0:24, 0:36]
    rgb = np.stack([x * 7, y * 10, (x + y) * 4], -1).astype(np.uint8)
    im = Image.fromarray(rgb)
    images = {"grey.png": im.convert("L"), "rgba.png": im.convert("RGBA"),
              "palette.png": im.convert("P"), "grey16.png": Image.fromarray(
                  (rgb[..., 0].astype(np.uint16) * 257)), "small.png": im.resize((9, 6))}
    for name, image in images.items():
        image.save(tmp_path / name)
    (tmp_path / "metadata.jsonl").write_text("\n".join(
        json.dumps({"file_name": n, "text": n}) for n in images))
    ds = ImageCaptionFolder(path=str(tmp_path), holdout_percent=0)
    batches = list(make_dataset(ds, image_size=12, batch_size=1, repeat=False, shuffle=False))
    got = {b["caption"].numpy()[0].decode(): b["image"].numpy()[0] for b in batches}
    assert set(got) == set(images)
    for name, image in got.items():
        assert image.shape == (12, 12, 3) and image.dtype == np.float32
        source = images[name]
        expected = (np.asarray(source, np.float32) / 257.0 if name == "grey16.png"
                    else np.asarray(source.convert("RGB"), np.float32))
        if expected.ndim == 2:
            expected = np.repeat(expected[..., None], 3, axis=-1)
        h, w = expected.shape[:2]
        side = min(h, w)
        square = expected[(h - side) // 2:(h - side) // 2 + side,
                          (w - side) // 2:(w - side) // 2 + side]
        reference = tf.image.resize(square, [12, 12], method="area" if side > 12 else
                                    "bilinear").numpy() / 255.0
        np.testing.assert_allclose(image, reference, atol=2.5 / 255, err_msg=name)


def test_a_file_given_as_the_folder(tmp_path):
    (tmp_path / "x.jpg").write_bytes(b"not a folder")
    with pytest.raises(ZooError, match=r"path '.*x\.jpg' is a file, not a folder"):
        ImageCaptionFolder(path=str(tmp_path / "x.jpg"))


def test_tfds_builder(folder, tmp_path):
    import tensorflow_datasets as tfds
    data = tfds.load("image_caption_folder", split="train", data_dir=str(tmp_path),
                     builder_kwargs={"path": folder})
    rows = sorted((e["file_name"].decode(), e) for e in tfds.as_numpy(data))
    assert [n for n, _ in rows] == ["img0.png", "img2.png", "img4.png", "sub/img1.jpg",
                                    "sub/img3.jpg", "sub/img5.jpg"]
    name, first = rows[0]
    assert first["caption"] == b"caption 0" and first["image"].shape == (40, 60, 3)
    assert first["score"] == b"0.0" and first["source"] == b"me"
    builder = tfds.builder("image_caption_folder", data_dir=str(tmp_path), path=folder)
    assert builder.is_prepared() and builder.info.splits["test"].num_examples == 1


# -- fuzz (issue 9): random metadata files never crash; they work or give a ZooError -----------

_cells = st.one_of(st.none(), st.text(max_size=12), st.integers(), st.floats(allow_nan=True),
                   st.lists(st.text(max_size=5), max_size=2), st.booleans())
_rows = st.lists(st.dictionaries(
    st.sampled_from(["file_name", "text", "other", "", "image", "x y"]), _cells, max_size=4),
    max_size=6)


@pytest.fixture(scope="module")
def fuzz_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    save_image(str(root / "a.png"), np.zeros((6, 6, 3), np.uint8))
    return root


def _load(root):
    try:
        ds = ImageCaptionFolder(path=str(root))
    except ZooError as e:
        assert str(e) and "\n" not in str(e)
        return None
    assert ds.num_examples("train") >= 1
    return ds


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(rows=_rows, junk=st.binary(max_size=60), use_csv=st.booleans())
def test_fuzz_metadata(fuzz_root, rows, junk, use_csv):
    for name in ("metadata.jsonl", "metadata.csv"):
        if (fuzz_root / name).exists():
            (fuzz_root / name).unlink()
    if use_csv:
        import csv
        import io
        keys = sorted({k for r in rows for k in r})
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=keys)
        writer.writeheader()
        for r in rows:
            writer.writerow({k: v for k, v in r.items()})
        (fuzz_root / "metadata.csv").write_bytes(buf.getvalue().encode("utf-8") + junk)
    else:
        text = "\n".join(json.dumps(r) for r in rows).encode("utf-8")
        (fuzz_root / "metadata.jsonl").write_bytes(text + b"\n" + junk)
    _load(fuzz_root)


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.binary(max_size=200), name=st.sampled_from(["b.png", "b.jpg", "b.gif", "b"]))
def test_fuzz_image_bytes(fuzz_root, data, name):
    for meta in ("metadata.jsonl", "metadata.csv"):
        if (fuzz_root / meta).exists():
            (fuzz_root / meta).unlink()
    (fuzz_root / name).write_bytes(data)
    (fuzz_root / "metadata.jsonl").write_text(
        json.dumps({"file_name": name, "text": "junk"}) + "\n"
        + json.dumps({"file_name": "a.png", "text": "ok"}) + "\n")
    rows, _, report = scan_folder(str(fuzz_root), quiet=True)
    kept = [r["file_name"] for r in rows]
    assert "a.png" in kept
    assert (name in kept) != (report.num_skipped == 1)


def test_extra_column_names():
    from zoo.data.folder import extra_keys
    assert extra_keys(["score", "x y", "image", "x_y", "1st", "file_name"]) == {
        "score": "score", "x y": "x_y", "image": "metadata_image", "x_y": "metadata_x_y",
        "1st": "_1st", "file_name": "metadata_file_name"}
