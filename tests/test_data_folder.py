"""image_caption_folder: ImageFolder metadata, broken files skipped and counted, TFDS, fuzzing."""

import json
import logging

import numpy as np
import pytest
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


def test_decode_failures_after_the_scan_are_dropped_not_fatal(tmp_path):
    save_image(str(tmp_path / "good.png"), np.full((10, 12, 3), 200, np.uint8))
    (tmp_path / "junk.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 50)
    (tmp_path / "metadata.jsonl").write_text(
        json.dumps({"file_name": "junk.png", "text": "junk"}) + "\n"
        + json.dumps({"file_name": "good.png", "text": "good"}) + "\n")
    ds = ImageCaptionFolder(path=str(tmp_path), verify="none")
    assert ds.num_examples("train") == 2  # the scan was told not to look
    batches = list(make_dataset(ds, image_size=8, batch_size=1, repeat=False, shuffle=False))
    assert [b["caption"].numpy().tolist() for b in batches] == [[b"good"]]


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
