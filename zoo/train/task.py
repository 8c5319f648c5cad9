"""The contract between a training stage (a `Task`) and the one training loop.

A task builds its models and optimizers and says how to compute losses; the loop
(`zoo.train.loop.train`) does everything else the same way for every stage: distribution
(strategy or DTensor mesh), the compiled step, gradient clipping hooks, non-finite checks,
checkpoints, resuming with the same data order, TensorBoard summaries and the progress bar.

Tasks are registered under the `task` kind and chosen by name in a run gin file:

    train.task = 'vit_vqgan'
    vit_vqgan_task.tokenizer = 'vit_vqgan_tiny'

Rules a task follows so that every loop feature works:
- `build()` creates every variable (models *and* optimizer slots via `optimizer.build`);
  the loop calls it inside the strategy scope / DTensor variable-creator scope.
- `dataset(batch_size, seed, start_step)` yields the batches of steps start_step,
  start_step + 1, ... and must be a pure function of (seed, step): a resumed run sees the
  same data as an uninterrupted one. Every tensor in a batch has the batch as its first
  dimension (strategies split batches along it: no scalars in a batch).
- Randomness inside `losses` comes from Keras layers' seed generators or stateless ops seeded
  from checkpointed variables, never from unseeded `tf.random.*` (a resumed run would draw
  other numbers).
- `losses(batch, training)` is traceable by tf.function (keras.ops / tf ops only) and returns
  one scalar loss per update group plus scalar metrics.
- `config()` is a small JSON-able dict (model names and sizes) saved with the run; resuming
  with a different one is refused. It holds the constructor's kwargs: `load_task(model_dir)`
  rebuilds the task as `TaskClass(**config)` without gin.
- `trackables()` values are Keras layers/models (or other trackables); the loop also saves the
  non-trainable variables of Keras layers (seed generator states), which Keras 3 does not track
  for `tf.train.Checkpoint` by itself.
- Only numbers enter the compiled step: the loop drops string features (raw captions) from
  the batches `losses` sees, and gives every tensor its static shape (TPUs and XLA need both);
  `summaries` gets the whole batch, strings included, on the host.
"""

import dataclasses
import importlib
from typing import Any, Dict, List, Optional, Tuple

import tensorflow as tf


@dataclasses.dataclass
class UpdateGroup:
    """Variables updated by one optimizer from one loss (e.g. 'generator', 'discriminator')."""

    name: str
    optimizer: Any  # a keras.optimizers.Optimizer
    variables: List[tf.Variable]
    clip_norm: Optional[float] = None  # global-norm gradient clipping for this group


class Task:
    """Base class of training stages. Subclasses override the methods below."""

    def build(self) -> None:
        """Creates models and optimizers (and builds the optimizers on their variables)."""
        raise NotImplementedError

    def dataset(self, batch_size: int, seed: int, start_step: int = 0) -> tf.data.Dataset:
        """Global batches for steps start_step, start_step+1, ... (infinite, deterministic)."""
        raise NotImplementedError

    def update_groups(self) -> List[UpdateGroup]:
        raise NotImplementedError

    def losses(self, batch, training: bool = True) -> Tuple[Dict[str, tf.Tensor],
                                                            Dict[str, tf.Tensor]]:
        """({group name: scalar loss}, {metric name: scalar}) for one batch."""
        raise NotImplementedError

    def trackables(self) -> Dict[str, Any]:
        """What to checkpoint besides optimizers and the step: {'model': model, ...}."""
        raise NotImplementedError

    def config(self) -> Dict[str, Any]:
        """What identifies the models (names, sizes); resuming with another config is refused."""
        return {}

    def summaries(self, batch) -> Dict[str, Any]:
        """Eager, at summary steps: {'name': image batch in [0, 1] [N,H,W,C] or a scalar}."""
        return {}

    def after_step(self, step: int) -> None:
        """Eager hook after each applied step (e.g. codebook usage windows). Optional."""


# -- finding tasks by name ---------------------------------------------------------------------

def task_name_of(task: Task) -> str:
    """The registry name of the task's class, else 'module:QualName' (importable)."""
    from zoo.registry import TASKS
    cls = type(task)
    for entry in TASKS.entries():
        if entry.obj is cls:
            return entry.name
    return f"{cls.__module__}:{cls.__qualname__}"


def task_class(name: str) -> type:
    """The task class for a registry name or a 'module:QualName' reference."""
    from zoo.errors import ZooError
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
    from zoo.registry import TASKS
    plugins.ensure_loaded()
    return TASKS.get(name)


def make_task(task) -> Task:
    """A Task instance from a registered name (built with its gin bindings) or a Task."""
    import gin

    from zoo.errors import ZooError
    from zoo.registry import TASKS
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
