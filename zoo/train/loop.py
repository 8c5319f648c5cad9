"""The one training loop: every stage (a `Task`) trains, checkpoints and resumes through `train`.

    from zoo.train.loop import train, load_task
    result = train(task="vit_vqgan", model_dir="runs/tok", steps=1000, batch_size=8, seed=0)
    task = load_task("runs/tok")      # rebuilt from run.json, latest valid checkpoint restored

Gin (`train` is the configurable; a run gin file says):

    train.task = 'vit_vqgan'
    train.steps = 1000
    train.batch_size = 8
    train.checkpoint_every = 500

A step is two tf.functions (docs/architecture.md, pitfall 4): one computes the losses and, per
update group, the gradients (reduced over replicas, clipped by global norm when the group says so);
the other applies them. Between the two the loop checks on the host that every loss and
gradient norm is finite. The batch of step s is element 0 of `task.dataset(batch_size, seed,
start_step=s)`, so a resumed run sees the same batches as an uninterrupted one; the step counter,
optimizer state and the task's trackables are in the checkpoint.
"""

import dataclasses
import importlib
import logging
import math
import os
import signal
import sys
import threading
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import gin
import numpy as np
import tensorflow as tf

from zoo import config as zoo_config
from zoo.errors import ZooError
from zoo.registry import TASKS
from zoo.train import checkpoint as ckpt_lib
from zoo.train import run_info
from zoo.train.summaries import SummaryWriter
from zoo.train.task import Task, UpdateGroup

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


# -- finding tasks ---------------------------------------------------------------------------


def task_name_of(task: Task) -> str:
    """The registry name of the task's class, else 'module:QualName' (importable)."""
    cls = type(task)
    for entry in TASKS.entries():
        if entry.obj is cls:
            return entry.name
    return f"{cls.__module__}:{cls.__qualname__}"


def task_class(name: str) -> type:
    """The task class for a registry name or a 'module:QualName' reference."""
    if ":" in name:
        module, _, qual = name.partition(":")
        try:
            obj = importlib.import_module(module)
            for part in qual.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError) as e:
            raise ZooError(f"task {name!r} cannot be imported ({e}); install or import the "
                           f"package that defines it") from None
        return obj
    from zoo import plugins
    plugins.ensure_loaded()
    return TASKS.get(name)


def _make_task(task) -> Task:
    if isinstance(task, Task):
        return task
    if isinstance(task, str):
        try:
            made = TASKS.create(task)
        except ZooError:
            raise
        except TypeError as e:
            if "Unrecognized keyword" in str(e) or "unexpected keyword" in str(e):
                raise ZooError(f"building task {task!r}: {str(e).splitlines()[0]} (check the "
                               f"gin bindings)") from None
            raise
        if not isinstance(made, Task):
            raise ZooError(f"task {task!r} built a {type(made).__name__}, not a zoo Task")
        return made
    if task is None or task is gin.REQUIRED:
        raise ZooError("no task given: set `train.task = '<name>'` in a gin file "
                       "(zoo-list task shows the names)")
    raise ZooError(f"train(task=...) takes a task name or a Task, got {type(task).__name__}")


# -- the single-device distribution ------------------------------------------------------------


def _default_distribution():
    from zoo.distribute.base import Distribution
    return Distribution()


# -- the loop ----------------------------------------------------------------------------------


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
    if "://" in model_dir:
        raise ZooError(f"model_dir {model_dir} is a URL; zoo-train's atomic checkpoints need a "
                       f"file system path (for a bucket, mount it, e.g. with gcsfuse, and give "
                       f"the mount point)")
    if os.path.exists(model_dir) and not os.path.isdir(model_dir):
        raise ZooError(f"model_dir {model_dir} exists and is not a directory")
    saved = run_info.read(model_dir)
    if saved is None and os.path.isdir(model_dir):
        foreign = [n for n in ("checkpoint", ckpt_lib.CHECKPOINT_SUBDIR)
                   if os.path.exists(os.path.join(model_dir, n))]
        foreign += [n for n in os.listdir(model_dir) if n.endswith(".index")]
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


def _to_float(x) -> float:
    return float(np.asarray(x))


def _finite(x: float) -> bool:
    return math.isfinite(x)


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
        model_dir: checkpoints, run.json, operative_config.gin and summaries (`train/`) go here.
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
    dist = distribution if distribution is not None else _default_distribution()
    dist.check_batch_size(batch_size)
    saved = _check_model_dir(model_dir)

    if deterministic:
        tf.config.experimental.enable_op_determinism()
    import keras
    keras.utils.set_random_seed(seed)

    task = _make_task(task)
    name = task_name_of(task)
    task_config = task.config()
    changes = []
    if saved is not None:
        changes = run_info.check_compatible(model_dir, saved, name, task_config, seed,
                                            allow=tuple(allow_config_change or ()))
        if changes:
            print(f"zoo-train: warning: resuming {model_dir} with an allowed task config "
                  f"change: {'; '.join(changes)}", file=sys.stderr, flush=True)
        if int(saved.get("batch_size", batch_size)) != batch_size:
            print(f"zoo-train: warning: {model_dir} was started with batch_size "
                  f"{saved['batch_size']}, now {batch_size}: the resumed run sees other "
                  f"batches than an uninterrupted one", file=sys.stderr, flush=True)
    else:
        run_info.normalize(task_config)  # fails early when not JSON-able

    # Seed again right before build: a task made from its name (after the seeding above) and
    # one passed in ready-made then start from the same weights (Keras layers draw their
    # initial seeds from Python's RNG when they are created).
    keras.utils.set_random_seed(seed)
    with dist.scope():
        task.build()
        groups = task.update_groups()
        _validate_groups(groups, name)
        trackables = task.trackables()
    step_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
    skipped_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="nonfinite_skipped")
    checkpoint = tf.train.Checkpoint(
        task=tf.train.Checkpoint(**trackables),
        optimizers=tf.train.Checkpoint(**{g.name: g.optimizer for g in groups}),
        state=tf.train.Checkpoint(**_untracked_state(trackables)),
        step=step_var, nonfinite_skipped=skipped_var)
    is_chief = getattr(dist, "is_chief", True)
    manager = ckpt_lib.CheckpointManager(checkpoint, model_dir, keep_last=keep_last,
                                         keep_every=keep_every, check_crc=check_crc,
                                         is_chief=is_chief)

    # Resume from the newest valid checkpoint (corrupt newer ones are reported and skipped).
    last_ckpt = None
    if saved is not None:
        manager.clean_partial()
        last_ckpt = _restore_latest(manager, model_dir)
    start_step = int(step_var.numpy())
    if last_ckpt is None and saved is not None and ckpt_lib.list_steps(model_dir):
        log.warning("zoo: no valid checkpoint in %s; starting from step 0 (the corrupt ones "
                    "are kept)", model_dir)

    if is_chief:
        info = saved if saved is not None else run_info.new_info(name, task_config, seed,
                                                                 batch_size)
        if changes:  # load_task rebuilds the task as it is now; the session keeps the change
            info = {**info, "task_config": run_info.normalize(task_config)}
        args = dict(steps=steps, batch_size=batch_size, seed=seed,
                    distribution=getattr(dist, "describe", lambda: str(dist))(),
                    checkpoint_every=checkpoint_every, keep_last=keep_last,
                    keep_every=keep_every, skip_nonfinite=skip_nonfinite,
                    max_nonfinite=max_nonfinite, deterministic=deterministic,
                    jit_compile=jit_compile, config_changes=changes)
        run_info.write(model_dir, run_info.add_session(info, start_step, args))
        _write_operative_config(model_dir, start_step)

    if start_step >= steps:
        msg = (f"{model_dir} is already at step {start_step} >= steps={steps}; nothing to do "
               f"(raise train.steps / --steps to train further)")
        print(f"zoo-train: {msg}", flush=True)
        return TrainResult(task, start_step, start_step, {}, {}, int(skipped_var.numpy()),
                           last_ckpt, time.time() - t_start, 0.0)

    grad_step, apply_step = _make_step_functions(task, groups, dist, jit_compile)
    dataset = task.dataset(batch_size, seed, start_step)
    if jit_compile:
        dataset = _without_strings(dataset)
    batches = iter(dist.distribute_dataset(dataset))
    writer = SummaryWriter(os.path.join(model_dir, SUMMARY_SUBDIR) if is_chief else None)

    bar = _progress_bar(progress, start_step, steps)
    losses: Dict[str, float] = {}
    metrics: Dict[str, float] = {}
    step = start_step
    interval_t, interval_steps = time.time(), 0
    loop_t0, warm_t0, warm_step = time.time(), None, None
    stop = _StopOnSignal()
    try:
        while step < steps and not stop.requested:
            try:
                batch = next(batches)
            except StopIteration:
                raise ZooError(f"task {name!r}: the dataset ended at step {step}; "
                               f"Task.dataset must be infinite (use .repeat())") from None
            out_losses, out_metrics, norms, grads = grad_step(batch)
            losses = {k: _to_float(dist.reduce_mean(v)) for k, v in out_losses.items()}
            metrics = {k: _to_float(dist.reduce_mean(v)) for k, v in out_metrics.items()}
            gnorms = {k: _to_float(dist.reduce_mean(v)) for k, v in norms.items()}
            bad = _nonfinite(groups, losses, gnorms)
            if bad:
                skipped = int(skipped_var.numpy()) + 1
                if not skip_nonfinite or (max_nonfinite is not None and skipped > max_nonfinite):
                    path = _save_last_good(manager, step, last_ckpt)
                    hint = ("" if skip_nonfinite else
                            "; set train.skip_nonfinite = True to skip such steps")
                    limit = (f" (more than max_nonfinite={max_nonfinite} skipped)"
                             if skip_nonfinite else "")
                    raise ZooError(f"non-finite {bad} at step {step}{limit}; stopped, the last "
                                   f"good state is checkpoint {os.path.basename(path)} ({path})"
                                   f"{hint}")
                skipped_var.assign(skipped)
                log.warning("zoo: skipped step %d: non-finite %s (%d skipped so far)", step, bad,
                            skipped)
            else:
                apply_step(grads)
            step += 1
            step_var.assign(step)
            interval_steps += 1
            if step == start_step + 1:  # the first step includes tracing
                warm_t0, warm_step = time.time(), step
            task.after_step(step)

            if summary_every and step % summary_every == 0:
                now = time.time()
                sps = interval_steps / max(now - interval_t, 1e-9)
                interval_t, interval_steps = now, 0
                scalars = {f"loss/{k}": v for k, v in losses.items()}
                scalars.update({f"metrics/{k}": v for k, v in metrics.items()})
                scalars.update({f"grad_norm/{k}": v for k, v in gnorms.items()})
                scalars.update({f"lr/{g.name}": lr for g in groups
                                if (lr := _learning_rate(g.optimizer)) is not None})
                scalars["steps_per_sec"] = sps
                scalars["nonfinite_skipped"] = int(skipped_var.numpy())
                writer.scalars(step, scalars)
            if image_summary_every and step % image_summary_every == 0 and is_chief:
                try:
                    images = task.summaries(_host_batch(dist, batch))
                except Exception as e:  # noqa: BLE001 -- a summary must not kill a run
                    log.warning("zoo: task.summaries failed at step %d: %s", step, e)
                    images = {}
                if images:
                    writer.images(step, images)
            if step % checkpoint_every == 0 or step == steps or stop.requested:
                last_ckpt = manager.save(step)
            if bar is not None:
                post = {k: f"{v:.4g}" for k, v in losses.items()}
                if int(skipped_var.numpy()):
                    post["skipped"] = int(skipped_var.numpy())
                bar.set_postfix(post, refresh=False)
                bar.update(1)
    finally:
        stop.restore()
        if bar is not None:
            bar.close()
        writer.close()
        if is_chief:
            _write_operative_config(model_dir, start_step)

    seconds = time.time() - t_start
    if warm_t0 is not None and step > warm_step:
        sps = (step - warm_step) / max(time.time() - warm_t0, 1e-9)
    else:
        sps = (step - start_step) / max(time.time() - loop_t0, 1e-9)
    skipped = int(skipped_var.numpy())
    loss_txt = ", ".join(f"{k}={v:.4g}" for k, v in losses.items())
    print(f"zoo-train: {name} steps {start_step}->{step} in {seconds:.1f}s ({sps:.2f} steps/s "
          f"after the first); loss {loss_txt}; non-finite skipped {skipped}; checkpoint "
          f"{last_ckpt}", flush=True)
    if stop.requested:
        print(f"zoo-train: stopped by {stop.requested} after step {step} (saved); run the same "
              f"command to resume", file=sys.stderr, flush=True)
    return TrainResult(task, step, start_step, losses, metrics, skipped, last_ckpt, seconds, sps,
                       interrupted=stop.requested)


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


def _untracked_state(trackables: Dict[str, Any]) -> Dict[str, List[tf.Variable]]:
    """Non-trainable variables of Keras layers, by trackable, in the layers' order.

    Keras 3 does not track its SeedGenerators for tf.train.Checkpoint, so without this a
    resumed run would restart Dropout's random stream (and differ from an uninterrupted run).
    Variables that are also tracked elsewhere are still saved once.
    """
    import keras
    out = {}
    for key, obj in trackables.items():
        if isinstance(obj, keras.layers.Layer):
            variables = list(obj.non_trainable_variables)
            if variables:
                out[key] = variables
    return out


def _without_strings(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """Drops the string features (e.g. raw captions) of dict batches: XLA has no string type,
    and a task's losses read the tokenized ids, not the text."""
    spec = dataset.element_spec
    if not isinstance(spec, dict):
        return dataset
    strings = [k for k, v in spec.items() if getattr(v, "dtype", None) == tf.string]
    if not strings:
        return dataset
    return dataset.map(lambda b: {k: v for k, v in b.items() if k not in strings})


def _make_step_functions(task: Task, groups: List[UpdateGroup], dist, jit_compile: bool):
    """(grad_step, apply_step): two separate tf.functions (docs/architecture.md, pitfall 4)."""
    group_names = [g.name for g in groups]

    def replica_grads(batch):
        with tf.GradientTape(persistent=len(groups) > 1) as tape:
            losses, metrics = task.losses(batch, training=True)
            missing = [n for n in group_names if n not in losses]
            if missing:
                raise ZooError(f"task.losses returned no loss for update group(s) {missing}; "
                               f"it returned {sorted(losses)}")
            scaled = {n: dist.scale_loss(losses[n]) for n in group_names}
        grads, norms = {}, {}
        for g in groups:
            gs = tape.gradient(scaled[g.name], g.variables)
            gs = list(dist.reduce_gradients(gs, g.variables))
            present = [x for x in gs if x is not None]
            norm = tf.linalg.global_norm(present) if present else tf.constant(0.0)
            if g.clip_norm is not None and present:
                clipped, _ = tf.clip_by_global_norm(present, g.clip_norm, use_norm=norm)
                it = iter(clipped)
                gs = [next(it) if x is not None else None for x in gs]
            grads[g.name] = gs
            norms[g.name] = norm
        del tape
        return losses, metrics, norms, grads

    @tf.function(jit_compile=jit_compile)
    def grad_step(batch):
        return dist.run(replica_grads, batch)

    def replica_apply(grads):
        for g in groups:
            dist.apply_gradients(g.optimizer, grads[g.name], g.variables)

    @tf.function
    def apply_step(grads):
        dist.run(replica_apply, grads)

    return grad_step, apply_step


def _nonfinite(groups, losses, gnorms) -> Optional[str]:
    """'loss of update group 'g' (=nan)' or 'gradient ...' for the first bad group, else None."""
    for g in groups:
        value = losses.get(g.name)
        if value is not None and not _finite(value):
            return f"loss in update group {g.name!r} (loss {g.name!r} = {value})"
        norm = gnorms.get(g.name)
        if norm is not None and not _finite(norm):
            return f"gradient in update group {g.name!r} (global norm = {norm})"
    return None


def _save_last_good(manager, step, last_ckpt) -> str:
    if last_ckpt and os.path.basename(last_ckpt) == f"{ckpt_lib.PREFIX}-{step}" \
            and os.path.isdir(last_ckpt):
        return last_ckpt
    return manager.save(step)


def _restore_latest(manager: ckpt_lib.CheckpointManager, model_dir: str) -> Optional[str]:
    tried = set()
    while True:
        step, _ = _latest_excluding(manager, tried)
        if step is None:
            return None
        path = manager.path(step)
        try:
            manager.restore(step)
        except (tf.errors.DataLossError, tf.errors.NotFoundError,
                tf.errors.OutOfRangeError) as e:
            log.warning("zoo: checkpoint %s is unreadable (%s); falling back to the one "
                        "before it", path, str(e).splitlines()[0])
            tried.add(step)
            continue
        except (AssertionError, ValueError, tf.errors.InvalidArgumentError) as e:
            raise ZooError(f"checkpoint {path} does not match the task's variables "
                           f"({str(e).splitlines()[0][:300]}); use another --model_dir "
                           f"(nothing was changed)") from None
        print(f"zoo-train: resumed from {path}", file=sys.stderr, flush=True)
        return path


def _latest_excluding(manager, tried):
    problems = []
    for step in reversed(manager.steps()):
        if step in tried:
            continue
        try:
            ckpt_lib.verify(manager.path(step), check_crc=manager.check_crc)
        except ckpt_lib.CorruptCheckpointError as e:
            msg = f"{e}; falling back to the checkpoint before it"
            problems.append(msg)
            log.warning("zoo: %s", msg)
            print(f"zoo-train: warning: {msg}", file=sys.stderr, flush=True)
            tried.add(step)
            continue
        return step, problems
    return None, problems


def _learning_rate(optimizer) -> Optional[float]:
    try:
        return float(np.asarray(optimizer.learning_rate))
    except Exception:  # noqa: BLE001 -- summaries are best effort
        return None


def _host_batch(dist, batch):
    gather = getattr(dist, "gather", None)
    if gather is None:
        return batch
    try:
        return tf.nest.map_structure(gather, batch)
    except Exception:  # noqa: BLE001
        return batch


def _progress_bar(enabled, start, total):
    if not enabled:
        return None
    from tqdm import tqdm
    # Not a terminal (a log file): a line every 30 s instead of a redraw every half second.
    interactive = getattr(sys.stderr, "isatty", lambda: False)()
    return tqdm(total=total, initial=start, unit="step", dynamic_ncols=True,
                mininterval=0.5 if interactive else 30.0, file=sys.stderr, desc="train")


def _write_operative_config(model_dir: str, start_step: int) -> None:
    """operative_config.gin; a resumed session with another config also writes its own file."""
    try:
        text = gin.operative_config_str()
        if not text.strip():
            text = gin.config_str()
    except Exception as e:  # noqa: BLE001 -- e.g. a configurable unregistered since its call
        log.warning("zoo: could not write the operative gin config: %r", e)
        return
    if not text.strip():
        return
    path = os.path.join(model_dir, "operative_config.gin")
    if os.path.isfile(path) and start_step > 0:
        with open(path, encoding="utf-8") as f:
            old = f.read()
        if old != text:
            zoo_config.write_operative_config(model_dir,
                                              f"operative_config-resume-{start_step}.gin")
            return
    zoo_config.write_operative_config(model_dir)


# -- loading a trained task ------------------------------------------------------------------


def load_task(model_dir: str, step: Optional[int] = None, distribution=None) -> Task:
    """The task of a zoo-train run, rebuilt from run.json (no gin) with its weights restored.

    Args:
        model_dir: a directory written by `train`.
        step: a checkpoint step; None takes the newest valid one (corrupt newer ones are
            reported and skipped).
        distribution: build under this distribution's scope (None: single device).

    The task gets attributes `restored_step` and `restored_checkpoint`.
    """
    model_dir = os.fspath(model_dir)
    if not os.path.isdir(model_dir):
        raise ZooError(f"model_dir {model_dir} does not exist")
    info = run_info.read(model_dir)
    if info is None:
        raise ZooError(f"{model_dir} has no {run_info.RUN_FILE}: not a zoo-train model "
                       f"directory")
    cls = task_class(info["task"])
    try:
        task = cls(**info.get("task_config", {}))
    except TypeError as e:
        raise ZooError(f"cannot rebuild task {info['task']!r} from {model_dir}/"
                       f"{run_info.RUN_FILE}: {e}") from None
    dist = distribution if distribution is not None else _default_distribution()
    with dist.scope():
        task.build()
        trackables = task.trackables()
    root = tf.train.Checkpoint(task=tf.train.Checkpoint(**trackables),
                               state=tf.train.Checkpoint(**_untracked_state(trackables)))
    if step is None:
        tried = set()
        while True:
            found, _ = _latest_excluding(
                ckpt_lib.CheckpointManager(root, model_dir, check_crc=True), tried)
            if found is None:
                raise ZooError(f"{model_dir} has no valid checkpoint to load")
            try:
                root.read(ckpt_lib.checkpoint_prefix(model_dir, found)).expect_partial()
                step = found
                break
            except (tf.errors.DataLossError, tf.errors.NotFoundError) as e:
                log.warning("zoo: checkpoint %d unreadable (%s)", found, e)
                tried.add(found)
    else:
        path = os.path.join(ckpt_lib.checkpoint_dir(model_dir), f"{ckpt_lib.PREFIX}-{step}")
        if not os.path.isdir(path):
            raise ZooError(f"{model_dir} has no checkpoint at step {step} (have: "
                           f"{ckpt_lib.list_steps(model_dir)})")
        ckpt_lib.verify(path)
        root.read(ckpt_lib.checkpoint_prefix(model_dir, step)).expect_partial()
    task.restored_step = int(step)
    task.restored_checkpoint = ckpt_lib.checkpoint_prefix(model_dir, step)
    return task
