"""Model directories on any tf.io.gfile file system: local paths, `gs://` buckets, `ram://`.

Everything the training loop writes into a model directory (checkpoints, run.json, the
operative gin config, TensorBoard summaries) goes through these helpers, so a run can live in
a bucket on a TPU VM. Object stores have no atomic rename: `write_text` writes a small file in
one piece (an object appears whole or not at all on GCS; a local file goes through a temporary
name and `os.replace`), and checkpoints are committed by a manifest written last
(zoo/train/checkpoint.py).
"""

import os
import re
import shutil
from typing import List

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_url(path: str) -> bool:
    """True for 'gs://b/x', 'ram://x', ...: a path that tf.io.gfile resolves, not the OS."""
    return bool(_URL.match(os.fspath(path)))


def is_local(path: str) -> bool:
    return not is_url(path) or os.fspath(path).startswith("file://")


def absolute(path: str) -> str:
    """An absolute local path, or the URL unchanged (os.path.abspath mangles 'gs://b')."""
    path = os.fspath(path)
    return path if is_url(path) else os.path.abspath(path)


def join(*parts: str) -> str:
    return os.path.join(*[os.fspath(p) for p in parts])


def _gfile():
    import tensorflow as tf
    return tf.io.gfile


def exists(path: str) -> bool:
    return _gfile().exists(os.fspath(path))


def isdir(path: str) -> bool:
    return _gfile().isdir(os.fspath(path))


def isfile(path: str) -> bool:
    return exists(path) and not isdir(path)


def listdir(path: str) -> List[str]:
    """Names in a directory (no trailing '/' on object stores), [] when it does not exist."""
    path = os.fspath(path)
    if not isdir(path):
        return []
    names = sorted({n.rstrip("/") for n in _gfile().listdir(path)})
    if path.startswith("ram://"):
        # TF 2.21's ram:// lists by raw prefix: listdir('ckpt-1') also yields '0/...' of a
        # sibling 'ckpt-10'. Keep the names that are really there.
        names = [n for n in names if exists(join(path, n))]
    return names


def makedirs(path: str) -> None:
    _gfile().makedirs(os.fspath(path))


def size(path: str) -> int:
    return int(_gfile().stat(os.fspath(path)).length)


def read_bytes(path: str) -> bytes:
    with _gfile().GFile(os.fspath(path), "rb") as f:
        return f.read()


def read_text(path: str) -> str:
    return read_bytes(path).decode("utf-8")


def write_text(path: str, text: str, sync: bool = True) -> str:
    """Writes `text` so that readers see the old file or the whole new one, never a part.

    Local: a temporary file, fsynced, then `os.replace`. Elsewhere: one GFile write (an object
    store creates the object when the upload completes; `ram://` writes in one call).
    """
    path = os.fspath(path)
    if is_local(path):
        local = path[len("file://"):] if path.startswith("file://") else path
        os.makedirs(os.path.dirname(local) or ".", exist_ok=True)
        tmp = f"{local}.tmp-{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            if sync:
                os.fsync(f.fileno())
        os.replace(tmp, local)
        return path
    parent = os.path.dirname(path)
    if parent and not isdir(parent):
        makedirs(parent)
    if path.startswith("ram://"):
        remove(path)  # TF 2.21's ram:// file system appends to an existing file on "w"
    with _gfile().GFile(path, "w") as f:
        f.write(text)
    return path


def remove(path: str) -> None:
    try:
        _gfile().remove(os.fspath(path))
    except Exception:  # noqa: BLE001 -- already gone (NotFoundError) or a race: nothing to do
        pass


def rmtree(path: str) -> None:
    """Removes a file or a directory tree; best effort, as shutil.rmtree(ignore_errors=True).

    URLs are walked file by file (what gfile.rmtree does on an object store; on TF 2.21's
    ram:// it also fails when a sibling shares the name's prefix)."""
    path = os.fspath(path)
    if is_local(path):
        local = path[len("file://"):] if path.startswith("file://") else path
        if os.path.isdir(local):
            shutil.rmtree(local, ignore_errors=True)
        elif os.path.exists(local):
            remove(local)
        return
    for name in listdir(path):
        rmtree(join(path, name))
    try:  # the directory's own entry: an object 'dir/' on GCS, a key on ram://
        if path.startswith("ram://"):
            _gfile().remove(path)  # (its rmtree fails when a sibling shares the prefix)
        elif exists(path):
            _gfile().rmtree(path)
    except Exception:  # noqa: BLE001 -- best effort
        pass


def copytree(src: str, dst: str) -> None:
    """Copies the files of `src` (recursively) to `dst` (object stores have no directory
    rename; this is the first half of a move)."""
    makedirs(dst)
    for name in listdir(src):
        s, d = join(src, name), join(dst, name)
        if isdir(s):
            copytree(s, d)
        else:  # (not gfile.copy: TF 2.21's ram:// fails it)
            with _gfile().GFile(d, "wb") as f:
                f.write(read_bytes(s))


def fsync_tree(path: str) -> None:
    """fsyncs the files of a local directory and the directory (no-op for URLs)."""
    if not is_local(path) or not os.path.isdir(path):
        return
    for name in os.listdir(path):
        p = os.path.join(path, name)
        if os.path.isfile(p):
            with open(p, "rb") as f:
                os.fsync(f.fileno())
    fsync_dir(path)


def fsync_dir(path: str) -> None:
    if not is_local(path):
        return
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
