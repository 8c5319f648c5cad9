"""The shared pipeline: crop/resize, step-derived data order, tokens, captions, TFDS datasets."""

import io
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image

from helpers_data import save_image, train_spm
from zoo.data import captions, make_dataset, pipeline, shapes
from zoo.data.base import NoDownloadBuilderMixin
from zoo.errors import ZooError
from zoo.tokenizers.text import SentencePieceTokenizer


def _encode(array, fmt):
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt, quality=95)
    return buf.getvalue()


def _wide_image():
    """40 x 120: left third red, middle green, right third blue."""
    image = np.zeros((40, 120, 3), np.uint8)
    image[:, :40, 0] = 255
    image[:, 40:80, 1] = 255
    image[:, 80:, 2] = 255
    return image


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_centre_crop_preserves_aspect(fmt):
    out = pipeline.decode_and_crop(tf.constant(_encode(_wide_image(), fmt)), 20).numpy()
    assert out.shape == (20, 20, 3) and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 1.0
    # The centred square is the green middle: no red or blue squeezed in.
    assert out[..., 1].mean() > 0.9 and out[..., 0].mean() < 0.03 and out[..., 2].mean() < 0.03
    tall = np.ascontiguousarray(np.transpose(_wide_image(), (1, 0, 2)))
    out = pipeline.decode_and_crop(tf.constant(_encode(tall, fmt)), 20).numpy()
    assert out[..., 1].mean() > 0.9


def test_shrinking_is_anti_aliased_and_growing_works():
    checker = (np.indices((64, 64)).sum(axis=0) % 2 * 255).astype(np.uint8)
    checker = np.stack([checker] * 3, -1)
    small = pipeline.crop_pixels(tf.constant(checker), 16).numpy()
    assert np.allclose(small, 0.5, atol=0.01)  # no aliasing: every pixel is the average
    big = pipeline.crop_pixels(tf.constant(checker[:8, :8]), 20).numpy()
    assert big.shape == (20, 20, 3) and 0.0 <= big.min() and big.max() <= 1.0


def test_random_crop_is_seeded():
    data = tf.constant(_encode(_wide_image(), "PNG"))
    crops = [pipeline.decode_and_crop(data, 8, True, tf.constant([0, k], tf.int64)).numpy()
             for k in range(12)]
    again = pipeline.decode_and_crop(data, 8, True, tf.constant([0, 3], tf.int64)).numpy()
    assert np.array_equal(crops[3], again)
    assert len({c.mean(axis=(0, 1)).round(2).tobytes() for c in crops}) > 1
    grey = np.stack([_wide_image()[..., 0]] * 3, -1)
    out = pipeline.crop_pixels(tf.constant(grey), 10).numpy()
    assert out.shape == (10, 10, 3) and out.max() < 0.1  # centre third of red-only is black


def test_order_is_a_pure_function_of_seed_and_step():
    args = dict(image_size=16, batch_size=4, seed=7, train_size=10, max_objects=1)
    full = [b["index"].numpy().tolist() for b in make_dataset("synthetic_shapes", **args).take(6)]
    resumed = [b["index"].numpy().tolist()
               for b in make_dataset("synthetic_shapes", start_step=3, **args).take(3)]
    assert resumed == full[3:]
    flat = sum(full, [])
    assert sorted(flat[:10]) == list(range(10)) and sorted(flat[10:20]) == list(range(10))
    assert flat[:10] != flat[10:20]  # a new permutation each epoch
    other = [b["index"].numpy().tolist()
             for b in make_dataset("synthetic_shapes", **{**args, "seed": 8}).take(2)]
    assert other != full[:2]
    ordered = sum([b["index"].numpy().tolist() for b in make_dataset(
        "synthetic_shapes", shuffle=False, repeat=False, **args)], [])
    assert ordered == list(range(8))  # one epoch, last partial batch dropped
    # Same images for the same step, whatever the start.
    a = next(iter(make_dataset("synthetic_shapes", start_step=4, **args)))
    b = list(make_dataset("synthetic_shapes", **args).take(5))[4]
    assert np.array_equal(a["image"].numpy(), b["image"].numpy())
    assert a["caption"].numpy().tolist() == b["caption"].numpy().tolist()


def test_pipeline_batches_with_tokens(tmp_path):
    model = train_spm(tmp_path / "spm.model")
    tok = SentencePieceTokenizer(model, max_length=24)
    ds = make_dataset("synthetic_shapes", image_size=32, batch_size=5, tokenizer=tok, seed=1)
    batch = next(iter(ds))
    assert batch["image"].shape == (5, 32, 32, 3) and batch["image"].dtype == tf.float32
    assert batch["text_tokens"].shape == (5, 24) and batch["text_tokens"].dtype == tf.int32
    assert batch["text_mask"].dtype == tf.int32
    want = tok(batch["caption"])
    assert np.array_equal(batch["text_tokens"].numpy(), want["ids"].numpy())
    assert np.array_equal(batch["text_mask"].numpy(), want["mask"].numpy())
    for caption, image, index in zip(batch["caption"].numpy(), batch["image"].numpy(),
                                     batch["index"].numpy()):
        ex = shapes.generate(0, int(index), "train", image_size=32)
        assert caption.decode() == ex["caption"]
        assert np.allclose(image, ex["image"] / 255.0)
    by_path = make_dataset("synthetic_shapes", image_size=32, batch_size=2,
                           tokenizer=model, max_length=10)
    assert next(iter(by_path))["text_tokens"].shape == (2, 10)


def test_bad_arguments_are_clear():
    for kwargs, match in [({"image_size": 0}, "image_size"), ({"batch_size": 0}, "batch_size"),
                          ({"crop": "middle"}, "crop"), ({"start_step": -1}, "start_step"),
                          ({"split": "tran"}, "did you mean 'train'"),
                          ({"dataset": "shapes"}, "unknown dataset 'shapes'")]:
        with pytest.raises(ZooError, match=match):
            make_dataset(**kwargs)
    with pytest.raises(ZooError, match="no usable examples"):
        make_dataset("synthetic_shapes", train_size=0)
    with pytest.raises(ZooError, match="path is not set") as e:
        make_dataset("image_caption_folder")
    assert "\n" not in str(e.value)  # gin's "In call to configurable" lines are dropped


def test_a_broken_preprocessing_step_stops_the_pipeline(monkeypatch):
    """Only decoding may skip an example: a bug anywhere else is an error, not a lost example
    (with the old ignore_errors every example failed silently and iteration never ended)."""
    def broken(image, image_size, crop_random=False, seed_pair=None):
        image = tf.cast(image, tf.float32)
        tf.debugging.assert_less(tf.reduce_max(image), -1.0, message="broken preprocessing")
        return image
    monkeypatch.setattr(pipeline, "crop_pixels", broken)
    with pytest.raises(tf.errors.InvalidArgumentError, match="broken preprocessing"):
        list(make_dataset("synthetic_shapes", image_size=16, batch_size=2, repeat=False,
                          train_size=8))


def test_a_broken_tokenizer_stops_the_pipeline(tmp_path):
    def tokenizer(captions):
        tf.debugging.assert_equal(tf.size(captions), -1, message="broken tokenizer")
        return {}
    with pytest.raises(tf.errors.InvalidArgumentError, match="broken tokenizer"):
        next(iter(make_dataset("synthetic_shapes", image_size=16, batch_size=2,
                               tokenizer=tokenizer)))


def test_a_broken_folder_reader_stops_the_pipeline(tmp_path):
    """A file that vanishes after the scan is a read error (not a decode error): it stops."""
    from zoo.data.folder import ImageCaptionFolder
    for i in range(3):
        save_image(str(tmp_path / f"{i}.png"), np.full((8, 8, 3), 60 * i, np.uint8))
    (tmp_path / "metadata.csv").write_text("file_name,text\n0.png,a\n1.png,b\n2.png,c\n")
    ds = ImageCaptionFolder(path=str(tmp_path), holdout_percent=0)
    os.remove(tmp_path / "1.png")
    with pytest.raises(tf.errors.NotFoundError, match="1.png"):
        list(make_dataset(ds, image_size=8, batch_size=1, repeat=False, shuffle=False))


def test_captions_iterator():
    got = list(captions("synthetic_shapes", split="validation", max_sentences=5))
    assert got == [shapes.caption(0, i, "validation") for i in range(5)]
    assert pipeline.num_examples("synthetic_shapes", split="test", test_size=33) == 33


def test_coco_captions_not_prepared_says_how(tmp_path):
    with pytest.raises(ZooError) as e:
        make_dataset("coco_captions", data_dir=str(tmp_path))
    msg = str(e.value)
    assert "not prepared" in msg and "tfds build coco_captions" in msg and str(tmp_path) in msg
    assert not os.listdir(tmp_path)  # nothing downloaded or created


class FakeCocoCaptions(NoDownloadBuilderMixin, tfds.core.GeneratorBasedBuilder):
    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(encoding_format="jpeg"),
            "captions": tfds.features.Sequence({"text": np.str_, "id": np.int64})}))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(4), "val": self._generate_examples(2)}

    def _generate_examples(self, n):
        for i in range(n):
            image = np.full((20, 30, 3), 40 * i, np.uint8)
            yield i, {"image": image, "captions": [
                {"text": f"image {i} caption {j}", "id": j} for j in range(2)]}


def test_prepared_tfds_image_text_dataset(tmp_path):
    """A coco_captions-shaped TFDS dataset (several captions per image) read in order."""
    from zoo.data.coco import CocoCaptions

    builder = FakeCocoCaptions(data_dir=str(tmp_path))
    builder.download_and_prepare()
    coco = CocoCaptions(data_dir=str(tmp_path), name="fake_coco_captions")
    assert set(coco.splits()) >= {"train", "val", "validation"}
    texts = sorted(coco.captions("validation"))
    assert texts == ["image 0 caption 0", "image 0 caption 1", "image 1 caption 0",
                     "image 1 caption 1"]
    args = dict(image_size=8, batch_size=3, seed=2)
    batches = list(make_dataset(coco, **args).take(4))
    assert batches[0]["image"].shape == (3, 8, 8, 3)
    seen = [c.decode() for b in batches for c in b["caption"].numpy()]
    assert len(set(seen[:8])) == 8  # one example per caption, an epoch before repeats
    resumed = next(iter(make_dataset(coco, start_step=2, **args)))
    assert resumed["caption"].numpy().tolist() == batches[2]["caption"].numpy().tolist()
    first_only = CocoCaptions(data_dir=str(tmp_path), name="fake_coco_captions",
                              all_captions=False)
    assert len(list(first_only.captions("train"))) == 4


def test_folder_and_shapes_agree_on_pixels(tmp_path):
    ex = shapes.generate(0, 3, image_size=32)
    save_image(str(tmp_path / "a.png"), ex["image"])
    (tmp_path / "metadata.jsonl").write_text('{"file_name": "a.png", "text": "x"}\n')
    batch = next(iter(make_dataset("image_caption_folder", path=str(tmp_path), image_size=32,
                                   batch_size=1)))
    assert np.allclose(batch["image"].numpy()[0], ex["image"] / 255.0, atol=1e-6)
