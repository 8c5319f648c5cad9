"""zoo-train-spm and train_sentencepiece: models from datasets / text files, size advice."""

import json
import os
import subprocess
import sys

import pytest
import sentencepiece

from helpers_data import corpus, make_shapes_folder
from zoo.errors import ZooError
from zoo.tokenizers.spm_training import VocabSizeError, train_sentencepiece

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_trains_model_with_zoo_special_ids(tmp_path):
    path = train_sentencepiece(corpus(), str(tmp_path / "a" / "spm.model"), vocab_size=100)
    sp = sentencepiece.SentencePieceProcessor(model_file=path)
    assert sp.get_piece_size() == 100
    assert (sp.pad_id(), sp.eos_id(), sp.unk_id(), sp.bos_id()) == (0, 1, 2, -1)
    assert os.path.exists(tmp_path / "a" / "spm.vocab")
    assert sp.decode(sp.encode("a red circle at the top left")) == "a red circle at the top left"


def test_same_text_gives_the_same_model_bytes(tmp_path):
    a = train_sentencepiece(corpus(200), str(tmp_path / "a" / "spm.model"), vocab_size=120,
                            shrink_to_fit=True)
    b = train_sentencepiece(corpus(200), str(tmp_path / "b" / "spm.model"), vocab_size=120,
                            shrink_to_fit=True)
    assert open(a, "rb").read() == open(b, "rb").read()


@pytest.mark.parametrize("model_type", ["bpe", "char", "word"])
def test_model_types(tmp_path, model_type):
    path = train_sentencepiece(corpus(100), str(tmp_path / "m.model"), vocab_size=60,
                               model_type=model_type, shrink_to_fit=True)
    sp = sentencepiece.SentencePieceProcessor(model_file=path)
    assert sp.encode("a red circle") and sp.eos_id() == 1


def test_too_large_vocab_suggests_a_size_that_works(tmp_path):
    texts = [f"a red circle number {i % 7}" for i in range(200)]
    with pytest.raises(VocabSizeError) as e:
        train_sentencepiece(texts, str(tmp_path / "m.model"), vocab_size=16000)
    msg = str(e.value)
    assert "vocab_size=16000" in msg and f"--vocab_size={e.value.suggested}" in msg
    assert 0 < e.value.suggested < 16000 and "\n" not in msg
    assert not os.path.exists(tmp_path / "m.model")
    path = train_sentencepiece(texts, str(tmp_path / "m.model"), vocab_size=e.value.suggested)
    assert sentencepiece.SentencePieceProcessor(model_file=path).get_piece_size() == \
        e.value.suggested
    path = train_sentencepiece(texts, str(tmp_path / "n.model"), vocab_size=16000,
                               shrink_to_fit=True)
    assert sentencepiece.SentencePieceProcessor(model_file=path).get_piece_size() == \
        e.value.suggested


def test_too_small_vocab_for_the_characters(tmp_path):
    with pytest.raises(VocabSizeError, match="characters") as e:
        train_sentencepiece(["hello world, the quick brown fox"] * 5, str(tmp_path / "m.model"),
                            vocab_size=6)
    assert e.value.suggested > 6


def test_bad_arguments(tmp_path):
    out = str(tmp_path / "m.model")
    with pytest.raises(ZooError, match="model_type"):
        train_sentencepiece(["a b"], out, vocab_size=10, model_type="wordpiece")
    with pytest.raises(ZooError, match="vocab_size"):
        train_sentencepiece(["a b"], out, vocab_size=0)
    with pytest.raises(ZooError, match="no text"):
        train_sentencepiece(["", "   "], out, vocab_size=10)
    with pytest.raises(ZooError, match="file path"):
        train_sentencepiece(["a b"], str(tmp_path), vocab_size=10)


def test_text_sources(tmp_path):
    from zoo.data.text_sources import texts
    good = tmp_path / "a.txt"
    good.write_text("\ufefffirst line\n\n  second line  \n", encoding="utf-8")
    assert list(texts(None, [str(good)])) == ["first line", "second line"]
    assert list(texts("synthetic_shapes", [str(good)], max_sentences=3))[2].startswith(
        ("a", "t"))
    bad = tmp_path / "b.txt"
    bad.write_bytes(b"ok\ncaf\xe9\n")
    with pytest.raises(ZooError, match="not UTF-8 .line 2"):
        list(texts(None, [str(bad)]))
    with pytest.raises(ZooError, match="not found"):
        list(texts(None, [str(tmp_path / "nope.txt")]))


def test_one_text_source_module_serves_spm_and_mlm(tmp_path):
    """zoo.data.text_sources reads files the same way for the stream (zoo-train-spm) and the
    in-memory list (mlm): globs in sorted order, UTF-8 only, a limit across files."""
    from zoo.data.text_sources import load_texts, texts
    (tmp_path / "b.txt").write_text("three\nfour\n", encoding="utf-8")
    (tmp_path / "a.txt").write_text("one\n\ntwo\n", encoding="utf-8")
    pattern = str(tmp_path / "*.txt")
    assert list(texts(None, [pattern])) == ["one", "two", "three", "four"]
    assert load_texts(text_files=[pattern], max_texts=3) == ["one", "two", "three"]
    (tmp_path / "c.txt").write_bytes(b"caf\xe9\n")
    with pytest.raises(ZooError, match="c.txt' is not UTF-8 .line 1"):
        load_texts(text_files=[pattern])


def _run_tool(*args):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "ZOO_DISABLE_PLUGIN_AUTOLOAD": "1"}
    return subprocess.run([sys.executable, "-m", "tools.train_spm", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_tool_on_a_folder_via_gin_binding(tmp_path):
    folder = make_shapes_folder(str(tmp_path / "images"), n=40, image_size=24, fmt="png")
    with open(os.path.join(folder, "notes.txt"), "w") as f:
        f.write("the quick brown fox\njumps over the lazy dog\n")
    out = tmp_path / "spm" / "spm.model"
    r = _run_tool("--dataset=image_caption_folder",
                  f"--gin_bindings=image_caption_folder.path = '{folder}'",
                  f"--text_file={os.path.join(folder, 'notes.txt')}",
                  f"--output={out}", "--vocab_size=40", "--model_type=bpe")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "wrote" in r.stdout and out.exists()
    sp = sentencepiece.SentencePieceProcessor(model_file=str(out))
    caption = json.loads(open(os.path.join(folder, "metadata.jsonl")).readline())["text"]
    assert sp.decode(sp.encode(caption)) == caption
