"""Plain-text sources for SentencePiece and masked-LM training: text files and dataset captions."""

import os
from typing import Iterable, Iterator, Optional, Sequence

from zoo.errors import ZooError


def read_text_file(path: str) -> Iterator[str]:
    """Non-empty lines of a UTF-8 text file (one sentence per line), stripped."""
    path = os.path.expanduser(os.fspath(path))
    if not os.path.isfile(path):
        raise ZooError(f"text file {path!r} not found")
    with open(path, "rb") as f:
        offset = 0
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise ZooError(f"text file {path!r} is not UTF-8 (line {lineno}, byte "
                               f"{offset + e.start}); convert it, e.g. iconv -f latin1 -t utf-8")
            offset += len(raw)
            if lineno == 1:
                line = line.lstrip("\ufeff")
            line = line.strip()
            if line:
                yield line


def texts(dataset: Optional[str] = None, text_files: Sequence[str] = (), split: str = "train",
          max_sentences: Optional[int] = None, **dataset_args) -> Iterator[str]:
    """Sentences from text files, then from a registered dataset's captions, up to a limit."""
    if not dataset and not text_files:
        raise ZooError("no text to read: give a dataset (e.g. synthetic_shapes) or text files")
    sources = []
    for path in text_files:
        sources.append(read_text_file(path))
    if dataset:
        from zoo.data.pipeline import captions
        sources.append(captions(dataset, split=split, **dataset_args))
    return _take(_chain(sources), max_sentences)


def _chain(iterables: Iterable[Iterable[str]]) -> Iterator[str]:
    for it in iterables:
        yield from it


def _take(it: Iterator[str], limit: Optional[int]) -> Iterator[str]:
    if limit is not None and limit < 1:
        raise ZooError(f"max_sentences must be positive, got {limit}")
    for i, text in enumerate(it):
        if limit is not None and i >= limit:
            return
        yield text
