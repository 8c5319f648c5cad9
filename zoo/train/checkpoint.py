"""Atomic, verified checkpoints in a model directory, with a keep policy.

Layout (one directory per checkpoint, so a save is one atomic rename):

    <model_dir>/checkpoints/ckpt-100/ckpt.index
                                    /ckpt.data-00000-of-00001
                                    /manifest.json     {"step": 100, "files": {name: [size, crc32]}}

A save writes everything into `ckpt-100.tmp-<pid>/`, fsyncs it, then renames it to `ckpt-100`.
A run killed at any moment leaves either no `ckpt-100` (the previous checkpoint is the latest)
or a complete one. Leftover `*.tmp-*` directories are removed at the next start. On restore the
manifest (sizes and CRC32 of every file) is checked; a corrupt or truncated checkpoint is
reported by name and the one before it is used. Corrupt checkpoints are never deleted: when a
new save needs the name, the corrupt directory is moved aside to `ckpt-100.corrupt`.
"""

import json
import logging
import os
import re
import shutil
import signal
import time
import zlib
from typing import Any, Callable, Dict, List, Optional, Tuple

import tensorflow as tf

from zoo.errors import ZooError

log = logging.getLogger("zoo")

CHECKPOINT_SUBDIR = "checkpoints"
PREFIX = "ckpt"
MANIFEST = "manifest.json"
_NAME = re.compile(r"^ckpt-(\d+)$")
_TMP = re.compile(r"^ckpt-\d+\.tmp-\d+$|^ckpt-\d+\.deleting$")

# Test-only hook (tests/test_resume.py): "kill:<step>" SIGKILLs this process inside the save
# of checkpoint <step>, after TF wrote its files and before the manifest and the rename;
# "sleep:<step>:<seconds>" sleeps there instead (so a test can kill it from outside);
# "killafter:<step>" SIGKILLs it right after checkpoint <step> is complete.
HOOK_ENV = "ZOO_TEST_CHECKPOINT_HOOK"


class CorruptCheckpointError(ZooError):
    """A checkpoint whose files do not match its manifest (or that cannot be read)."""


def checkpoint_dir(model_dir: str) -> str:
    return os.path.join(model_dir, CHECKPOINT_SUBDIR)


def _crc32(path: str, chunk: int = 1 << 22) -> int:
    crc = 0
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                return crc & 0xFFFFFFFF
            crc = zlib.crc32(block, crc)


def _fsync_dir(path: str) -> None:
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


def _test_hook(step: int, where: str) -> None:
    spec = os.environ.get(HOOK_ENV, "")
    if not spec:
        return
    parts = spec.split(":")
    if len(parts) >= 2 and int(parts[1]) == step:
        if parts[0] == "killafter" and where == "after":
            os.kill(os.getpid(), signal.SIGKILL)
        if where != "during":
            return
        if parts[0] == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        elif parts[0] == "sleep":
            print(f"zoo-test: in checkpoint write of step {step}", flush=True)
            time.sleep(float(parts[2]) if len(parts) > 2 else 60.0)


def verify(path: str, check_crc: bool = True) -> Dict[str, Any]:
    """Checks a checkpoint directory against its manifest; returns the manifest.

    Raises CorruptCheckpointError naming the checkpoint and the first bad file.
    """
    name = os.path.basename(path.rstrip("/"))
    mpath = os.path.join(path, MANIFEST)
    try:
        with open(mpath, encoding="utf-8") as f:
            manifest = json.load(f)
        files = manifest["files"]
    except FileNotFoundError:
        raise CorruptCheckpointError(f"checkpoint {path} has no {MANIFEST}") from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CorruptCheckpointError(f"checkpoint {path}: unreadable {MANIFEST} ({e})") from None
    if not files:
        raise CorruptCheckpointError(f"checkpoint {path}: empty manifest")
    for fname, (size, crc) in sorted(files.items()):
        fpath = os.path.join(path, fname)
        if not os.path.isfile(fpath):
            raise CorruptCheckpointError(f"checkpoint {name}: file {fname} is missing ({path})")
        actual = os.path.getsize(fpath)
        if actual != size:
            raise CorruptCheckpointError(
                f"checkpoint {name}: file {fname} has {actual} bytes, expected {size} "
                f"(truncated or overwritten; {path})")
        if check_crc and _crc32(fpath) != crc:
            raise CorruptCheckpointError(
                f"checkpoint {name}: file {fname} fails its CRC32 check (corrupt; {path})")
    return manifest


class CheckpointManager:
    """Saves and restores a `tf.train.Checkpoint` under `<model_dir>/checkpoints`.

    Args:
        checkpoint: the tf.train.Checkpoint to save / restore.
        model_dir: the run's directory.
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
        self.model_dir = model_dir
        self.directory = checkpoint_dir(model_dir)
        self.keep_last = int(keep_last)
        self.keep_every = int(keep_every) if keep_every else None
        self.check_crc = check_crc
        self.is_chief = is_chief

    # -- listing -------------------------------------------------------------------------------

    def steps(self) -> List[int]:
        """Steps of the checkpoint directories present (valid or not), ascending."""
        return list_steps(self.model_dir)

    def path(self, step: int) -> str:
        return os.path.join(self.directory, f"{PREFIX}-{step}")

    def clean_partial(self) -> List[str]:
        """Removes directories left by saves that were killed before their rename."""
        removed = []
        if not self.is_chief or not os.path.isdir(self.directory):
            return removed
        for name in os.listdir(self.directory):
            if _TMP.match(name):
                shutil.rmtree(os.path.join(self.directory, name), ignore_errors=True)
                removed.append(name)
        if removed:
            log.info("zoo: removed unfinished checkpoint writes: %s", ", ".join(sorted(removed)))
        return removed

    # -- saving --------------------------------------------------------------------------------

    def save(self, step: int) -> str:
        """Writes checkpoint `step` atomically; applies the keep policy. Returns its path.

        A failed write (disk full, permissions) leaves the earlier checkpoints as they were
        and raises a ZooError naming the checkpoint and the cause.
        """
        try:
            return self._save(step)
        except (OSError, tf.errors.OpError) as e:
            shutil.rmtree(f"{self.path(step)}.tmp-{os.getpid()}", ignore_errors=True)
            cause = getattr(e, "strerror", None) or getattr(e, "message", None) or str(e)
            valid = [s for s in self.steps() if s != step]
            before = f"{PREFIX}-{valid[-1]}" if valid else "none"
            raise ZooError(f"could not write checkpoint {PREFIX}-{step} in {self.directory}: "
                           f"{str(cause).splitlines()[0]} (the earlier checkpoints are "
                           f"untouched; latest: {before})") from None

    def _save(self, step: int) -> str:
        final = self.path(step)
        if not self.is_chief:
            scratch = os.path.join(self.directory, f".worker-{os.getpid()}")
            self.checkpoint.write(os.path.join(scratch, PREFIX))
            shutil.rmtree(scratch, ignore_errors=True)
            return final
        os.makedirs(self.directory, exist_ok=True)
        tmp = f"{final}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        self.checkpoint.write(os.path.join(tmp, PREFIX))
        _test_hook(step, "during")
        files = {}
        for fname in sorted(os.listdir(tmp)):
            fpath = os.path.join(tmp, fname)
            with open(fpath, "rb") as f:
                os.fsync(f.fileno())
            files[fname] = [os.path.getsize(fpath), _crc32(fpath)]
        manifest = {"step": int(step), "files": files, "time": time.time()}
        with open(os.path.join(tmp, MANIFEST), "w", encoding="utf-8") as f:
            json.dump(manifest, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        _fsync_dir(tmp)
        if os.path.exists(final):
            # Only reachable after a fallback from a corrupt `final`: keep it for inspection.
            aside = _free_name(final + ".corrupt")
            os.rename(final, aside)
            log.warning("zoo: moved the existing %s aside to %s", final, aside)
        os.rename(tmp, final)
        _fsync_dir(self.directory)
        self._apply_keep_policy()
        _test_hook(step, "after")
        return final

    def _apply_keep_policy(self) -> None:
        steps = self.steps()
        keep = set(steps[-self.keep_last:])
        if self.keep_every:
            keep |= {s for s in steps if s % self.keep_every == 0}
        for s in steps:
            if s in keep:
                continue
            path = self.path(s)
            doomed = path + ".deleting"
            try:
                os.rename(path, doomed)  # atomic: never a half-deleted ckpt-N
            except OSError:
                continue
            shutil.rmtree(doomed, ignore_errors=True)

    # -- restoring -----------------------------------------------------------------------------

    def latest_valid(self, report: Callable[[str], None] = None) -> Tuple[Optional[int], List[str]]:
        """(newest verified step or None, messages about corrupt newer ones)."""
        return latest_valid(self.model_dir, check_crc=self.check_crc, report=report)

    def restore(self, step: int, expect_partial: bool = False) -> None:
        status = self.checkpoint.read(os.path.join(self.path(step), PREFIX))
        if expect_partial:
            status.expect_partial()
        else:
            status.assert_existing_objects_matched()


def _free_name(base: str) -> str:
    name, i = base, 1
    while os.path.exists(name):
        name = f"{base}-{i}"
        i += 1
    return name


def list_steps(model_dir: str) -> List[int]:
    d = checkpoint_dir(model_dir)
    if not os.path.isdir(d):
        return []
    steps = []
    for name in os.listdir(d):
        m = _NAME.match(name)
        if m and os.path.isdir(os.path.join(d, name)):
            steps.append(int(m.group(1)))
    return sorted(steps)


def latest_valid(model_dir: str, check_crc: bool = True,
                 report: Callable[[str], None] = None) -> Tuple[Optional[int], List[str]]:
    """The newest checkpoint step whose files match its manifest; newer corrupt ones reported."""
    problems = []
    for step in reversed(list_steps(model_dir)):
        path = os.path.join(checkpoint_dir(model_dir), f"{PREFIX}-{step}")
        try:
            verify(path, check_crc=check_crc)
        except CorruptCheckpointError as e:
            msg = f"{e}; falling back to the checkpoint before it"
            problems.append(msg)
            (report or log.warning)("zoo: " + msg)
            continue
        return step, problems
    return None, problems


def checkpoint_prefix(model_dir: str, step: int) -> str:
    """The tf.train.Checkpoint prefix of checkpoint `step` (for tf.train.load_checkpoint)."""
    return os.path.join(checkpoint_dir(model_dir), f"{PREFIX}-{step}", PREFIX)
