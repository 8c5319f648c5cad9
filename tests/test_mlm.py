"""Masked-LM pretraining: BERT masking (15%, 80/10/10), text sources, training lowers the loss."""

import numpy as np
import pytest
import tensorflow as tf

import zoo.tokenizers  # noqa: F401  (registers sentencepiece)
import zoo.text_encoders  # noqa: F401
from text_encoder_helpers import TINY_ENCODER, captions, mlm_run, spm_model
from zoo.data import text_sources
from zoo.errors import ZooError
from zoo.text_encoders import mlm


def _mask(seed, ids, mask, **kw):
    args = dict(vocab_size=1000, mask_id=3, special_ids=[0, 1], max_predictions=20)
    args.update(kw)
    out = mlm.mask_tokens(tf.constant(ids), tf.constant(mask), seed=tf.constant(seed, tf.int64),
                          **args)
    return {k: v.numpy() for k, v in out.items()}


def test_bert_masking_rates_and_targets():
    rng = np.random.default_rng(0)
    b, length = 2000, 64
    lengths = rng.integers(2, length + 1, size=b)
    mask = (np.arange(length)[None] < lengths[:, None]).astype(np.int32)
    ids = rng.integers(4, 1000, size=(b, length)).astype(np.int32)
    ids[np.arange(b), lengths - 1] = 1  # EOS
    ids[mask == 0] = 0
    out = _mask([7, 1], ids, mask)
    weights, positions = out["mlm_weights"], out["mlm_positions"]
    # 15% of each text's real tokens (EOS and padding excluded), at least one, at most 20.
    real = lengths - 1
    expected = np.clip(np.round(real * 0.15), 1, 20)
    np.testing.assert_array_equal(weights.sum(1), expected)
    rows = np.repeat(np.arange(b)[:, None], 20, 1)
    chosen = positions[weights > 0], rows[weights > 0]
    assert (chosen[0] < real[chosen[1]]).all(), "a special token or padding was chosen"
    assert len(set(zip(chosen[1], chosen[0]))) == len(chosen[0]), "a position chosen twice"
    np.testing.assert_array_equal(out["mlm_targets"][weights > 0], ids[chosen[1], chosen[0]])
    # 80% mask token, 10% random token, 10% unchanged.
    new = out["text_tokens"][chosen[1], chosen[0]]
    old = ids[chosen[1], chosen[0]]
    n = len(new)
    masked = (new == 3).mean()
    kept = (new == old).mean()
    changed = ((new != 3) & (new != old)).mean()
    assert abs(masked - 0.8) < 0.02 and abs(kept - 0.1) < 0.015 and abs(changed - 0.1) < 0.015, \
        (masked, kept, changed, n)
    # Nothing else changes.
    untouched = np.ones_like(ids, bool)
    untouched[chosen[1], chosen[0]] = False
    np.testing.assert_array_equal(out["text_tokens"][untouched], ids[untouched])
    # Deterministic in the seed, different for another.
    again = _mask([7, 1], ids, mask)
    np.testing.assert_array_equal(again["text_tokens"], out["text_tokens"])
    other = _mask([7, 2], ids, mask)
    assert (other["mlm_positions"] != positions).any()


def test_short_texts_pad_predictions():
    ids = np.array([[5, 6, 1, 0], [0, 0, 0, 0]], np.int32)
    out = _mask([0, 0], ids, (ids > 0).astype(np.int32), max_predictions=6)
    assert out["mlm_positions"].shape == (2, 6)
    np.testing.assert_array_equal(out["mlm_weights"].sum(1), [1, 0])


def _task(tmp_path, **kw):
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(captions()) + "\n\n")
    args = dict(encoder="parti_encoder", encoder_options=TINY_ENCODER,
                tokenizer_options={"model_path": spm_model(), "max_length": 16},
                text_files=[str(corpus)])
    args.update(kw)
    return mlm.MLMTask(**args)


def test_mlm_lowers_loss_through_the_training_loop():
    model_dir, result = mlm_run()
    assert result.step == 60
    from zoo.train import run_info
    info = run_info.read(model_dir)
    assert info["task"] == "mlm"
    # Loss at the end well below the start (ln(vocab) ~ 3.7 at initialisation).
    first = mlm.MLMTask(**info["task_config"])
    first.build()
    batch = next(iter(first.dataset(64, seed=5)))
    initial = float(first.losses(batch, training=False)[0]["mlm"])
    from zoo.train.loop import load_task
    trained = load_task(model_dir)
    final = float(trained.losses(batch, training=False)[0]["mlm"])
    assert final < initial - 1.0, (initial, final)


def test_config_rebuilds_without_gin_and_data_is_resumable(tmp_path):
    task = _task(tmp_path)
    config = task.config()
    assert config["encoder_options"]["width"] == 32 and config["mask_id"] == 2  # SP unk
    assert mlm.MLMTask(**config).config() == config
    full = [b["text_tokens"].numpy() for b in task.dataset(4, seed=3).take(3)]
    resumed = next(iter(task.dataset(4, seed=3, start_step=2)))["text_tokens"].numpy()
    np.testing.assert_array_equal(full[2], resumed)


def test_text_from_registered_dataset_captions():
    texts = text_sources.load_texts(dataset="synthetic_shapes", max_texts=50)
    assert len(texts) == 50 and all(isinstance(t, str) and t for t in texts)
    from zoo.data import shapes
    assert texts[3] == shapes.caption(0, 3, "train")


def test_text_sources_errors(tmp_path):
    with pytest.raises(ZooError, match="exactly one text source"):
        _task(tmp_path, text_files=[])
    with pytest.raises(ZooError, match="exactly one text source"):
        _task(tmp_path, dataset="synthetic_shapes")
    with pytest.raises(ZooError, match="text file 'nope/\\*.txt' not found"):
        text_sources.load_texts(text_files=["nope/*.txt"])
    (tmp_path / "empty.txt").write_text("\n  \n")
    with pytest.raises(ZooError, match="no text found"):
        text_sources.load_texts(text_files=[str(tmp_path / "empty.txt")])
    with pytest.raises(ZooError, match="mask_rate"):
        _task(tmp_path, mask_rate=1.5)


def test_c4_absent_says_how_to_prepare(tmp_path):
    task = _task(tmp_path, text_files=[], tfds_name="c4/en", data_dir=str(tmp_path / "tfds"))
    with pytest.raises(ZooError, match=r"'c4/en' is not in data_dir .*never downloads.*tfds "
                                       r"build c4/en"):
        task.dataset(4, seed=0)
    assert not (tmp_path / "tfds").exists()  # nothing was downloaded or created
