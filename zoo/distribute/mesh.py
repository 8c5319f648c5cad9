"""Data + model parallelism on a DTensor mesh: weights created directly as sharded DVariables.

Inside `MeshDistribution.scope()`, a `tf.variable_creator_scope` creates every variable as a
`dtensor.DVariable` with the layout the `LayoutPlanner` gives it (zoo/distribute/planner.py:
weights from the gin layout rules of zoo/distribute/rules.py, optimizer slots from their
weights). At the end of the scope, a weight over 1M parameters that no rule shards on a
'model' axis is an error (unless `mesh_layout.allow_replicated` names it).

The other checked pitfalls are handled by `MeshDistribution.reduce_gradients` (IndexedSlices
made dense, gradients relaid to their weights' layouts, recorded at creation because
`fetch_layout` fails inside tf.function); the loop keeps backward and apply in two tf.functions.
Two more found here (TF 2.21): variables read back after an assign in the same tf.function,
and slices/KV-cache updates DTensor cannot lay out (zoo/distribute/dtensor_compat.py, active
inside `scope()` and `run()` only).
"""

import contextlib
from typing import Dict, List, Optional, Sequence

from zoo.distribute.base import Distribution, _dense
from zoo.distribute.dtensor_compat import default_mesh, dtensor_compat, laid_out_variable_class
from zoo.distribute.planner import LayoutPlanner, Planned
from zoo.distribute.rules import (BATCH_AXIS, LayoutRules, Spec, check_large_weights_sharded,
                                  gin_mesh_layout, mesh_string, num_devices_of, parse_mesh)
from zoo.errors import ZooError


class MeshDistribution(Distribution):
    """Data + model parallelism with DTensor on a mesh such as 'batch:2,model:4'.

    Args:
        mesh: the mesh spec string.
        layout_rules: ordered (regex, spec) pairs; None takes `mesh_layout.rules` from gin.
        device_type: 'CPU', 'GPU' or 'TPU'; None picks TPU, then GPU, then CPU.
        allow_replicated: regexes of large weights that may stay replicated under a 'model'
            axis; None takes `mesh_layout.allow_replicated` from gin.
    """

    name = "mesh"

    def __init__(self, mesh: str, layout_rules=None, device_type: Optional[str] = None,
                 allow_replicated: Optional[Sequence[str]] = None):
        import tensorflow as tf
        from tensorflow.experimental import dtensor

        from zoo.distribute import devices
        self.axes = parse_mesh(mesh)
        self.spec = mesh_string(self.axes)
        if layout_rules is None:
            layout_rules = gin_mesh_layout().rules
        if allow_replicated is None:
            allow_replicated = gin_mesh_layout().allow_replicated
        self.allow_replicated = list(allow_replicated)
        self.rules = LayoutRules(layout_rules, self.axes)
        device_type = device_type or devices.accelerator_type()
        if device_type == "TPU":
            dtensor.initialize_accelerator_system("TPU")
        n_clients = dtensor.num_clients()
        local = devices.local_devices(device_type)
        available = len(local) * n_clients
        wanted = num_devices_of(self.axes)
        if wanted != available:
            hint = ("; on CPU, ask for virtual devices with --virtual_devices="
                    f"{wanted}" if device_type == "CPU" else "")
            raise ZooError(
                f"mesh {self.spec} has {' x '.join(str(s) for _, s in self.axes)} = {wanted} "
                f"devices but {available} {device_type} device(s) are available "
                f"({len(local)} local x {n_clients} client(s)); the mesh size must equal the "
                f"device count{hint}")
        names = [n for n, _ in self.axes]
        shape = [s for _, s in self.axes]
        if n_clients > 1:
            self.mesh = dtensor.create_distributed_mesh(list(zip(names, shape)),
                                                        device_type=device_type)
        else:
            self.mesh = dtensor.create_mesh(list(zip(names, shape)),
                                            devices=[d.name for d in local],
                                            device_type=device_type)
        self.device_type = device_type
        self.num_devices = wanted
        self.num_replicas = dict(self.axes).get(BATCH_AXIS, 1)
        self._layouts: Dict[int, object] = {}     # id(tf variable) -> dtensor.Layout
        self._keep = []                            # keeps those ids valid
        self.planner = LayoutPlanner(self.rules)
        del tf

    def describe(self) -> str:
        return f"DTensor mesh {self.spec} on {self.num_devices} {self.device_type} device(s)"

    # -- layouts --------------------------------------------------------------------------------

    def layout(self, spec: Spec):
        from tensorflow.experimental import dtensor
        return dtensor.Layout([a if a is not None else dtensor.UNSHARDED for a in spec],
                              self.mesh)

    def replicated(self, rank: int):
        from tensorflow.experimental import dtensor
        return dtensor.Layout.replicated(self.mesh, rank)

    def batch_layout(self, rank: int, batch_size: Optional[int] = None):
        """Dimension 0 sharded on 'batch' (replicated for scalars or if the mesh has none)."""
        if rank == 0 or BATCH_AXIS not in dict(self.axes):
            return self.replicated(rank)
        if batch_size is not None and batch_size % self.num_replicas:
            raise ZooError(f"batch size {batch_size} is not divisible by the mesh's batch axis "
                           f"({self.num_replicas}) of {self.spec}")
        return self.layout((BATCH_AXIS,) + (None,) * (rank - 1))

    def variable_layout(self, variable):
        """The layout a variable was created with (eagerly fetched as a fallback)."""
        from tensorflow.experimental import dtensor
        tf_var = getattr(variable, "value", variable) if _is_keras_var(variable) else variable
        layout = self._layouts.get(id(tf_var))
        if layout is None:
            layout = dtensor.fetch_layout(tf_var)
            self._layouts[id(tf_var)] = layout
            self._keep.append(tf_var)
        return layout

    def _creator(self, next_creator, **kw):
        import tensorflow as tf
        from tensorflow.experimental import dtensor
        with tf.init_scope():
            value = kw["initial_value"]
            value = value() if callable(value) else value
            if dtensor.is_dtensor(value):
                value = dtensor.unpack(dtensor.relayout(
                    value, self.replicated(value.shape.rank)))[0]
            value = tf.convert_to_tensor(value, dtype=kw.get("dtype"))
            plan = self.planner.plan(kw.get("name") or "Variable", value.shape, value.dtype,
                                     kw.get("trainable", True) is not False)
            spec = plan.spec
            layout = self.layout(spec)
            value = dtensor.relayout(dtensor.copy_to_mesh(value, self.replicated(len(spec))),
                                     layout)
            var = laid_out_variable_class()(value, layout=layout,
                                             trainable=kw.get("trainable", True),
                                             name=kw.get("name"))
        self._layouts[id(var)] = layout
        self._keep.append(var)
        return var

    def scope(self):
        import tensorflow as tf

        @contextlib.contextmanager
        def both():
            first = len(self.planner.planned)
            with tf.variable_creator_scope(self._creator), default_mesh(self.mesh), \
                    dtensor_compat():
                yield
            self.planner.raise_errors()
            new = [(p.path, p.shape, p.spec) for p in self.planner.planned[first:]
                   if p.kind == "weight"]
            check_large_weights_sharded(new, self.axes, self.allow_replicated)
        return both()

    # -- data -----------------------------------------------------------------------------------

    def distribute_values(self, batch):
        """A global batch (nested tensors) -> DTensors with dim 0 on 'batch' (strings replicated)."""
        import tensorflow as tf
        from tensorflow.experimental import dtensor

        def put(x):
            if dtensor.is_dtensor(x):
                return x
            x = tf.convert_to_tensor(x)
            rank = x.shape.rank
            if x.dtype == tf.string or rank == 0:
                return dtensor.copy_to_mesh(x, self.replicated(rank))
            layout = self.batch_layout(rank, int(x.shape[0]))
            return dtensor.relayout(dtensor.copy_to_mesh(x, self.replicated(rank)), layout)
        return tf.nest.map_structure(put, batch)

    def distribute_dataset(self, dataset):
        return _MappedIterable(dataset, self.distribute_values)

    # -- steps ----------------------------------------------------------------------------------

    def run(self, fn, *args, **kwargs):
        with default_mesh(self.mesh), dtensor_compat():
            return fn(*args, **kwargs)

    def reduce_gradients(self, grads, variables):
        from tensorflow.experimental import dtensor
        out = []
        for g, v in zip(grads, variables):
            if g is None:
                out.append(None)
                continue
            out.append(dtensor.relayout(_dense(g), self.variable_layout(v)))
        return out

    def reduce_mean(self, value):
        return self._to_host_structure(value)

    def reduce_sum(self, value):
        return self._to_host_structure(value)

    def gather(self, value):
        return self._to_host_structure(value)

    def to_host(self, value):
        import tensorflow as tf
        from tensorflow.experimental import dtensor
        if _is_keras_var(value):
            value = value.value
        if isinstance(value, tf.Variable):
            value = value.read_value()
        if not dtensor.is_dtensor(value):
            return tf.convert_to_tensor(value)
        if not tf.executing_eagerly():
            return value
        rank = value.shape.rank
        return dtensor.unpack(dtensor.relayout(value, self.replicated(rank)))[0]

    def _to_host_structure(self, value):
        import tensorflow as tf
        return tf.nest.map_structure(self.to_host, value)

    @property
    def planned(self) -> List[Planned]:
        """Every variable created in scope(), in order, with its spec and why."""
        return list(self.planner.planned)


class _MappedIterable:
    """Iterates a dataset and maps each element eagerly (DTensor packing is eager)."""

    def __init__(self, dataset, fn):
        self.dataset = dataset
        self.fn = fn

    def __iter__(self):
        for element in self.dataset:
            yield self.fn(element)


def _is_keras_var(v) -> bool:
    from keras.src.backend.common.variables import Variable
    return isinstance(v, Variable)
