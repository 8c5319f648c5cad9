"""The one training loop: every stage (a `Task`) trains, checkpoints and resumes through `train`.

    from zoo.train.loop import train, load_task
    result = train(task="vit_vqgan", model_dir="runs/tok", steps=1000, batch_size=8, seed=0)
    task = load_task("runs/tok")      # rebuilt from run.json, latest valid checkpoint restored

Gin (`train` is the configurable; a run gin file says):

    train.task = 'vit_vqgan'
    train.steps = 1000
    train.batch_size = 8
    train.checkpoint_every = 500

The model directory is a local path or any tf.io.gfile URL (`gs://bucket/run`). A step is the
two tf.functions of zoo/train/steps.py; between them the loop checks on the host that every
loss and gradient norm is finite. The batch of step s is element 0 of `task.dataset(batch_size,
seed, start_step=s)`, so a resumed run sees the same batches as an uninterrupted one; the step
counter, optimizer state and the task's trackables are in the checkpoint (checkpoint.py).
"""

import dataclasses
import logging
import os
import signal
import sys
import threading
import time
from typing import Any, Dict, List, Optional, Sequence

import gin
import numpy as np
import tensorflow as tf

from zoo.errors import ZooError
from zoo.train import checkpoint as ckpt_lib
from zoo.train import run_info, steps as steps_lib, storage
from zoo.train.load import (default_distribution, load_task,  # noqa: F401 (load_task re-exported)
                             task_checkpoint)
from zoo.train.summaries import SummaryWriter
from zoo.train.task import Task, UpdateGroup, make_task, task_class, task_name_of  # noqa: F401

log = logging.getLogger("zoo")

SUMMARY_SUBDIR = "train"


@dataclasses.dataclass
class TrainResult:
    """What `train` returns."""

    task: Task
    step: int  # steps completed (the checkpoint's step)
    start_step: int
    losses: Dict[str, float]  # of the last step run in this session
    metrics: Dict[str, float]
    nonfinite_skipped: int  # over the whole run (checkpointed)
    checkpoint: Optional[str]  # path of the last checkpoint written or restored
    seconds: float
    steps_per_sec: float
    interrupted: Optional[str] = None  # "SIGTERM" / "SIGINT" when stopped by a signal


@dataclasses.dataclass
class _Run:
    """The state of one session of `train`."""

    task: Task
    name: str
    dist: Any
    groups: List[UpdateGroup]
    manager: ckpt_lib.CheckpointManager
    step_var: tf.Variable
    skipped_var: tf.Variable
    is_chief: bool
    model_dir: str
    last_ckpt: Optional[str] = None


# -- checks before anything is written -----------------------------------------------------------

def _check_args(model_dir, steps, batch_size, checkpoint_every, summary_every,
                image_summary_every):
    if not model_dir or model_dir is gin.REQUIRED:
        raise ZooError("no model directory: pass --model_dir=DIR (or bind train.model_dir)")
    for name, value, low in (("steps", steps, 0), ("batch_size", batch_size, 1),
                             ("checkpoint_every", checkpoint_every, 1)):
        if value is gin.REQUIRED or value is None:
            raise ZooError(f"train.{name} is required (bind it in a gin file, e.g. "
                           f"`train.{name} = 100`, or pass --{name})")
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ZooError(f"train.{name} must be an integer >= {low}, got {value!r}")
    for name, value in (("summary_every", summary_every),
                        ("image_summary_every", image_summary_every)):
        if value is not None and (not isinstance(value, (int, np.integer)) or value < 0):
            raise ZooError(f"train.{name} must be an integer >= 0 (0 = never), got {value!r}")


def _check_model_dir(model_dir: str) -> Optional[Dict[str, Any]]:
    """run.json of an existing zoo run, None for a new/empty dir; refuses foreign dirs."""
    try:
        if storage.exists(model_dir) and not storage.isdir(model_dir):
            raise ZooError(f"model_dir {model_dir} exists and is not a directory")
    except tf.errors.OpError as e:  # e.g. an unreachable bucket, a scheme TF does not know
        raise ZooError(f"model_dir {model_dir} cannot be used: "
                       f"{str(e).splitlines()[0]}") from None
    saved = run_info.read(model_dir)
    if saved is None and storage.isdir(model_dir):
        names = storage.listdir(model_dir)
        foreign = [n for n in ("checkpoint", ckpt_lib.CHECKPOINT_SUBDIR) if n in names]
        foreign += [n for n in names if n.endswith(".index")]
        if foreign:
            raise ZooError(
                f"model_dir {model_dir} holds checkpoints ({', '.join(sorted(foreign)[:3])}) "
                f"but no {run_info.RUN_FILE}: it was not written by zoo-train; use another "
                f"--model_dir (nothing was changed)")
    return saved


def _validate_groups(groups: List[UpdateGroup], task_name: str) -> None:
    if not groups:
        raise ZooError(f"task {task_name!r} has no update groups")
    names = [g.name for g in groups]
    if len(set(names)) != len(names):
        raise ZooError(f"task {task_name!r} has duplicate update group names: {names}")
    for g in groups:
        if not g.variables:
            raise ZooError(f"task {task_name!r}: update group {g.name!r} has no variables "
                           f"(did build() create the models?)")
        if g.clip_norm is not None and not g.clip_norm > 0:
            raise ZooError(f"task {task_name!r}: update group {g.name!r} has clip_norm "
                           f"{g.clip_norm!r}; use a positive number or None")


def _check_resumable(model_dir, saved, name, task_config, seed, batch_size, allow):
    """The allowed task config changes of a resumed run (refused ones raise)."""
    if saved is None:
        run_info.normalize(task_config)  # fails early when not JSON-able
        return []
    changes = run_info.check_compatible(model_dir, saved, name, task_config, seed,
                                        allow=tuple(allow or ()))
    if changes:
        print(f"zoo-train: warning: resuming {model_dir} with an allowed task config "
              f"change: {'; '.join(changes)}", file=sys.stderr, flush=True)
    if int(saved.get("batch_size", batch_size)) != batch_size:
        print(f"zoo-train: warning: {model_dir} was started with batch_size "
              f"{saved['batch_size']}, now {batch_size}: the resumed run sees other "
              f"batches than an uninterrupted one", file=sys.stderr, flush=True)
    return changes


# -- building and resuming -------------------------------------------------------------------------

def _build(task: Task, name: str, dist, model_dir: str, seed: int, keep_last, keep_every,
           check_crc) -> _Run:
    import keras
    # Seed again right before build: a task made from its name (after the seeding in `train`)
    # and one passed in ready-made then start from the same weights (Keras layers draw their
    # initial seeds from Python's RNG when they are created).
    keras.utils.set_random_seed(seed)
    with dist.scope():
        task.build()
        groups = task.update_groups()
        _validate_groups(groups, name)
        trackables = task.trackables()
    step_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
    skipped_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="nonfinite_skipped")
    checkpoint = task_checkpoint(
        trackables, optimizers=tf.train.Checkpoint(**{g.name: g.optimizer for g in groups}),
        step=step_var, nonfinite_skipped=skipped_var)
    is_chief = getattr(dist, "is_chief", True)
    manager = ckpt_lib.CheckpointManager(checkpoint, model_dir, keep_last=keep_last,
                                         keep_every=keep_every, check_crc=check_crc,
                                         is_chief=is_chief)
    return _Run(task, name, dist, groups, manager, step_var, skipped_var, is_chief, model_dir)


def _resume(run: _Run) -> None:
    """Restores the newest valid checkpoint (corrupt newer ones are reported and skipped)."""
    run.manager.clean_partial()
    try:
        step = run.manager.restore_latest()
    except (AssertionError, ValueError, tf.errors.InvalidArgumentError) as e:
        raise ZooError(f"the checkpoints in {run.manager.directory} do not match the task's "
                       f"variables ({str(e).splitlines()[0][:300]}); use another --model_dir "
                       f"(nothing was changed)") from None
    if step is not None:
        run.last_ckpt = run.manager.path(step)
        print(f"zoo-train: resumed from {run.last_ckpt}", file=sys.stderr, flush=True)
    elif ckpt_lib.list_steps(run.model_dir):
        log.warning("zoo: no valid checkpoint in %s; starting from step 0 (the corrupt ones "
                    "are kept)", run.model_dir)


def _record_session(run: _Run, saved, task_config, changes, seed, batch_size, start_step,
                    args: Dict[str, Any]) -> None:
    info = saved if saved is not None else run_info.new_info(run.name, task_config, seed,
                                                             batch_size)
    if changes:  # load_task rebuilds the task as it is now; the session keeps the change
        info = {**info, "task_config": run_info.normalize(task_config)}
    run_info.write(run.model_dir, run_info.add_session(info, start_step, args))
    run_info.write_operative_config(run.model_dir, start_step)


# -- the loop --------------------------------------------------------------------------------------

@gin.configurable("train", module="zoo.train", denylist=["distribution"])
def train(task=None, model_dir=None, steps=None, batch_size=None, seed: int = 0, *, distribution=None,
          checkpoint_every: int = 1000, keep_last: int = 3, keep_every: Optional[int] = None,
          summary_every: int = 100, image_summary_every: int = 1000,
          skip_nonfinite: bool = False, max_nonfinite: Optional[int] = None,
          deterministic: bool = False, jit_compile: bool = False, progress: bool = True,
          check_crc: bool = True, allow_config_change: Sequence[str] = ()) -> TrainResult:
    """Trains `task` until `steps` steps are done, resuming from `model_dir` if it holds a run.

    Args:
        task: a registered task name (built with its gin bindings) or a `Task` instance.
            task, model_dir, steps and batch_size are required (None gives a ZooError saying
            how to set them, rather than gin's "Required bindings" traceback).
        model_dir: checkpoints, run.json, operative_config.gin and summaries (`train/`) go
            here: a local path or a tf.io.gfile URL such as gs://bucket/run.
        steps: total number of steps (a resumed run continues up to it).
        batch_size: global batch size.
        seed: seeds the initial weights and the data order; a run resumes with the same seed.
        distribution: a `zoo.distribute` Distribution (None: single device).
        checkpoint_every: save every this many steps (and at the end, and before stopping on
            a non-finite value).
        keep_last: keep the newest this many checkpoints.
        keep_every: also keep checkpoints whose step is a multiple of this (None: no others).
        summary_every: TensorBoard scalars every this many steps (0: never).
        image_summary_every: `task.summaries(batch)` every this many steps (0: never).
        skip_nonfinite: skip steps with a non-finite loss or gradient (counted, logged and
            summarised as `nonfinite_skipped`) instead of stopping.
        max_nonfinite: with skip_nonfinite, stop once more than this many were skipped.
        deterministic: `tf.config.experimental.enable_op_determinism()` (bit-reproducible runs
            on the same machine, at some speed cost).
        jit_compile: XLA-compile the gradient step.
        progress: show a progress bar.
        check_crc: verify the CRC32 of the checkpoint files before restoring.
        allow_config_change: task config keys (dotted paths, e.g. 'learning_rate') that may
            differ from the saved run's when resuming; any other difference is refused.
    """
    t_start = time.time()
    if task is None:
        raise ZooError("no task given: set `train.task = '<name>'` in a gin file "
                       "(zoo-list task shows the names)")
    _check_args(model_dir, steps, batch_size, checkpoint_every, summary_every,
                image_summary_every)
    steps, batch_size, seed = int(steps), int(batch_size), int(seed)
    model_dir = os.fspath(model_dir)
    dist = distribution if distribution is not None else default_distribution()
    dist.check_batch_size(batch_size)
    saved = _check_model_dir(model_dir)

    if deterministic:
        tf.config.experimental.enable_op_determinism()
    import keras
    keras.utils.set_random_seed(seed)
    task = make_task(task)
    name = task_name_of(task)
    task_config = task.config()
    changes = _check_resumable(model_dir, saved, name, task_config, seed, batch_size,
                               allow_config_change)
    run = _build(task, name, dist, model_dir, seed, keep_last, keep_every, check_crc)
    if saved is not None:
        _resume(run)
    start_step = int(run.step_var.numpy())
    if run.is_chief:
        _record_session(run, saved, task_config, changes, seed, batch_size, start_step, dict(
            steps=steps, batch_size=batch_size, seed=seed,
            distribution=getattr(dist, "describe", lambda: str(dist))(),
            checkpoint_every=checkpoint_every, keep_last=keep_last, keep_every=keep_every,
            skip_nonfinite=skip_nonfinite, max_nonfinite=max_nonfinite,
            deterministic=deterministic, jit_compile=jit_compile, config_changes=changes))

    if start_step >= steps:
        print(f"zoo-train: {model_dir} is already at step {start_step} >= steps={steps}; "
              f"nothing to do (raise train.steps / --steps to train further)", flush=True)
        return TrainResult(task, start_step, start_step, {}, {}, int(run.skipped_var.numpy()),
                           run.last_ckpt, time.time() - t_start, 0.0)
    session = _Session(run, steps, batch_size, seed, start_step, jit_compile, checkpoint_every,
                       summary_every, image_summary_every, skip_nonfinite, max_nonfinite,
                       progress)
    try:
        session.run()
    finally:
        session.close()
    return session.result(t_start)


class _Session:
    """Steps `start_step` .. `steps` of a run: the step functions, summaries, checkpoints,
    the progress bar and signals."""

    def __init__(self, run: _Run, steps, batch_size, seed, start_step, jit_compile,
                 checkpoint_every, summary_every, image_summary_every, skip_nonfinite,
                 max_nonfinite, progress):
        self.run_state, self.steps, self.batch_size, self.seed = run, steps, batch_size, seed
        self.start_step = self.step = start_step
        self.checkpoint_every, self.summary_every = checkpoint_every, summary_every
        self.image_summary_every = image_summary_every
        self.skip_nonfinite, self.max_nonfinite = skip_nonfinite, max_nonfinite
        self.grad_step, self.apply_step = steps_lib.make_step_functions(
            run.task, run.groups, run.dist, jit_compile)
        dataset = steps_lib.device_dataset(run.task.dataset(batch_size, seed, start_step),
                                           batch_size)
        self.batches = iter(run.dist.distribute_dataset(dataset))
        self.writer = SummaryWriter(storage.join(run.model_dir, SUMMARY_SUBDIR)
                                    if run.is_chief else None)
        self.bar = _progress_bar(progress, start_step, steps)
        self.losses: Dict[str, float] = {}
        self.metrics: Dict[str, float] = {}
        self.interval_t, self.interval_steps = time.time(), 0
        self.loop_t0, self.warm_t0, self.warm_step = time.time(), None, None
        self.stop = _StopOnSignal()

    def run(self) -> None:
        r = self.run_state
        while self.step < self.steps and not self.stop.requested:
            try:
                batch = next(self.batches)
            except StopIteration:
                raise ZooError(f"task {r.name!r}: the dataset ended at step {self.step}; "
                               f"Task.dataset must be infinite (use .repeat())") from None
            if self.step == self.start_step:
                self._check_compilable(batch)
            out_losses, out_metrics, norms, grads = self.grad_step(batch)
            reduce = r.dist.reduce_mean
            self.losses = {k: steps_lib.to_float(reduce(v)) for k, v in out_losses.items()}
            self.metrics = {k: steps_lib.to_float(reduce(v)) for k, v in out_metrics.items()}
            gnorms = {k: steps_lib.to_float(reduce(v)) for k, v in norms.items()}
            bad = steps_lib.nonfinite(r.groups, self.losses, gnorms)
            if bad:
                self._skip_or_stop(bad)
            else:
                self.apply_step(grads)
            self.step += 1
            r.step_var.assign(self.step)
            self.interval_steps += 1
            if self.step == self.start_step + 1:  # the first step includes tracing
                self.warm_t0, self.warm_step = time.time(), self.step
            r.task.after_step(self.step)
            self._summaries(gnorms)
            if (self.step % self.checkpoint_every == 0 or self.step == self.steps
                    or self.stop.requested):
                r.last_ckpt = r.manager.save(self.step)
            self._progress()

    def _check_compilable(self, batch) -> None:
        """On a TPU, a step holding host callbacks or strings is named before it is run."""
        dist = self.run_state.dist
        if "TPU" not in (getattr(dist, "name", "").upper(), getattr(dist, "device_type", "")):
            return
        bad = steps_lib.host_only_ops(self.grad_step.get_concrete_function(batch))
        if bad:
            raise ZooError(f"task {self.run_state.name!r}: the train step holds ops a TPU "
                           f"cannot run: {', '.join(bad[:5])}; keep strings and Python "
                           f"callbacks out of Task.losses")

    def _skip_or_stop(self, bad: str) -> None:
        r = self.run_state
        skipped = int(r.skipped_var.numpy()) + 1
        if not self.skip_nonfinite or (self.max_nonfinite is not None
                                       and skipped > self.max_nonfinite):
            path = self._save_last_good()
            hint = ("" if self.skip_nonfinite else
                    "; set train.skip_nonfinite = True to skip such steps")
            limit = (f" (more than max_nonfinite={self.max_nonfinite} skipped)"
                     if self.skip_nonfinite else "")
            raise ZooError(f"non-finite {bad} at step {self.step}{limit}; stopped, the last "
                           f"good state is checkpoint {os.path.basename(path)} ({path}){hint}")
        r.skipped_var.assign(skipped)
        log.warning("zoo: skipped step %d: non-finite %s (%d skipped so far)", self.step, bad,
                    skipped)

    def _save_last_good(self) -> str:
        r = self.run_state
        if r.last_ckpt and r.last_ckpt == r.manager.path(self.step) \
                and self.step in r.manager.steps():
            return r.last_ckpt
        return r.manager.save(self.step)

    def _summaries(self, gnorms) -> None:
        r, step = self.run_state, self.step
        if self.summary_every and step % self.summary_every == 0:
            now = time.time()
            sps = self.interval_steps / max(now - self.interval_t, 1e-9)
            self.interval_t, self.interval_steps = now, 0
            scalars = {f"loss/{k}": v for k, v in self.losses.items()}
            scalars.update({f"metrics/{k}": v for k, v in self.metrics.items()})
            scalars.update({f"grad_norm/{k}": v for k, v in gnorms.items()})
            scalars.update({f"lr/{g.name}": lr for g in r.groups
                            if (lr := _learning_rate(g.optimizer)) is not None})
            scalars["steps_per_sec"] = sps
            scalars["nonfinite_skipped"] = int(r.skipped_var.numpy())
            self.writer.scalars(step, scalars)
        if self.image_summary_every and step % self.image_summary_every == 0 and r.is_chief:
            try:
                # The whole batch of the step just run, strings included, made again on the
                # host (a batch is a function of (seed, step)); none of it was on a device.
                host = r.task.dataset(self.batch_size, self.seed, step - 1)
                images = r.task.summaries(next(iter(host)))
            except Exception as e:  # noqa: BLE001 -- a summary must not kill a run
                log.warning("zoo: task.summaries failed at step %d: %s", step, e)
                images = {}
            if images:
                self.writer.images(step, images)

    def _progress(self) -> None:
        if self.bar is None:
            return
        post = {k: f"{v:.4g}" for k, v in self.losses.items()}
        skipped = int(self.run_state.skipped_var.numpy())
        if skipped:
            post["skipped"] = skipped
        self.bar.set_postfix(post, refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.stop.restore()
        if self.bar is not None:
            self.bar.close()
        self.writer.close()
        if self.run_state.is_chief:
            run_info.write_operative_config(self.run_state.model_dir, self.start_step)

    def result(self, t_start: float) -> TrainResult:
        r, step = self.run_state, self.step
        seconds = time.time() - t_start
        if self.warm_t0 is not None and step > self.warm_step:
            sps = (step - self.warm_step) / max(time.time() - self.warm_t0, 1e-9)
        else:
            sps = (step - self.start_step) / max(time.time() - self.loop_t0, 1e-9)
        skipped = int(r.skipped_var.numpy())
        loss_txt = ", ".join(f"{k}={v:.4g}" for k, v in self.losses.items())
        print(f"zoo-train: {r.name} steps {self.start_step}->{step} in {seconds:.1f}s "
              f"({sps:.2f} steps/s after the first); loss {loss_txt}; non-finite skipped "
              f"{skipped}; checkpoint {r.last_ckpt}", flush=True)
        if self.stop.requested:
            print(f"zoo-train: stopped by {self.stop.requested} after step {step} (saved); run "
                  f"the same command to resume", file=sys.stderr, flush=True)
        return TrainResult(r.task, step, self.start_step, self.losses, self.metrics, skipped,
                           r.last_ckpt, seconds, sps, interrupted=self.stop.requested)


class _StopOnSignal:
    """SIGTERM (pre-emption) or a first Ctrl-C asks the loop to save and stop after the
    current step, so the checkpoint never holds a half-applied update. A second Ctrl-C
    interrupts at once. Only in the main thread (where Python delivers signals)."""

    def __init__(self):
        self.requested: Optional[str] = None
        self._previous = {}
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except (ValueError, OSError):  # pragma: no cover - unusual embedding
                pass

    def _handle(self, signum, frame):
        name = signal.Signals(signum).name
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = name
        print(f"\nzoo-train: {name}: saving a checkpoint after this step, then stopping "
              f"(Ctrl-C again to stop at once)", file=sys.stderr, flush=True)

    def restore(self):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}


def _learning_rate(optimizer) -> Optional[float]:
    try:
        return float(np.asarray(optimizer.learning_rate))
    except Exception:  # noqa: BLE001 -- summaries are best effort
        return None


def _progress_bar(enabled, start, total):
    if not enabled:
        return None
    from tqdm import tqdm
    # Not a terminal (a log file): a line every 30 s instead of a redraw every half second.
    interactive = getattr(sys.stderr, "isatty", lambda: False)()
    return tqdm(total=total, initial=start, unit="step", dynamic_ncols=True,
                mininterval=0.5 if interactive else 30.0, file=sys.stderr, desc="train")
