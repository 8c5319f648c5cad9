"""What a checkpoint holds, and rebuilding a trained task from its model directory alone.

    task = load_task("runs/tok")          # rebuilt from run.json, newest valid checkpoint
    task = load_task("gs://bucket/parti_350m", step=5000, distribution=dist)
"""

import os
from typing import Any, Dict, List, Optional

import tensorflow as tf

from zoo.errors import ZooError
from zoo.train import checkpoint as ckpt_lib
from zoo.train import run_info, storage
from zoo.train.task import Task, task_class


def untracked_state(trackables: Dict[str, Any]) -> Dict[str, List[tf.Variable]]:
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


def task_checkpoint(trackables: Dict[str, Any], **extra) -> tf.train.Checkpoint:
    """The checkpoint object of a task: its trackables, their untracked state, and `extra`
    (the loop adds optimizers, the step counter and the non-finite count)."""
    return tf.train.Checkpoint(task=tf.train.Checkpoint(**trackables),
                               state=tf.train.Checkpoint(**untracked_state(trackables)),
                               **extra)


def default_distribution():
    """The single-device Distribution (no distribution)."""
    from zoo.distribute.base import Distribution
    return Distribution()


def load_task(model_dir: str, step: Optional[int] = None, distribution=None) -> Task:
    """The task of a zoo-train run, rebuilt from run.json (no gin) with its weights restored.

    Args:
        model_dir: a directory written by `train` (a local path or a tf.io.gfile URL).
        step: a checkpoint step; None takes the newest valid one (corrupt newer ones are
            reported and skipped).
        distribution: build under this distribution's scope (None: single device).

    The task gets attributes `restored_step` and `restored_checkpoint`.
    """
    model_dir = os.fspath(model_dir)
    if not storage.isdir(model_dir):
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
    dist = distribution if distribution is not None else default_distribution()
    with dist.scope():
        task.build()
        trackables = task.trackables()
    root = task_checkpoint(trackables)

    def read(s):
        root.read(ckpt_lib.checkpoint_prefix(model_dir, s)).expect_partial()

    if step is None:
        step, _ = ckpt_lib.latest_valid(model_dir, read=read)
        if step is None:
            raise ZooError(f"{model_dir} has no valid checkpoint to load")
    else:
        if int(step) not in ckpt_lib.list_steps(model_dir):
            raise ZooError(f"{model_dir} has no checkpoint at step {step} (have: "
                           f"{ckpt_lib.list_steps(model_dir)})")
        ckpt_lib.verify(ckpt_lib.checkpoint_path(model_dir, step))
        read(step)
    task.restored_step = int(step)
    task.restored_checkpoint = ckpt_lib.checkpoint_prefix(model_dir, step)
    return task
