"""Verified checkpoints in a model directory on any tf.io.gfile file system, with a keep policy.

Layout (one directory per checkpoint):

    <model_dir>/checkpoints/ckpt-100/ckpt.index
                                    /ckpt.data-00000-of-00001
                                    /manifest.json     {"step": 100, "files": {name: [size, crc32]}}

The manifest is the commit record: a save writes TensorFlow's files into `ckpt-100/`, then
`manifest.json` last, in one piece (a local file through a temporary name and a rename; an
object on `gs://` appears whole when its upload completes). A checkpoint is a directory with
a manifest; a directory without one is an unfinished write (the process died while saving),
never taken for a checkpoint and removed at the next start. This needs no directory rename, so
it holds on object stores as on a local disk (Orbax does the same on GCS, with a
`commit_success.txt`; zoo keeps tf.train.Checkpoint, which restores across meshes, and its own
small record). On restore the manifest (sizes and CRC32 of every file) is checked; a corrupt
or truncated checkpoint is reported by name and the one before it is used. Corrupt checkpoints
are never deleted: when a new save needs the name, the corrupt one is moved aside to
`ckpt-100.corrupt`. The keep policy removes a checkpoint's manifest before its files, so an
interrupted removal leaves an unfinished write, not a damaged checkpoint.
"""

import json
import logging
import os
import re
import sys
import time
import zlib
from typing import Any, Callable, Dict, List, Optional, Tuple

import tensorflow as tf

from zoo.errors import ZooError
from zoo.train import storage

log = logging.getLogger("zoo")

CHECKPOINT_SUBDIR = "checkpoints"
PREFIX = "ckpt"
MANIFEST = "manifest.json"
_NAME = re.compile(r"^ckpt-(\d+)$")
# Leftovers of older versions' saves (temporary directories renamed into place).
_LEGACY_TMP = re.compile(r"^ckpt-\d+\.tmp-\d+$|^ckpt-\d+\.deleting$")
# Errors that mean "this checkpoint's files cannot be read": fall back to the one before.
UNREADABLE = (tf.errors.DataLossError, tf.errors.NotFoundError, tf.errors.OutOfRangeError)


class CorruptCheckpointError(ZooError):
    """A checkpoint whose files do not match its manifest (or that cannot be read)."""


def checkpoint_dir(model_dir: str) -> str:
    return storage.join(model_dir, CHECKPOINT_SUBDIR)


def checkpoint_path(model_dir: str, step: int) -> str:
    """The directory of checkpoint `step`."""
    return storage.join(checkpoint_dir(model_dir), f"{PREFIX}-{step}")


def checkpoint_prefix(model_dir: str, step: int) -> str:
    """The tf.train.Checkpoint prefix of checkpoint `step` (for tf.train.load_checkpoint)."""
    return storage.join(checkpoint_path(model_dir, step), PREFIX)


def _crc32(path: str, chunk: int = 1 << 22) -> int:
    crc = 0
    with tf.io.gfile.GFile(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                return crc & 0xFFFFFFFF
            crc = zlib.crc32(block, crc)


def verify(path: str, check_crc: bool = True) -> Dict[str, Any]:
    """Checks a checkpoint directory against its manifest; returns the manifest.

    Raises CorruptCheckpointError naming the checkpoint and the first bad file.
    """
    name = os.path.basename(path.rstrip("/"))
    mpath = storage.join(path, MANIFEST)
    if not storage.exists(mpath):
        raise CorruptCheckpointError(f"checkpoint {path} has no {MANIFEST} (an unfinished "
                                     f"write)")
    try:
        manifest = json.loads(storage.read_text(mpath))
        files = manifest["files"]
    except (OSError, tf.errors.OpError, ValueError, KeyError, TypeError) as e:
        raise CorruptCheckpointError(f"checkpoint {path}: unreadable {MANIFEST} ({e})") from None
    if not files:
        raise CorruptCheckpointError(f"checkpoint {path}: empty manifest")
    for fname, (size, crc) in sorted(files.items()):
        fpath = storage.join(path, fname)
        if not storage.exists(fpath):
            raise CorruptCheckpointError(f"checkpoint {name}: file {fname} is missing ({path})")
        actual = storage.size(fpath)
        if actual != size:
            raise CorruptCheckpointError(
                f"checkpoint {name}: file {fname} has {actual} bytes, expected {size} "
                f"(truncated or overwritten; {path})")
        if check_crc and _crc32(fpath) != crc:
            raise CorruptCheckpointError(
                f"checkpoint {name}: file {fname} fails its CRC32 check (corrupt; {path})")
    return manifest


def _warn(msg: str) -> None:
    log.warning("zoo: %s", msg)
    print(f"zoo-train: warning: {msg}", file=sys.stderr, flush=True)


def list_steps(model_dir: str) -> List[int]:
    """Steps of the committed checkpoints (directories with a manifest; valid or not)."""
    return sorted(s for s, committed in _checkpoint_dirs(model_dir) if committed)


def unfinished(model_dir: str) -> List[str]:
    """Names under checkpoints/ left by saves that did not complete."""
    d = checkpoint_dir(model_dir)
    names = [f"{PREFIX}-{s}" for s, committed in _checkpoint_dirs(model_dir) if not committed]
    return sorted(names + [n for n in storage.listdir(d) if _LEGACY_TMP.match(n)])


def _checkpoint_dirs(model_dir: str) -> List[Tuple[int, bool]]:
    d = checkpoint_dir(model_dir)
    out = []
    for name in storage.listdir(d):
        m = _NAME.match(name)
        if m and storage.isdir(storage.join(d, name)):
            out.append((int(m.group(1)), storage.exists(storage.join(d, name, MANIFEST))))
    return out


def latest_valid(model_dir: str, check_crc: bool = True,
                 report: Callable[[str], None] = None,
                 read: Optional[Callable[[int], Any]] = None) -> Tuple[Optional[int], List[str]]:
    """The newest checkpoint whose files match its manifest (and that `read(step)` reads
    without a data error), and the messages about newer ones that were skipped.

    This is the one scan for "the newest valid checkpoint": resuming, `load_task` and tools
    use it. `read` restores the step (errors other than unreadable files propagate, e.g. a
    checkpoint of another model); `report` gets each skip message (default: a warning on
    stderr).
    """
    problems = []
    for step in reversed(list_steps(model_dir)):
        path = checkpoint_path(model_dir, step)
        try:
            verify(path, check_crc=check_crc)
            if read is not None:
                read(step)
        except CorruptCheckpointError as e:
            msg = f"{e}; falling back to the checkpoint before it"
        except UNREADABLE as e:
            msg = (f"checkpoint {path} is unreadable ({str(e).splitlines()[0]}); falling back "
                   f"to the checkpoint before it")
        else:
            return step, problems
        problems.append(msg)
        (report or _warn)(msg)
    return None, problems


class CheckpointManager:
    """Saves and restores a `tf.train.Checkpoint` under `<model_dir>/checkpoints`.

    Args:
        checkpoint: the tf.train.Checkpoint to save / restore.
        model_dir: the run's directory (a local path or any tf.io.gfile URL).
        keep_last: how many of the newest checkpoints to keep (>= 1).
        keep_every: also keep every checkpoint whose step is a multiple of this (None: none).
        check_crc: verify CRC32 of every file on restore (size is always checked).
        is_chief: only the chief writes; other workers write to a scratch directory that
            is removed (multi-worker strategies need every worker to run the save ops).
    """

    def __init__(self, checkpoint: tf.train.Checkpoint, model_dir: str, keep_last: int = 3,
                 keep_every: Optional[int] = None, check_crc: bool = True,
                 is_chief: bool = True):
        if keep_last is None or int(keep_last) < 1:
            raise ZooError(f"keep_last must be >= 1, got {keep_last!r}")
        if keep_every is not None and int(keep_every) < 1:
            raise ZooError(f"keep_every must be >= 1 or None, got {keep_every!r}")
        self.checkpoint = checkpoint
        self.model_dir = os.fspath(model_dir)
        self.directory = checkpoint_dir(self.model_dir)
        self.keep_last = int(keep_last)
        self.keep_every = int(keep_every) if keep_every else None
        self.check_crc = check_crc
        self.is_chief = is_chief

    # -- listing -------------------------------------------------------------------------------

    def steps(self) -> List[int]:
        """Steps of the committed checkpoints (valid or not), ascending."""
        return list_steps(self.model_dir)

    def path(self, step: int) -> str:
        return checkpoint_path(self.model_dir, step)

    def clean_partial(self) -> List[str]:
        """Removes what saves that died before their manifest left behind."""
        if not self.is_chief:
            return []
        removed = unfinished(self.model_dir)
        for name in removed:
            storage.rmtree(storage.join(self.directory, name))
        if removed:
            log.info("zoo: removed unfinished checkpoint writes: %s", ", ".join(removed))
        return removed

    # -- saving --------------------------------------------------------------------------------

    def save(self, step: int) -> str:
        """Writes checkpoint `step` (manifest last); applies the keep policy. Returns its path.

        A failed write (disk full, permissions) leaves the earlier checkpoints as they were
        and raises a ZooError naming the checkpoint and the cause.
        """
        try:
            return self._save(step)
        except (OSError, tf.errors.OpError) as e:
            if not storage.exists(storage.join(self.path(step), MANIFEST)):
                storage.rmtree(self.path(step))
            cause = (getattr(e, "strerror", None) or getattr(e, "message", None) or str(e)
                     or type(e).__name__)
            valid = [s for s in self.steps() if s != step]
            before = f"{PREFIX}-{valid[-1]}" if valid else "none"
            raise ZooError(f"could not write checkpoint {PREFIX}-{step} in {self.directory}: "
                           f"{str(cause).splitlines()[0]} (the earlier checkpoints are "
                           f"untouched; latest: {before})") from None

    def _save(self, step: int) -> str:
        final = self.path(step)
        if not self.is_chief:
            scratch = storage.join(self.directory, f".worker-{os.getpid()}")
            self.checkpoint.write(storage.join(scratch, PREFIX))
            storage.rmtree(scratch)
            return final
        self._make_room(step)
        storage.makedirs(final)
        self.checkpoint.write(storage.join(final, PREFIX))
        self._commit(step, final)
        self._apply_keep_policy()
        return final

    def _make_room(self, step: int) -> None:
        """Moves a committed (corrupt) `ckpt-<step>` aside; removes an unfinished one."""
        final = self.path(step)
        if not storage.exists(final):
            return
        if not storage.exists(storage.join(final, MANIFEST)):
            storage.rmtree(final)
            return
        # Only reachable after a fallback from a corrupt `final`: keep it for inspection.
        aside = _free_name(final + ".corrupt")
        if storage.is_local(final):
            os.rename(final, aside)
        else:  # no directory rename on object stores: copy, then remove (manifest first)
            storage.copytree(final, aside)
            storage.remove(storage.join(final, MANIFEST))
            storage.rmtree(final)
        log.warning("zoo: moved the existing %s aside to %s", final, aside)

    def _commit(self, step: int, path: str) -> None:
        """Writes the manifest (sizes and CRC32 of the files TF wrote): from now on `path` is
        a checkpoint. Local files are fsynced first, so the manifest never names data that a
        power cut could lose."""
        storage.fsync_tree(path)
        files = {}
        for fname in storage.listdir(path):
            if fname == MANIFEST:
                continue
            fpath = storage.join(path, fname)
            files[fname] = [storage.size(fpath), _crc32(fpath)]
        manifest = {"step": int(step), "files": files, "time": time.time()}
        storage.write_text(storage.join(path, MANIFEST), json.dumps(manifest, indent=1))
        storage.fsync_dir(self.directory)

    def _apply_keep_policy(self) -> None:
        steps = self.steps()
        keep = set(steps[-self.keep_last:])
        if self.keep_every:
            keep |= {s for s in steps if s % self.keep_every == 0}
        for s in steps:
            if s in keep:
                continue
            path = self.path(s)
            storage.remove(storage.join(path, MANIFEST))  # uncommitted first: never half a ckpt
            storage.rmtree(path)

    # -- restoring -----------------------------------------------------------------------------

    def restore(self, step: int, expect_partial: bool = False) -> None:
        status = self.checkpoint.read(storage.join(self.path(step), PREFIX))
        if expect_partial:
            status.expect_partial()
        else:
            status.assert_existing_objects_matched()

    def restore_latest(self, report: Callable[[str], None] = None) -> Optional[int]:
        """Restores the newest valid checkpoint (newer corrupt ones reported and skipped);
        returns its step, or None when there is none."""
        step, _ = latest_valid(self.model_dir, check_crc=self.check_crc, report=report,
                               read=self.restore)
        return step


def _free_name(base: str) -> str:
    name, i = base, 1
    while storage.exists(name):
        name = f"{base}-{i}"
        i += 1
    return name
