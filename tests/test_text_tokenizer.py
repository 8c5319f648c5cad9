"""SentencePieceTokenizer: ids equal python sentencepiece's, padding/EOS/mask/truncation, graph use."""

import os

import numpy as np
import pytest
import sentencepiece
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers_data import VARIED_TEXT, train_spm
from zoo.errors import ZooError
from zoo.registry import TEXT_TOKENIZERS
from zoo.tokenizers.text import SentencePieceTokenizer

TRICKY = VARIED_TEXT + ["", " ", "\t\n", "x", "   leading and trailing   ",
                        "a" * 500, "word " * 200, "UPPER lower MiXeD", "\u00a0nbsp\u2003em",
                        "zero\u200bwidth", "combining e\u0301 accents"]


@pytest.fixture(scope="session", params=["unigram", "bpe"])
def spm_model(request, tmp_path_factory):
    return train_spm(tmp_path_factory.mktemp("spm") / f"{request.param}.model", request.param)


@pytest.fixture(scope="session")
def unigram_model(tmp_path_factory):
    return train_spm(tmp_path_factory.mktemp("spm1") / "u.model", "unigram")


def python_ids(model, text):
    return sentencepiece.SentencePieceProcessor(model_file=model).encode(text)


def test_ids_equal_python_sentencepiece(spm_model):
    tok = SentencePieceTokenizer(spm_model, max_length=1024)
    out = tok(TRICKY)
    ids, mask = out["ids"].numpy(), out["mask"].numpy()
    for row, (text, r, m) in enumerate(zip(TRICKY, ids, mask)):
        want = python_ids(spm_model, text) + [tok.eos_id]
        n = int(m.sum())
        assert list(r[:n]) == want, (row, text)
        assert (r[n:] == tok.pad_id).all() and (m[:n] == 1).all() and (m[n:] == 0).all()
    assert not out["truncated"].numpy().any()
    assert tok.pad_id == 0 and tok.eos_id == 1
    assert tok.vocab_size == sentencepiece.SentencePieceProcessor(
        model_file=spm_model).get_piece_size()


def test_truncation_is_reported_and_keeps_eos(unigram_model):
    sp = sentencepiece.SentencePieceProcessor(model_file=unigram_model)
    text = "the quick brown fox jumps over the lazy dog"
    n = len(sp.encode(text))
    fits = SentencePieceTokenizer(unigram_model, max_length=n + 1)(text)
    assert not bool(fits["truncated"]) and int(fits["mask"].numpy().sum()) == n + 1
    cut = SentencePieceTokenizer(unigram_model, max_length=n)([text, "x"])
    assert cut["truncated"].numpy().tolist() == [True, False]
    ids = cut["ids"].numpy()[0]
    assert list(ids) == sp.encode(text)[: n - 1] + [1]
    no_eos = SentencePieceTokenizer(unigram_model, max_length=n, add_eos=False)(text)
    assert list(no_eos["ids"].numpy()) == sp.encode(text) and not bool(no_eos["truncated"])


def test_scalar_input_and_shapes(unigram_model):
    tok = SentencePieceTokenizer(unigram_model, max_length=16)
    out = tok("a red circle")
    assert out["ids"].shape == (16,) and out["mask"].shape == (16,)
    assert out["truncated"].shape == () and out["ids"].dtype == tf.int32
    assert out["mask"].dtype == tf.int32
    with pytest.raises(ZooError, match="string or a vector"):
        tok([["a", "b"]])


def test_detokenize_round_trip(unigram_model):
    tok = SentencePieceTokenizer(unigram_model, max_length=64)
    sp = sentencepiece.SentencePieceProcessor(model_file=unigram_model)
    texts = ["a red circle at the top left", "two blue squares", ""]
    back = tok.detokenize(tok(texts)["ids"]).numpy()
    assert [b.decode() for b in back] == [sp.decode(sp.encode(t)) for t in texts]
    assert tok.detokenize(tok(texts[0])["ids"]).numpy().decode() == texts[0]
    # Out-of-vocabulary ids and garbage after EOS do not crash.
    weird = tf.constant([[5, 99999, -3, 1, 7, 7]])
    assert tok.detokenize(weird).shape == (1,)


def test_works_in_tf_data_and_tf_function_and_saved_model(unigram_model, tmp_path):
    tok = SentencePieceTokenizer(unigram_model, max_length=12)
    want = tok(["a red circle", "two squares"])["ids"].numpy()
    ds = tf.data.Dataset.from_tensor_slices(["a red circle", "two squares"]).map(
        lambda s: tok(s)["ids"], num_parallel_calls=2).batch(2)
    assert (next(iter(ds)).numpy() == want).all()

    module = tf.Module()
    module.tok = tok
    module.f = tf.function(lambda s: tok(s)["ids"],
                           input_signature=[tf.TensorSpec([None], tf.string)])
    assert (module.f(tf.constant(["a red circle", "two squares"])).numpy() == want).all()
    tf.saved_model.save(module, str(tmp_path / "sm"))
    loaded = tf.saved_model.load(str(tmp_path / "sm"))
    assert (loaded.f(tf.constant(["a red circle", "two squares"])).numpy() == want).all()


def test_missing_or_bad_model_file(tmp_path):
    path = tmp_path / "nope" / "spm.model"
    with pytest.raises(ZooError) as e:
        SentencePieceTokenizer(str(path))
    assert str(path) in str(e.value) and "zoo-train-spm" in str(e.value)
    bad = tmp_path / "bad.model"
    bad.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ZooError, match="not a valid SentencePiece model"):
        SentencePieceTokenizer(str(bad))
    with pytest.raises(ZooError, match="directory"):
        SentencePieceTokenizer(str(tmp_path))


def test_bad_max_length(unigram_model):
    for bad in (0, -1, 1.5, "8"):
        with pytest.raises(ZooError, match="max_length"):
            SentencePieceTokenizer(unigram_model, max_length=bad)


def test_registered_and_gin_configurable(unigram_model, gin_clean):
    import gin
    assert "sentencepiece" in TEXT_TOKENIZERS
    gin.parse_config(f"sentencepiece.model_path = '{unigram_model}'\n"
                     "sentencepiece.max_length = 9")
    tok = TEXT_TOKENIZERS.create("sentencepiece")
    assert tok.max_length == 9 and tok("a")["ids"].shape == (9,)
    assert tok.get_config() == {"model_path": unigram_model, "max_length": 9, "add_eos": True}
    assert SentencePieceTokenizer(**tok.get_config()).max_length == 9


# -- fuzz (issue 9): random text and bytes never crash the tokenizer ---------------------------

@pytest.fixture(scope="module")
def fuzz_tok(unigram_model):
    return SentencePieceTokenizer(unigram_model, max_length=32)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(texts=st.lists(st.text(max_size=80), min_size=1, max_size=4))
def test_fuzz_text_matches_python(fuzz_tok, texts):
    out = fuzz_tok(texts)
    ids, mask = out["ids"].numpy(), out["mask"].numpy()
    sp = fuzz_tok._processor  # noqa: SLF001
    for text, r, m, cut in zip(texts, ids, mask, out["truncated"].numpy()):
        want = sp.encode(text)
        n = int(m.sum())
        assert cut == (len(want) > 31)
        assert list(r[: n - 1]) == want[:31] and r[n - 1] == fuzz_tok.eos_id
        assert ((r >= 0) & (r < fuzz_tok.vocab_size)).all()


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.lists(st.binary(max_size=80), min_size=1, max_size=4))
def test_fuzz_bytes_never_crash(fuzz_tok, data):
    out = fuzz_tok(tf.constant(data, dtype=tf.string))
    ids = out["ids"].numpy()
    assert ids.shape == (len(data), 32)
    assert ((ids >= 0) & (ids < fuzz_tok.vocab_size)).all()
    assert fuzz_tok.detokenize(ids).shape == (len(data),)


def test_model_file_is_not_left_half_written(tmp_path):
    # The trainer writes atomically: only the final files remain next to the model.
    path = train_spm(tmp_path / "m.model")
    assert sorted(os.listdir(tmp_path)) == ["m.model", "m.vocab"]
    assert np.asarray(SentencePieceTokenizer(path)("a")["ids"]).shape == (128,)
