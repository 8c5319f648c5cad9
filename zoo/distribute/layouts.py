"""Layout reports: each weight's shape, sharding and bytes per device, without allocating it.

    report = plan_model("parti_3b", "batch:128,model:4", rules, optimizer="adafactor")
    print(format_report(report))

The model (and the optimizer's slots) are built under a variable creator that asks the same
`LayoutPlanner` a mesh run uses and returns a scalar placeholder instead of the weight (the
weight's shape comes from tracing its initializer in a scratch graph, which allocates
nothing), so parti_20b is planned in a few seconds and MiB of memory, and no device of the
mesh is needed.
"""

import dataclasses
from typing import Dict, List, Optional, Sequence

from zoo.distribute.planner import LayoutPlanner, Planned
from zoo.distribute.rules import (LARGE_PARAMS, STANDARD_AXES, LayoutRules, mesh_string,
                                  num_devices_of, parse_mesh, unsharded_large_weights)
from zoo.errors import ZooError

GIB = 1024 ** 3
MIB = 1024 ** 2


@dataclasses.dataclass
class Row:
    plan: Planned
    params: int
    bytes_total: int
    bytes_per_device: int
    flagged: bool


@dataclasses.dataclass
class Report:
    model: str
    mesh: str
    optimizer: Optional[str]
    rows: List[Row]
    model_axis_size: int

    def total(self, kind: Optional[str] = None) -> int:
        return sum(r.bytes_per_device for r in self.rows if kind is None or r.plan.kind == kind)

    def params(self, kind: str = "weight") -> int:
        return sum(r.params for r in self.rows if r.plan.kind == kind)

    @property
    def flagged(self) -> List[Row]:
        return [r for r in self.rows if r.flagged]


def _dtype_size(dtype: str) -> int:
    import numpy as np
    try:
        return np.dtype(dtype).itemsize
    except TypeError:
        import tensorflow as tf
        return tf.as_dtype(dtype).size


def plan_model(model: str, mesh: str, rules: Sequence, optimizer: Optional[str] = "adafactor",
               overrides: Optional[Dict] = None, allow_replicated: Sequence[str] = ()) -> Report:
    """Plans every weight (and optimizer slot) of registered model `model` on `mesh`.

    Args:
        model: a registered model name (its gin bindings apply), e.g. 'parti_3b'.
        mesh: a mesh spec, e.g. 'batch:128,model:4' (no devices needed).
        rules: ordered (regex, spec) layout rules.
        optimizer: a registered optimizer name (OPTIMIZERS, e.g. 'adafactor'), a Keras
            optimizer name ('adam'), or None for the weights only.
        overrides: constructor overrides for the model.
        allow_replicated: regexes of large weights that may stay replicated (not flagged).
    """
    import tensorflow as tf

    from zoo import plugins
    plugins.ensure_loaded()
    axes = parse_mesh(mesh)
    planner = LayoutPlanner(LayoutRules(rules, axes))

    def creator(next_creator, **kw):
        shape, dtype = _shape_and_dtype(kw.get("initial_value"), kw.get("dtype"))
        plan = planner.plan(kw.get("name") or "Variable", shape, dtype,
                            kw.get("trainable", True) is not False)
        placeholder = tf.zeros([], dtype=plan.dtype)
        return next_creator(initial_value=placeholder, trainable=kw.get("trainable", True),
                            name=kw.get("name"), dtype=placeholder.dtype)

    from zoo.registry import MODELS
    with tf.variable_creator_scope(creator):
        net = MODELS.create(model, **dict(overrides or {}))
        net.build()
        if optimizer:
            opt = _make_optimizer(optimizer)
            opt.build(net.trainable_variables)
    planner.raise_errors()
    model_axis = dict(axes).get("model", 1)
    unsharded = set(unsharded_large_weights(
        [(p.path, p.shape, p.spec) for p in planner.weights], axes, allow_replicated))
    rows = []
    for plan in planner.planned:
        params = 1
        for d in plan.shape:
            params *= d
        size = _dtype_size(plan.dtype)
        shards = planner.rules.shards(plan.spec) if plan.spec else 1
        flagged = plan.kind == "weight" and plan.path in unsharded
        rows.append(Row(plan, params, params * size, -(-params // shards) * size, flagged))
    return Report(model, mesh_string(axes), optimizer, rows, model_axis)


def _shape_and_dtype(value, dtype):
    """A new variable's shape and dtype without computing its value: a callable initial value
    (Keras passes `lambda: initializer(shape)`) is traced in a scratch graph."""
    import tensorflow as tf
    if callable(value):
        with tf.Graph().as_default():
            value = tf.convert_to_tensor(value(), dtype=dtype)
        return tuple(value.shape), value.dtype
    value = tf.convert_to_tensor(value, dtype=dtype)
    return tuple(value.shape), value.dtype


def _make_optimizer(name: str):
    from zoo.registry import OPTIMIZERS
    if name in OPTIMIZERS.list():
        return OPTIMIZERS.create(name)
    import keras
    try:
        return keras.optimizers.get(name)
    except ValueError:
        from zoo.errors import suggest
        raise ZooError(f"unknown optimizer {name!r}; "
                       f"{suggest(name, OPTIMIZERS.list() + ['adam', 'sgd'], 'optimizer')}") \
            from None


def _spec_text(spec) -> str:
    if not spec:
        return "scalar"
    return "(" + ", ".join(a if a is not None else "-" for a in spec) + ")"


def format_report(report: Report, show_slots: bool = False,
                  device_memory: Optional[float] = None) -> str:
    """The report as text: a table of weights (and slots), totals and warnings."""
    rows = [r for r in report.rows if r.plan.kind == "weight" or show_slots]
    path_w = min(max([len(r.plan.path) for r in rows] + [6]), 72)
    lines = [f"{report.model} on mesh {report.mesh} ({num_devices_of(parse_mesh(report.mesh))} "
             f"devices); optimizer: {report.optimizer or 'none'}",
             f"{'weight':<{path_w}}  {'shape':<16} {'layout':<22} {'MiB/device':>10}"]
    for r in rows:
        mark = "  ! replicated, >1M params" if r.flagged else ""
        lines.append(f"{r.plan.path:<{path_w}}  {str(list(r.plan.shape)):<16} "
                     f"{_spec_text(r.plan.spec):<22} {r.bytes_per_device / MIB:>10.2f}{mark}")
    weights, slots, other = (report.total("weight"), report.total("slot"), report.total("other"))
    total = report.total()
    replicated = [r for r in report.rows if r.plan.kind == "weight"
                  and all(a is None for a in r.plan.spec)]
    lines.append("")
    lines.append(f"weights: {report.params('weight'):,} parameters in "
                 f"{sum(1 for r in report.rows if r.plan.kind == 'weight')} tensors, "
                 f"{sum(r.bytes_total for r in report.rows if r.plan.kind == 'weight') / GIB:.2f} "
                 f"GiB in total; replicated: {len(replicated)} tensors, "
                 f"{sum(r.params for r in replicated):,} parameters")
    lines.append(f"per device: weights {weights / GIB:.3f} GiB + optimizer state "
                 f"{slots / GIB:.3f} GiB + other {other / GIB:.3f} GiB = {total / GIB:.3f} GiB "
                 f"(activations not included)")
    if device_memory is not None:
        verdict = "fits" if total <= device_memory else "does NOT fit"
        lines.append(f"device memory {device_memory / GIB:.1f} GiB: {verdict} "
                     f"({100 * total / device_memory:.0f}% used by weights and optimizer state)")
    flagged = report.flagged
    if flagged:
        lines.append(f"WARNING: {len(flagged)} weight(s) over {LARGE_PARAMS:,} parameters are "
                     f"replicated although the mesh has a model axis of size "
                     f"{report.model_axis_size}: " + ", ".join(r.plan.path for r in flagged[:5])
                     + (" ..." if len(flagged) > 5 else "") + "; add layout rules for them")
    elif report.model_axis_size > 1:
        lines.append(f"every weight over {LARGE_PARAMS:,} parameters is sharded on 'model'")
    return "\n".join(lines)


def parse_bytes(text: str) -> float:
    """'16GiB', '16G', '512MiB', '1e9' -> bytes."""
    import re
    m = re.fullmatch(r"\s*([0-9.eE+]+)\s*([KMGT]?)(i?B)?\s*", str(text))
    if not m:
        raise ZooError(f"cannot read memory size {text!r}; write it like 16GiB")
    scale = {"": 1, "K": 1024, "M": MIB, "G": GIB, "T": 1024 * GIB}[m.group(2)]
    return float(m.group(1)) * scale


__all__ = ["plan_model", "format_report", "parse_bytes", "Report", "Row", "STANDARD_AXES"]
