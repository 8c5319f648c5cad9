"""`image_caption_folder`: your own images with captions (the Hugging Face ImageFolder layout).

    my_images/
      metadata.jsonl        {"file_name": "0001.jpg", "text": "a red bicycle", "source": "me"}
      0001.jpg
      more/0002.png         (subfolders are fine; file_name is relative to the metadata file)

`metadata.csv` with a header row works the same way, and each folder may have its own metadata
file. Top-level folders named `train`, `validation` (or `val`, `valid`) and `test` make splits;
everything else is `train`. Columns other than `file_name` and `text` are kept as string
features (non-string values as JSON), named after the column (non-identifier characters become
`_`; a name the pipeline uses itself, such as `image`, gets a `metadata_` prefix).

Train on it by binding the path, e.g.

    zoo-train-spm --dataset=image_caption_folder \
        --gin_bindings="image_caption_folder.path='/my/images'" --output=/my/spm.model
    zoo-train ... --gin_bindings="image_caption_folder.path='/my/images'"

A missing, corrupt or unsupported image file, or a row without a caption, is skipped and
counted, with one summary line naming how many and the first few files (the pipeline also skips,
counts and names an image that passed the scan but fails to decode). A metadata file without the
image or caption column is an error naming the columns it has; any other error stops the run.
"""

import concurrent.futures
import csv
import hashlib
import io
import json
import logging
import math
import os
import re
import zlib
from typing import Dict, List, Optional, Tuple

import tensorflow as tf
import tensorflow_datasets as tfds

from zoo.data.base import CaptionDataset, NoDownloadBuilderMixin
from zoo.errors import ZooError
from zoo.registry import DATASETS

log = logging.getLogger("zoo")

METADATA_NAMES = ("metadata.jsonl", "metadata.csv")
SPLIT_DIRS = {"train": "train", "validation": "validation", "val": "validation",
              "valid": "validation", "test": "test"}
# Formats TensorFlow decodes (tf.io.decode_image), as PIL names them.
SUPPORTED_FORMATS = {"JPEG": "jpeg", "PNG": "png", "GIF": "gif", "BMP": "bmp", "WEBP": "webp"}
RESERVED = ("image", "image_bytes", "caption", "index", "text_tokens", "text_mask",
            "text_truncated", "image_codes")
VERIFY_MODES = ("header", "full", "none")
HELDOUT_SPLITS = ("test", "validation")  # the held-out split: the first of these that exists


class ScanReport:
    """What a folder scan kept and skipped, with one summary line."""

    def __init__(self):
        self.kept = 0
        self.skipped: Dict[str, List[str]] = {}  # reason -> files (or "metadata:line")

    def skip(self, reason: str, what: str):
        self.skipped.setdefault(reason, []).append(what)

    @property
    def num_skipped(self) -> int:
        return sum(len(v) for v in self.skipped.values())

    def details(self) -> str:
        """'skipped N of M rows (reasons): first files' on one line."""
        reasons = ", ".join(f"{len(v)} {k}" for k, v in sorted(self.skipped.items()))
        first = [_show(f) for v in self.skipped.values() for f in v][:5]
        more = " ..." if self.num_skipped > len(first) else ""
        return (f"skipped {self.num_skipped} of {self.num_skipped + self.kept} rows "
                f"({reasons}): {', '.join(first)}{more}")

    def summary(self, path: str) -> Optional[str]:
        if not self.num_skipped:
            return None
        return f"image_caption_folder {_show(path)}: {self.details()}"


def _show(name: str) -> str:
    """A file name for a one-line message: quoted with escapes if it has odd characters."""
    text = str(name)
    if text and text.isprintable() and text.strip() == text and "," not in text:
        return text
    return repr(text)


def _read_metadata(meta_path: str, report: ScanReport, root: str):
    """Rows (dicts) of one metadata file; malformed JSON lines are skipped and counted."""
    rel = os.path.relpath(meta_path, root)
    try:
        with open(meta_path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise ZooError(f"cannot read metadata file {meta_path}: {e.strerror or e}") from None
    text = raw.decode("utf-8-sig", errors="replace")
    rows = []
    if meta_path.endswith(".jsonl"):
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                report.skip("malformed metadata lines", f"{rel}:{lineno}")
                continue
            if not isinstance(row, dict):
                report.skip("malformed metadata lines", f"{rel}:{lineno}")
                continue
            rows.append(row)
    else:
        try:
            reader = csv.DictReader(io.StringIO(text.replace("\x00", "")))
            for row in reader:
                rows.append({k: v for k, v in row.items() if isinstance(k, str)})
        except csv.Error as e:
            raise ZooError(f"metadata file {meta_path} is not valid CSV ({e}); it needs a "
                           f"header row with file_name and text columns") from None
    return rows


def _caption_of(value) -> Optional[str]:
    if isinstance(value, str):
        return value if value.strip() else None
    if isinstance(value, list) and value and isinstance(value[0], str) and value[0].strip():
        return value[0]  # several captions: the first one
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return str(value)
    return None


def _as_text(value) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def check_image(path: str, verify: str = "header") -> Optional[str]:
    """None if the file looks like a decodable image; else the reason it is skipped."""
    if verify == "none":
        return None if os.path.isfile(path) else "missing images"
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as im:
            fmt = im.format
            if fmt not in SUPPORTED_FORMATS:
                return "unsupported images"
            if im.width < 1 or im.height < 1:
                return "corrupt images"
            if verify == "full":
                im.load()
            elif fmt == "PNG":
                im.verify()  # checks every chunk's CRC without decompressing pixels
        if fmt == "JPEG" and verify != "full":
            with open(path, "rb") as f:  # a truncated JPEG lacks its end-of-image marker
                f.seek(max(os.path.getsize(path) - 64, 0))
                if b"\xff\xd9" not in f.read():
                    return "corrupt images"
    except FileNotFoundError:
        return "missing images"
    except IsADirectoryError:
        return "missing images"
    except UnidentifiedImageError:
        return "corrupt images"
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError):
        return "corrupt images"
    except Exception:  # noqa: BLE001 -- PIL raises odd things on fuzzed files
        return "corrupt images"
    return None


def scan_folder(path: str, image_column: str = "file_name", caption_column: str = "text",
                verify: str = "header", check_images: bool = True, quiet: bool = False):
    """Reads every metadata file under `path`.

    Returns (rows, extra_columns, report); each row is a dict with `split`, `path`,
    `file_name`, `caption` and the extra columns (as strings).
    """
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise ZooError("image_caption_folder.path is not set; bind it, e.g. "
                       "--gin_bindings=\"image_caption_folder.path='/my/images'\"")
    root = os.path.abspath(os.path.expanduser(os.fspath(path)))
    if os.path.isfile(root):
        raise ZooError(f"image_caption_folder.path {root!r} is a file, not a folder; give the "
                       f"folder that holds the images and metadata.jsonl (or metadata.csv)")
    if not os.path.isdir(root):
        raise ZooError(f"image_caption_folder.path {root!r} is not a directory")
    if verify not in VERIFY_MODES:
        raise ZooError(f"image_caption_folder.verify must be one of {VERIFY_MODES}, got "
                       f"{verify!r}")
    metas = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames.sort()
        metas += [os.path.join(dirpath, m) for m in METADATA_NAMES if m in filenames]
    if not metas:
        raise ZooError(f"no metadata.jsonl or metadata.csv under {root}; write one with a line "
                       f"per image like {{\"file_name\": \"0001.jpg\", \"text\": \"a red "
                       f"bicycle\"}} (the Hugging Face ImageFolder layout)")
    report = ScanReport()
    rows, columns = [], {}
    for meta in metas:
        meta_rows = _read_metadata(meta, report, root)
        for r in meta_rows:
            for k in r:
                columns.setdefault(k, None)
        rows += [(meta, r) for r in meta_rows]
    if image_column not in columns or caption_column not in columns:
        found = ", ".join(repr(c) for c in list(columns)[:20]) or "none"
        missing = [c for c in (image_column, caption_column) if c not in columns]
        raise ZooError(f"metadata under {root} has no {' or '.join(map(repr, missing))} column "
                       f"(columns found: {found}); it needs {image_column!r} (the image file) "
                       f"and {caption_column!r} (the caption), or set "
                       f"image_caption_folder.image_column / caption_column")
    extras = [c for c in columns if c not in (image_column, caption_column)
              and isinstance(c, str) and c]
    candidates = []
    for meta, r in rows:
        name = r.get(image_column)
        caption = _caption_of(r.get(caption_column))
        where = name if isinstance(name, str) and name else os.path.relpath(meta, root)
        if not isinstance(name, str) or not name.strip():
            report.skip("rows without file_name", where)
            continue
        if caption is None:
            report.skip("rows without caption", where)
            continue
        full = os.path.normpath(os.path.join(os.path.dirname(meta), name))
        rel = os.path.relpath(full, root)
        top = rel.split(os.sep, 1)[0]
        split = SPLIT_DIRS.get(top.lower(), "train") if os.sep in rel else "train"
        if "\x00" in full:
            report.skip("missing images", rel)
            continue
        candidates.append({"split": split, "path": full, "file_name": rel, "caption": caption,
                           **{k: _as_text(r.get(k)) for k in extras}})
    if check_images and candidates:
        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
            problems = list(pool.map(lambda c: check_image(c["path"], verify), candidates))
    else:
        problems = [None] * len(candidates)
    kept = []
    for c, problem in zip(candidates, problems):
        if problem:
            report.skip(problem, c["file_name"])
        else:
            kept.append(c)
    report.kept = len(kept)
    line = report.summary(root)
    if line and not quiet:
        log.warning("%s", line)
    return kept, extras, report


def holdout_bucket(file_name: str) -> float:
    """A file's place in [0, 100) from a hash of its path relative to the folder (with `/`
    separators, so every machine agrees): files below `holdout_percent` are held out."""
    key = file_name.replace(os.sep, "/").encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.sha1(key).digest()[:8], "big") / 2 ** 64 * 100.0


def assign_holdout(rows: List[dict], holdout_percent: float) -> List[dict]:
    """Rows with `split` set to `test` for a hash-chosen `holdout_percent` share of the files.

    Rows that already carry a held-out split (the folder's own test/ or validation/) keep
    their splits and nothing else moves. With a non-zero share, at least one file is held out
    when there are two or more.
    """
    if not holdout_percent or any(r["split"] != "train" for r in rows):
        return rows
    buckets = [holdout_bucket(r["file_name"]) for r in rows]
    out = [dict(r, split="test") if b < holdout_percent else r for r, b in zip(rows, buckets)]
    if len(rows) >= 2 and all(r["split"] == "train" for r in out):
        first = min(range(len(rows)), key=buckets.__getitem__)
        out[first] = dict(out[first], split="test")
    return out


def extra_keys(columns) -> Dict[str, str]:
    """Feature names for extra metadata columns: identifier-like, unique, not reserved."""
    keys, used = {}, set(RESERVED) | {"file_name"}
    for column in columns:
        key = re.sub(r"\W", "_", column) or "column"
        if key[0].isdigit():
            key = "_" + key
        base, n = (f"metadata_{key}" if key in used else key), 1
        key = base
        while key in used:
            n += 1
            key = f"{base}_{n}"
        used.add(key)
        keys[column] = key
    return keys


@DATASETS.register("image_caption_folder", needs="a folder of captioned images (path)")
class ImageCaptionFolder(CaptionDataset):
    """A folder of images with metadata.jsonl / metadata.csv (file_name, text), subfolders ok.

    Args:
        path: str. The folder (required).
        image_column: str. Metadata column with the image path, relative to the metadata file.
        caption_column: str. Metadata column with the caption.
        verify: 'header' (open each image's header; PNG CRCs; JPEG end marker), 'full'
            (decode every image once: slow, catches everything) or 'none'. A file that
            passes the check but fails to decode later is dropped from the stream with a
            warning, which shifts later batches by one example (resuming exactly past such a
            file needs 'full').
        keep_columns: bool. Carry the other metadata columns through the pipeline as strings.
        holdout_percent: float in [0, 50]. When the folder has no train/ validation/ test/
            subfolders, this share of its files (chosen by a hash of the file path, the same
            on every run and machine) forms the held-out split `test` instead of `train`;
            0 keeps every file in `train`. Ignored when the folder has its own splits.
    """

    name = "image_caption_folder"

    def __init__(self, path=None, image_column="file_name", caption_column="text",
                 verify="header", keep_columns=True, holdout_percent=5.0):
        if isinstance(holdout_percent, bool) or not isinstance(holdout_percent, (int, float)) \
                or not 0.0 <= holdout_percent <= 50.0:
            raise ZooError(f"image_caption_folder.holdout_percent must be a number in [0, 50], "
                           f"got {holdout_percent!r}")
        self.path = path
        self.image_column = image_column
        self.caption_column = caption_column
        self.verify = verify
        self.keep_columns = keep_columns
        self.holdout_percent = float(holdout_percent)
        rows, extras, report = scan_folder(path, image_column, caption_column, verify)
        rows = assign_holdout(rows, self.holdout_percent)
        self.root = os.path.abspath(os.path.expanduser(os.fspath(path)))
        self.report = report
        self.extras = extras if keep_columns else []
        self.rows: Dict[str, List[dict]] = {}
        for r in rows:
            self.rows.setdefault(r["split"], []).append(r)
        if not self.rows:
            raise ZooError(f"image_caption_folder {_show(self.root)}: no usable image-caption "
                           f"pairs; " + (report.details() if report.num_skipped
                                         else "the metadata has no rows"))

    def splits(self):
        return tuple(s for s in ("train", "validation", "test") if s in self.rows)

    def heldout_split(self) -> str:
        """The split held out of training: `test`, else `validation`."""
        for split in HELDOUT_SPLITS:
            if split in self.rows:
                return split
        raise ZooError(f"image_caption_folder {_show(self.root)} has no held-out split: add "
                       f"test/ (or validation/) subfolders, or set holdout_percent > 0 (now "
                       f"{self.holdout_percent:g})")

    def __repr__(self):
        return f"image_caption_folder {_show(self.root)}"

    def num_examples(self, split):
        return len(self.rows[self.check_split(split)])

    def reader(self, split, image_size=None):
        del image_size
        rows = self.rows[self.check_split(split)]
        paths = tf.constant([r["path"] for r in rows])
        caps = tf.constant([r["caption"] for r in rows])
        names = tf.constant([r["file_name"] for r in rows])
        extra = {key: tf.constant([r[k] for r in rows])
                 for k, key in extra_keys(self.extras).items()}

        def read(index):
            out = {"image_bytes": tf.io.read_file(tf.gather(paths, index)),
                   "caption": tf.gather(caps, index), "file_name": tf.gather(names, index)}
            out.update({k: tf.gather(v, index) for k, v in extra.items()})
            return out
        return read

    def captions(self, split="train"):
        for r in self.rows[self.check_split(split)]:
            yield r["caption"]


# -- TFDS builder -------------------------------------------------------------------------------

class ImageCaptionFolderConfig(tfds.core.BuilderConfig):
    """Which folder (and columns) an image_caption_folder TFDS dataset was built from."""

    def __init__(self, *, path: str, image_column: str = "file_name",
                 caption_column: str = "text", **kwargs):
        super().__init__(**kwargs)
        self.path = path
        self.image_column = image_column
        self.caption_column = caption_column


class ImageCaptionFolderBuilder(NoDownloadBuilderMixin, tfds.core.GeneratorBasedBuilder):
    """TFDS builder of image_caption_folder: `tfds.load('image_caption_folder',
    builder_kwargs={'path': '/my/images'}, data_dir=...)` after `import zoo.data`.

    Preparing decodes every image once; corrupt ones are skipped and counted (one line). The
    prepared copy lives in data_dir under a config named after the folder.
    """

    name = "image_caption_folder"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First version."}

    def __init__(self, *, path: Optional[str] = None, image_column: str = "file_name",
                 caption_column: str = "text", **kwargs):
        if "config" not in kwargs:
            if not path:
                raise ZooError("image_caption_folder TFDS builder needs the folder: "
                               "tfds.builder('image_caption_folder', path='/my/images')")
            root = os.path.abspath(os.path.expanduser(os.fspath(path)))
            base = "".join(ch if ch.isalnum() else "_" for ch in os.path.basename(root))[:40]
            ident = f"{root}|{image_column}|{caption_column}"
            kwargs["config"] = ImageCaptionFolderConfig(
                name=f"{base or 'folder'}_{zlib.crc32(ident.encode()):08x}", path=root,
                image_column=image_column, caption_column=caption_column,
                description=f"images and captions from {root}")
        self._scan = None
        super().__init__(**kwargs)

    def _scan_folder(self):
        if self._scan is None:
            cfg = self.builder_config
            self._scan = scan_folder(cfg.path, cfg.image_column, cfg.caption_column,
                                     verify="full")
        return self._scan

    def _info(self):
        cfg = self.builder_config
        extras = []
        if os.path.isdir(cfg.path):  # the columns only; images are checked when preparing
            _, extras, _ = scan_folder(cfg.path, cfg.image_column, cfg.caption_column,
                                       check_images=False, quiet=True)
        features = {"image": tfds.features.Image(shape=(None, None, 3)),
                    "caption": tfds.features.Text(), "file_name": tfds.features.Text()}
        features.update({key: tfds.features.Text() for key in extra_keys(extras).values()})
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(features),
            supervised_keys=("image", "caption"))

    def _split_generators(self, dl_manager):
        del dl_manager
        rows, _, _ = self._scan_folder()
        splits = {}
        for r in rows:
            splits.setdefault(r["split"], []).append(r)
        return {s: self._generate_examples(rs) for s, rs in splits.items()}

    def _generate_examples(self, rows):
        _, extras, _ = self._scan_folder()
        for r in rows:
            ex = {"image": _rgb_png_or_path(r["path"]), "caption": r["caption"],
                  "file_name": r["file_name"]}
            ex.update({key: r[k] for k, key in extra_keys(extras).items()})
            yield r["file_name"], ex


def _rgb_png_or_path(path: str):
    """The file itself when TF decodes it to 3 channels as is, else an RGB array."""
    from PIL import Image
    with Image.open(path) as im:
        if im.format in ("JPEG", "PNG") and im.mode in ("RGB", "L", "RGBA", "LA", "P"):
            return path
        import numpy as np
        return np.asarray(im.convert("RGB"))
