"""tf.distribute strategies (data parallel): mirrored (GPUs / virtual CPUs), multi_worker, tpu.

    dist = zoo.distribute.get(strategy="mirrored")              # all GPUs, else all CPUs
    dist = zoo.distribute.get(strategy="tpu", tpu="my-tpu")     # a Cloud TPU by name
    dist = zoo.distribute.get(strategy="multi_worker")          # cluster from TF_CONFIG

Each replica computes the losses of its share of the global batch; `reduce_gradients`
all-reduces (sums) the scaled gradients, so every replica holds the global-batch gradient
before clipping; `apply_gradients` then applies it without the second all-reduce Keras
optimizers would do in replica context.
"""

import json
import os
from typing import Optional, Sequence

from zoo.distribute.base import Distribution, _dense
from zoo.errors import ZooError


class StrategyDistribution(Distribution):
    """A `Distribution` over a tf.distribute.Strategy.

    Args:
        strategy: the tf.distribute.Strategy.
        name: 'mirrored', 'multi_worker' or 'tpu'.
        is_chief: whether this process writes checkpoints and summaries.
    """

    def __init__(self, strategy, name: str, is_chief: bool = True):
        self._strategy = strategy
        self.name = name
        self.is_chief = is_chief
        self.num_replicas = int(strategy.num_replicas_in_sync)
        self.num_devices = self.num_replicas

    @property
    def strategy(self):
        return self._strategy

    def describe(self) -> str:
        devices = getattr(self._strategy.extended, "worker_devices", ())
        kind = sorted({d.split("/")[-1].split(":")[-2] for d in devices if ":" in d})
        return (f"{type(self._strategy).__name__} with {self.num_replicas} replicas"
                + (f" ({', '.join(kind)})" if kind else ""))

    def scope(self):
        return self._strategy.scope()

    def distribute_dataset(self, dataset):
        """Global batches -> per-replica slices: replica r (global id) gets rows
        [r * B/n, (r + 1) * B/n) of every batch, on every worker, whatever the dataset's
        structure (no reliance on tf.data's auto-sharding or rebatching rewrites)."""
        import tensorflow as tf

        def dataset_fn(ctx):
            n = ctx.num_replicas_in_sync
            local = n // ctx.num_input_pipelines
            first = ctx.input_pipeline_id * local

            def parts(batch):
                def part(k):
                    return tf.nest.map_structure(lambda x: _replica_slice(x, first + k, n),
                                                 batch)
                return tf.data.Dataset.range(local).map(part)
            options = tf.data.Options()
            options.experimental_distribute.auto_shard_policy = (
                tf.data.experimental.AutoShardPolicy.OFF)
            return dataset.flat_map(parts).with_options(options)
        return self._strategy.distribute_datasets_from_function(dataset_fn)

    def distribute_values(self, batch):
        import tensorflow as tf
        n = self.num_replicas

        def value_fn(ctx):
            i = ctx.replica_id_in_sync_group

            def part(x):
                x = tf.convert_to_tensor(x)
                if x.shape.rank == 0:
                    return x
                size = x.shape[0] // n
                return x[i * size:(i + 1) * size]
            return tf.nest.map_structure(part, batch)
        self.check_batch_size(int(tf.nest.flatten(batch)[0].shape[0]))
        return self._strategy.experimental_distribute_values_from_function(value_fn)

    def run(self, fn, *args, **kwargs):
        return self._strategy.run(fn, args=args, kwargs=kwargs)

    def scale_loss(self, loss):
        # Per-replica mean over equal per-replica batches: the sum over replicas of
        # loss / n is the global mean.
        return loss / self.num_replicas

    def reduce_gradients(self, grads, variables):
        import tensorflow as tf
        grads = [_dense(g) for g in grads]
        present = [g for g in grads if g is not None]
        ctx = tf.distribute.get_replica_context()
        if not present or ctx is None or self.num_replicas == 1:
            return grads
        summed = iter(ctx.all_reduce(tf.distribute.ReduceOp.SUM, present))
        return [next(summed) if g is not None else None for g in grads]

    def apply_gradients(self, optimizer, grads, variables):
        pairs = [(g, v) for g, v in zip(grads, variables) if g is not None]
        if not pairs:
            return
        if hasattr(type(optimizer), "_all_reduce_sum_gradients"):
            # Keras optimizers all-reduce again in replica context; ours are already summed.
            optimizer._all_reduce_sum_gradients = _already_reduced  # noqa: SLF001
        else:
            pairs = [(g / self.num_replicas, v) for g, v in pairs]
        optimizer.apply_gradients(pairs)

    def reduce_mean(self, value):
        import tensorflow as tf
        return tf.nest.map_structure(
            lambda v: self._strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None), value)

    def reduce_sum(self, value):
        import tensorflow as tf
        return tf.nest.map_structure(
            lambda v: self._strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None), value)

    def gather(self, value):
        import tensorflow as tf

        def one(v):
            if isinstance(v, tf.distribute.DistributedValues):
                return self._strategy.gather(v, axis=0)
            return v
        return tf.nest.map_structure(one, value)

    def to_host(self, value):
        import tensorflow as tf
        if isinstance(value, tf.distribute.DistributedValues):
            value = self._strategy.experimental_local_results(value)[0]
        return tf.convert_to_tensor(value)


def _replica_slice(x, replica, n):
    import tensorflow as tf
    if x.shape.rank == 0:
        return x
    size = tf.shape(x, out_type=tf.int64)[0] // n
    return x[replica * size:(replica + 1) * size]


def _already_reduced(grads_and_vars):
    return list(grads_and_vars)


# -- constructing -------------------------------------------------------------------------------

def mirrored(devices: Optional[Sequence[str]] = None, num_devices: Optional[int] = None):
    """MirroredStrategy over all GPUs, else all (virtual) CPU devices, or the first N."""
    import tensorflow as tf
    if devices is None:
        gpus = tf.config.list_logical_devices("GPU")
        pool = gpus or tf.config.list_logical_devices("CPU")
        if num_devices is not None:
            if num_devices > len(pool):
                kind = "GPU" if gpus else "CPU"
                raise ZooError(f"--strategy=mirrored on {num_devices} devices, but only "
                               f"{len(pool)} {kind} device(s) are available"
                               + ("" if gpus else "; add CPU devices with --virtual_devices="
                                  f"{num_devices}"))
            pool = pool[:num_devices]
        devices = [d.name for d in pool]
    cross = None
    if not any("GPU" in d for d in devices):
        cross = tf.distribute.ReductionToOneDevice()
    strategy = tf.distribute.MirroredStrategy(devices=list(devices), cross_device_ops=cross)
    return StrategyDistribution(strategy, "mirrored")


def multi_worker(workers: Optional[Sequence[str]] = None, worker_index: Optional[int] = None):
    """MultiWorkerMirroredStrategy; the cluster comes from `workers` or TF_CONFIG."""
    import tensorflow as tf
    if workers:
        if worker_index is None:
            raise ZooError("--workers needs --worker_index (this machine's position in the "
                           "list, 0 = chief)")
        if not 0 <= worker_index < len(workers):
            raise ZooError(f"--worker_index={worker_index} is outside the {len(workers)} "
                           f"workers of --workers")
        os.environ["TF_CONFIG"] = json.dumps({"cluster": {"worker": list(workers)},
                                              "task": {"type": "worker",
                                                       "index": int(worker_index)}})
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        raise ZooError("--strategy=multi_worker needs the cluster: set TF_CONFIG on every "
                       "machine, or pass --workers=host1:port,host2:port --worker_index=I")
    try:
        cfg = json.loads(raw)
        task = cfg["task"]
        n_workers = len(cfg["cluster"].get("worker", [])) + len(cfg["cluster"].get("chief", []))
    except (ValueError, KeyError, TypeError) as e:
        raise ZooError(f"TF_CONFIG is not valid cluster JSON ({e}): {raw[:200]}") from None
    is_chief = (task.get("type") == "chief"
                or (task.get("type") == "worker" and int(task.get("index", 0)) == 0
                    and "chief" not in cfg["cluster"]))
    communication = tf.distribute.experimental.CommunicationOptions(
        implementation=tf.distribute.experimental.CommunicationImplementation.AUTO)
    strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=communication)
    dist = StrategyDistribution(strategy, "multi_worker", is_chief=is_chief)
    dist.num_workers = n_workers
    return dist


def tpu(name: Optional[str] = None):
    """TPUStrategy on a local TPU (TPU VM) or a Cloud TPU / pod slice by name."""
    import tensorflow as tf
    name = name if name is not None else os.environ.get("TPU_NAME")
    local = (tf.config.list_logical_devices("TPU") or tf.config.list_physical_devices("TPU"))
    if not name and not local:
        raise ZooError("--strategy=tpu, but no TPU is visible (tf.config.list_logical_devices("
                       "'TPU') found 0 devices) and no TPU name was given; on a TPU VM check "
                       "that libtpu is installed, for a Cloud TPU pass --tpu=NAME (or set "
                       "TPU_NAME); without a TPU use --strategy=mirrored or --mesh")
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=name or "local")
        if name and name != "local":
            tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        strategy = tf.distribute.TPUStrategy(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as e:
        raise ZooError(f"--strategy=tpu: cannot connect to TPU {name or 'local'!r}: "
                       f"{str(e).splitlines()[0]}") from None
    return StrategyDistribution(strategy, "tpu")


def create(name: str, tpu_name: Optional[str] = None, num_devices: Optional[int] = None,
           workers: Optional[Sequence[str]] = None, worker_index: Optional[int] = None):
    if name == "mirrored":
        return mirrored(num_devices=num_devices)
    if name == "multi_worker":
        return multi_worker(workers, worker_index)
    if name == "tpu":
        return tpu(tpu_name)
    raise ZooError(f"unknown strategy {name!r}")
