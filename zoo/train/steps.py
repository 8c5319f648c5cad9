"""The compiled train step: what enters it, the two tf.functions, and the checks around them.

One step is two tf.functions (docs/scaling.md, DTensor pitfall 4): `grad_step` computes the
losses and, per update group, the gradients (reduced over replicas, clipped by global norm
when the group asks); `apply_step` applies them. Between the two the loop checks on the host
that every loss and gradient norm is finite (`nonfinite`).

Only numbers with static shapes enter the step (`device_dataset`): string features (raw
captions) stay on the host, and every tensor gets its full shape, which TPUs (and XLA) need. A
step that still holds a host callback or a string op is named by `host_only_ops` before a TPU
run starts.
"""

import math
from typing import Dict, List, Optional

import numpy as np
import tensorflow as tf

from zoo.errors import ZooError
from zoo.train.task import Task, UpdateGroup

# Ops that call back into Python or exist only on the host: a TPU cannot compile them.
HOST_OPS = frozenset({"PyFunc", "PyFuncStateless", "EagerPyFunc", "PrintV2", "Print",
                      "StringFormat", "AsString"})


def _numeric(spec) -> bool:
    return getattr(spec, "dtype", None) not in (tf.string, tf.variant, tf.resource)


def _device_structure(spec, path="batch"):
    """The element spec without string entries of dicts; an error for strings elsewhere."""
    if isinstance(spec, dict):
        return {k: _device_structure(v, f"{path}[{k!r}]") for k, v in spec.items()
                if isinstance(v, dict) or _numeric(v)}
    if isinstance(spec, (tuple, list)):
        return type(spec)(_device_structure(v, f"{path}[{i}]") for i, v in enumerate(spec))
    if not _numeric(spec):
        raise ZooError(f"{path} is a {spec.dtype.name} tensor outside a dict; the compiled step "
                       f"takes numbers only: return batches as dicts (string features are then "
                       f"kept on the host)")
    return spec


def _select(value, structure):
    if isinstance(structure, dict):
        return {k: _select(value[k], s) for k, s in structure.items()}
    if isinstance(structure, (tuple, list)):
        return type(structure)(_select(v, s) for v, s in zip(value, structure))
    return value


def device_dataset(dataset: tf.data.Dataset, batch_size: int) -> tf.data.Dataset:
    """The batches as the compiled step sees them: numeric features only, static shapes.

    String features of dict batches are dropped (the task's `losses` reads token ids, not
    text). Dimension 0 of every tensor is the global batch; other dimensions the spec leaves
    open are taken from the first batch and checked on every later one (a batch of another
    shape is an error, not a recompilation).
    """
    structure = _device_structure(dataset.element_spec)
    specs = tf.nest.flatten(structure)
    for spec in specs:
        if spec.shape.rank is None:
            raise ZooError(f"a batch feature of dtype {spec.dtype.name} has unknown rank; "
                           f"Task.dataset must give every tensor a known rank")
    shapes = [[batch_size] + list(s.shape)[1:] if s.shape.rank else [] for s in specs]
    if any(d is None for shape in shapes for d in shape):
        first = tf.nest.flatten(_select(next(iter(dataset.take(1))), structure))
        shapes = [[d if d is not None else int(x.shape[i]) for i, d in enumerate(shape)]
                  for shape, x in zip(shapes, first)]

    def fix(batch):
        flat = tf.nest.flatten(_select(batch, structure))
        fixed = [tf.ensure_shape(x, shape) for x, shape in zip(flat, shapes)]
        return tf.nest.pack_sequence_as(structure, fixed)
    return dataset.map(fix)


def make_step_functions(task: Task, groups: List[UpdateGroup], dist, jit_compile: bool):
    """(grad_step, apply_step): two separate tf.functions (DTensor pitfall 4).

    With `jit_compile`, each replica's forward and backward pass is XLA-compiled (under
    MirroredStrategy an XLA cluster cannot span the replicas' devices); the cross-replica
    reduction and clipping run around it. On a TPU everything is compiled anyway.
    """
    group_names = [g.name for g in groups]

    def local_grads(batch):
        with tf.GradientTape(persistent=len(groups) > 1) as tape:
            losses, metrics = task.losses(batch, training=True)
            missing = [n for n in group_names if n not in losses]
            if missing:
                raise ZooError(f"task.losses returned no loss for update group(s) {missing}; "
                               f"it returned {sorted(losses)}")
            scaled = {n: dist.scale_loss(losses[n]) for n in group_names}
        grads = {g.name: tape.gradient(scaled[g.name], g.variables) for g in groups}
        del tape
        return losses, metrics, grads

    # On a TPU, TPUStrategy compiles the whole replica function (sync points included);
    # a nested tf.function there could hold no cross-replica sync point.
    nested = jit_compile and getattr(dist, "name", "") != "tpu"
    compiled = tf.function(local_grads, jit_compile=True) if nested else local_grads

    def replica_grads(batch):
        losses, metrics, local = compiled(batch)
        grads, norms = {}, {}
        for g in groups:
            gs = list(dist.reduce_gradients(local[g.name], g.variables))
            present = [x for x in gs if x is not None]
            norm = tf.linalg.global_norm(present) if present else tf.constant(0.0)
            if g.clip_norm is not None and present:
                clipped, _ = tf.clip_by_global_norm(present, g.clip_norm, use_norm=norm)
                it = iter(clipped)
                gs = [next(it) if x is not None else None for x in gs]
            grads[g.name] = gs
            norms[g.name] = norm
        return losses, metrics, norms, grads

    @tf.function
    def grad_step(batch):
        return dist.run(replica_grads, batch)

    def replica_apply(grads):
        for g in groups:
            dist.apply_gradients(g.optimizer, grads[g.name], g.variables)

    @tf.function
    def apply_step(grads):
        dist.run(replica_apply, grads)

    return grad_step, apply_step


def host_only_ops(concrete_function) -> List[str]:
    """'OpType (op name)' of every op in a traced function (and the functions it calls) that
    a TPU cannot run: host callbacks, prints, string tensors. Empty for a TPU-ready step."""
    from tensorflow.core.framework import types_pb2
    graph_def = concrete_function.graph.as_graph_def()
    nodes = list(graph_def.node)
    for fn in graph_def.library.function:
        nodes.extend(fn.node_def)
    found = []
    for node in nodes:
        types = []
        for attr in node.attr.values():
            types.append(attr.type)
            types.extend(attr.list.type)
        if node.op in HOST_OPS or types_pb2.DT_STRING in types:
            found.append(f"{node.op} ({node.name})")
    return found


def nonfinite(groups: List[UpdateGroup], losses: Dict[str, float],
              gnorms: Dict[str, float]) -> Optional[str]:
    """'loss in update group 'g' (...)' or 'gradient ...' for the first bad group, else None."""
    for g in groups:
        value = losses.get(g.name)
        if value is not None and not math.isfinite(value):
            return f"loss in update group {g.name!r} (loss {g.name!r} = {value})"
        norm = gnorms.get(g.name)
        if norm is not None and not math.isfinite(norm):
            return f"gradient in update group {g.name!r} (global norm = {norm})"
    return None


def to_float(x) -> float:
    return float(np.asarray(x))
