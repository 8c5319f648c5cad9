"""Prompt sets for sampling and evaluation: PartiPrompts TSV, plain text files, shapes captions.

    load_prompts("partiprompts")            # PartiPrompts, shipped in zoo/eval/data/
    load_prompts("my_prompts.tsv")          # any TSV with a `Prompt` column (+ Category, ...)
    load_prompts("my_prompts.txt")          # one prompt per line
    load_prompts("shapes")                  # held-out captions of the synthetic shapes data
    select(prompts, 64)                     # a subset that keeps every category represented

A TSV is split on tabs, never with csv quoting rules: PartiPrompts has prompts that start with
a double quote (`"G I G G L E" painted in ...`), which csv's default dialect would strip.
"""

import dataclasses
import importlib.resources
import os
from pathlib import Path
from typing import Dict, List, Optional

from zoo.errors import ZooError

# The published PartiPrompts set (Apache 2.0), package data of zoo (see data/README.md).
PARTIPROMPTS_RESOURCE = ("zoo.eval", "data/PartiPrompts.tsv")
PARTIPROMPTS_ENV = "ZOO_PARTIPROMPTS"  # another copy instead
SHAPES_NAMES = ("shapes", "synthetic_shapes")
DEFAULT_SHAPES_PROMPTS = 64


@dataclasses.dataclass(frozen=True)
class Prompt:
    """One prompt and what is known about it (PartiPrompts columns when read from a TSV)."""

    text: str
    category: Optional[str] = None
    challenge: Optional[str] = None
    note: Optional[str] = None
    source: str = ""  # "file:line" it came from, for messages

    def to_json(self) -> Dict[str, str]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v not in (None, "")}


def partiprompts_path() -> Path:
    """The PartiPrompts TSV: $ZOO_PARTIPROMPTS, else the copy installed with zoo."""
    if os.environ.get(PARTIPROMPTS_ENV):
        return Path(os.environ[PARTIPROMPTS_ENV])
    package, name = PARTIPROMPTS_RESOURCE
    return Path(str(importlib.resources.files(package).joinpath(name)))


def load_prompts(spec: str, limit: Optional[int] = None, seed: int = 0,
                 shapes_config=None) -> List[Prompt]:
    """Prompts from a name (`partiprompts`, `shapes`) or a file (`.tsv`, else one per line).

    Args:
        spec: what to load (see the module docstring).
        limit: at most this many (a category-balanced subset, see `select`); None for all.
        seed: for `shapes`, the dataset seed the held-out captions are drawn with.
        shapes_config: for `shapes`, the `ShapesConfig` of the training data.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ZooError(f"prompt set must be a file or one of partiprompts, shapes; got {spec!r}")
    spec = spec.strip()
    if spec.lower() in ("partiprompts", "parti", "p2"):
        path = partiprompts_path()
        if not path.is_file():
            where = (f"${PARTIPROMPTS_ENV} names" if os.environ.get(PARTIPROMPTS_ENV) else
                     "zoo ships it as package data at")
            raise ZooError(f"PartiPrompts file {str(path)!r} not found ({where} it); reinstall "
                           f"zoo, or get PartiPrompts.tsv from https://github.com/google-research/"
                           f"parti and pass its path with --prompts=<path>")
        prompts = read_tsv(path)
    elif spec.lower() in SHAPES_NAMES:
        return shapes_prompts(limit or DEFAULT_SHAPES_PROMPTS, seed=seed, config=shapes_config)
    else:
        path = Path(spec).expanduser()
        if not path.exists():
            raise ZooError(f"prompt file {spec!r} does not exist; pass a .tsv with a Prompt "
                           f"column, a .txt with one prompt per line, or one of: partiprompts, "
                           f"shapes")
        if path.is_dir():
            raise ZooError(f"prompt file {spec!r} is a directory; pass a .tsv or .txt file")
        prompts = read_tsv(path) if path.suffix.lower() == ".tsv" else read_lines(path)
    return select(prompts, limit) if limit is not None else prompts


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise ZooError(f"prompt file {str(path)!r} is not UTF-8: byte 0x{data[e.start]:02x} at "
                       f"byte offset {e.start} (line {line}); re-save it as UTF-8, e.g. "
                       f"iconv -f latin1 -t utf-8 {path} > fixed.txt") from None
    if text.startswith("\ufeff"):  # a BOM from some editors
        text = text[1:]
    if not text.strip():
        raise ZooError(f"prompt file {str(path)!r} is empty; write one prompt per line "
                       f"(or a TSV with a Prompt column)")
    return text


def _lines(text: str) -> List[str]:
    lines = text.split("\n")
    while lines and not lines[-1].strip():  # trailing newlines are not empty prompts
        lines.pop()
    return [line.rstrip("\r") for line in lines]


def read_lines(path) -> List[Prompt]:
    """A plain text file, one prompt per line; an empty line is an error (it is usually a slip)."""
    path = Path(path)
    prompts = []
    for number, line in enumerate(_lines(_read_text(path)), start=1):
        text = line.strip()
        if not text:
            raise ZooError(f"prompt file {str(path)!r} line {number} is empty; remove the blank "
                           f"line (every line is one prompt)")
        prompts.append(Prompt(text, source=f"{path.name}:{number}"))
    return prompts


def read_tsv(path) -> List[Prompt]:
    """A PartiPrompts-style TSV: header with `Prompt` (+ optional Category, Challenge, Note)."""
    path = Path(path)
    lines = _lines(_read_text(path))
    header = [h.strip() for h in lines[0].split("\t")]
    lowered = [h.lower() for h in header]
    if "prompt" not in lowered:
        raise ZooError(f"prompt file {str(path)!r} has no 'Prompt' column in its header (found: "
                       f"{', '.join(repr(h) for h in header)}); the first line must name the "
                       f"tab-separated columns, e.g. Prompt<TAB>Category<TAB>Challenge<TAB>Note")
    column = {name: lowered.index(name) if name in lowered else None
              for name in ("prompt", "category", "challenge", "note")}
    prompts = []
    for number, line in enumerate(lines[1:], start=2):
        cells = line.split("\t")

        def cell(name):
            i = column[name]
            value = cells[i].strip() if i is not None and i < len(cells) else ""
            return value or None

        text = cell("prompt")
        if not text:
            raise ZooError(f"prompt file {str(path)!r} line {number} has an empty prompt; fill in "
                           f"the Prompt column or delete the line")
        prompts.append(Prompt(text, category=cell("category"), challenge=cell("challenge"),
                              note=cell("note"), source=f"{path.name}:{number}"))
    if not prompts:
        raise ZooError(f"prompt file {str(path)!r} has a header but no prompts; add rows below it")
    return prompts


def select(prompts: List[Prompt], limit: int) -> List[Prompt]:
    """At most `limit` prompts, deterministic, round-robin over categories in file order.

    With `limit` below the number of categories the first categories win; without categories
    it is simply the first `limit` prompts.
    """
    if int(limit) < 1:
        raise ZooError(f"number of prompts must be at least 1, got {limit}")
    limit = int(limit)
    if limit >= len(prompts):
        return list(prompts)
    groups: Dict[Optional[str], List[Prompt]] = {}
    for p in prompts:
        groups.setdefault(p.category, []).append(p)
    queues = [list(g) for g in groups.values()]
    picked = set()
    depth = 0
    while len(picked) < limit:
        for q in queues:
            if depth < len(q) and len(picked) < limit:
                picked.add(id(q[depth]))
        depth += 1
    return [p for p in prompts if id(p) in picked]


def shapes_prompts(count: int = DEFAULT_SHAPES_PROMPTS, seed: int = 0,
                   config=None) -> List[Prompt]:
    """Held-out captions of the built-in synthetic shapes data (its `test` split).

    The test split draws only caption meanings that never occur in training, so these prompts
    ask for combinations a model trained on the shapes data has not seen. Grouped in the
    gallery by how many objects they describe.

    Args:
        count: how many prompts.
        seed: the dataset seed (use the training data's, so held-out really means held out).
        config: a `zoo.data.shapes.ShapesConfig` (the training data's), default settings if None.
    """
    if int(count) < 1:
        raise ZooError(f"number of prompts must be at least 1, got {count}")
    from zoo.data import shapes
    prompts = []
    for i in range(int(count)):
        text = shapes.caption(seed, i, "test", config)
        n = sum(g.count for g in shapes.parse_caption(text))
        prompts.append(Prompt(text, category=f"{n} object{'s' if n > 1 else ''}",
                              source=f"shapes test split, seed {seed}, index {i}"))
    return prompts
