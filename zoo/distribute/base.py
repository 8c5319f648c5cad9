"""The `Distribution` interface the training loop and the samplers use, and its single-device default.

One object hides how a run is spread: nothing (default), a tf.distribute strategy (mirrored,
multi_worker, tpu: data parallel) or a DTensor mesh (data + model parallel). The same step code
runs under all of them:

    from zoo import distribute
    dist = distribute.get(strategy="default", mesh=None)   # zoo/distribute/factory.py
    with dist.scope():
        task.build()                        # models and optimizer slots (optimizer.build)
    batches = iter(dist.distribute_dataset(task.dataset(global_batch, seed, start_step)))

    @tf.function                            # tf.function 1: forward + backward
    def grad_step(batch):
        def replica_fn(batch):              # runs once per replica (per-replica batch)
            with tf.GradientTape() as tape:
                losses, metrics = task.losses(batch, training=True)   # per-replica means
                scaled = dist.scale_loss(losses["main"])
            grads = tape.gradient(scaled, variables)
            grads = dist.reduce_gradients(grads, variables)
            # grads are now the full global-batch gradient (summed over replicas, dense, on the
            # weights' layouts), identical on every replica: clip by global norm here.
            return losses, metrics, grads
        return dist.run(replica_fn, batch)

    @tf.function                            # tf.function 2: apply (never in the same function
    def apply_step(grads):                  # as the backward pass: docs/architecture.md pitfall 4)
        dist.run(lambda g: dist.apply_gradients(optimizer, g, variables), grads)

    losses, metrics, grads = grad_step(next(batches))
    apply_step(grads)
    loss = float(dist.reduce_mean(losses["main"]))   # per-replica value -> scalar

Contract, method by method:
- `scope()`: build models and optimizers (and `optimizer.build(vars)`) inside it. Strategy:
  `strategy.scope()`; mesh: a `tf.variable_creator_scope` making DTensor variables whose
  layouts come from the gin layout rules (optimizer slots follow their weights).
- `distribute_dataset(ds)`: `ds` yields *global* batches (nested dicts of tensors). Returns an
  iterable of what `run` takes: per-replica values (strategies) or DTensors whose batch
  dimension is sharded on the mesh's `batch` axis (mesh). tf.string tensors are kept
  replicated under a mesh.
- `distribute_values(batch)`: the same for one eager global batch (sampling, evaluation).
- `run(fn, *args)`: calls `fn` in replica context (strategy.run) or directly (default, mesh:
  DTensor's SPMD runs the global computation). Returns per-replica values.
- `scale_loss(loss)`: inside `fn`. Per-replica mean loss -> the loss whose gradient, summed
  over replicas by `reduce_gradients`, is the gradient of the global mean (divides by the
  number of replicas for strategies; identity otherwise).
- `reduce_gradients(grads, variables)`: inside `fn`. IndexedSlices -> dense; strategies:
  all-reduce SUM across replicas; mesh: relayout each gradient to its variable's layout
  (layouts recorded when the variables were created, since `fetch_layout` fails in
  tf.function). None gradients stay None.
- `apply_gradients(optimizer, grads, variables)`: inside `fn` of a *separate* tf.function.
  Applies already-reduced gradients exactly once (Keras optimizers all-reduce SUM again in
  replica context; this compensates).
- `reduce_mean(value)` / `reduce_sum(value)`: per-replica values (returned by `run`) -> one
  tensor (eager or in tf.function; for a mesh, a plain tensor on the host).
- `gather(value)`: per-replica batch-shaped values -> the global batch as a plain tensor
  (concatenated over replicas; a DTensor unpacked to the host).
- `num_replicas`: data-parallel replicas (the global batch must divide by it);
  `num_devices`; `mesh` (a dtensor.Mesh or None); `strategy` (a tf.distribute.Strategy; the
  default strategy for default and mesh); `name`; `describe()` one line for logs.
- `check_batch_size(global_batch)`: raises ZooError naming the numbers when not divisible.

Checkpoints: `tf.train.Checkpoint(model=..., optimizer=...)` created inside `scope()` saves and
restores under every distribution, and a checkpoint from one mesh restores on another mesh or
unsharded (and the reverse). Keras `save_weights` fails on sharded weights; don't use it in a
mesh run (or copy to an unsharded twin with `dist.to_host(variables)`).
"""

import contextlib

from zoo.errors import ZooError

STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")


class Distribution:
    """Single device, no distribution: every method is the identity or a direct call.

    Subclasses (zoo.distribute.strategies, zoo.distribute.mesh) override what differs.
    """

    name = "default"
    num_replicas = 1
    num_devices = 1
    mesh = None

    @property
    def strategy(self):
        import tensorflow as tf
        return tf.distribute.get_strategy()

    def describe(self) -> str:
        return "single device (no distribution)"

    def scope(self):
        return contextlib.nullcontext()

    def check_batch_size(self, global_batch: int) -> None:
        if global_batch % self.num_replicas:
            raise ZooError(
                f"global batch size {global_batch} is not divisible by the {self.num_replicas} "
                f"data-parallel replicas of {self.describe()}; use a multiple of "
                f"{self.num_replicas}")

    def distribute_dataset(self, dataset):
        return dataset

    def distribute_values(self, batch):
        return batch

    def run(self, fn, *args, **kwargs):
        return fn(*args, **kwargs)

    def scale_loss(self, loss):
        return loss

    def reduce_gradients(self, grads, variables):
        return [_dense(g) for g in grads]

    def apply_gradients(self, optimizer, grads, variables):
        pairs = [(g, v) for g, v in zip(grads, variables) if g is not None]
        if pairs:
            optimizer.apply_gradients(pairs)

    def reduce_mean(self, value):
        return value

    def reduce_sum(self, value):
        return value

    def gather(self, value):
        return value

    def to_host(self, value):
        """A value (tensor or variable) as a plain, unsharded host tensor."""
        import tensorflow as tf
        return tf.convert_to_tensor(value)


def _dense(g):
    import tensorflow as tf
    if isinstance(g, tf.IndexedSlices):
        return tf.convert_to_tensor(g)
    return g
