"""`get`: the `Distribution` for a run, from a strategy name or a mesh spec.

The one place that knows every kind (base.py, strategies.py, mesh.py), so none of those
imports another's subclass.
"""

from typing import Any, Optional, Sequence

from zoo.distribute.base import STRATEGIES, Distribution
from zoo.errors import ZooError


def get(strategy: str = "default", mesh: Optional[str] = None, layout_rules: Any = None,
        virtual_devices: Optional[int] = None, tpu: Optional[str] = None,
        num_devices: Optional[int] = None, workers: Optional[Sequence[str]] = None,
        worker_index: Optional[int] = None,
        allow_replicated: Optional[Sequence[str]] = None) -> Distribution:
    """The distribution for a run.

    Args:
        strategy: "default", "mirrored", "multi_worker" or "tpu" (tf.distribute, data parallel).
        mesh: a DTensor mesh spec such as "batch:2,model:4" (data + model parallel); excludes a
            non-default strategy.
        layout_rules: for a mesh, ordered (regex, spec) pairs; None takes them from gin
            (`mesh_layout.rules`, see gin/mesh/*.gin).
        virtual_devices: split the host CPU into this many logical devices first (tests, and
            trying a mesh on a laptop); must come before TF initialises its devices.
        tpu: TPU name or address for the TPU cluster resolver (None: TPU_NAME or local).
        num_devices: mirrored only: use the first N devices instead of all.
        workers, worker_index: multi_worker only: the cluster instead of TF_CONFIG.
        allow_replicated: for a mesh, regexes of large weights that may stay replicated under
            a 'model' axis; None takes `mesh_layout.allow_replicated` from gin.
    """
    if virtual_devices:
        from zoo.distribute.devices import set_virtual_devices
        set_virtual_devices(virtual_devices)
    if strategy not in STRATEGIES:
        from zoo.errors import UnknownNameError, suggest
        raise UnknownNameError(f"unknown strategy {strategy!r}; "
                               f"{suggest(strategy, STRATEGIES, what='strategy')}")
    if mesh:
        if strategy != "default":
            raise ZooError(f"--mesh={mesh} and --strategy={strategy} exclude each other: a mesh "
                           f"already spreads the batch (its 'batch' axis); drop --strategy")
        from zoo.distribute.mesh import MeshDistribution
        return MeshDistribution(mesh, layout_rules=layout_rules,
                                allow_replicated=allow_replicated)
    if strategy == "default":
        return Distribution()
    from zoo.distribute import strategies
    return strategies.create(strategy, tpu_name=tpu, num_devices=num_devices, workers=workers,
                             worker_index=worker_index)
