"""Mesh specs and layout rules: which mesh axis each dimension of each weight is split on.

A mesh is written `batch:128,model:4` (axis:size, outermost first). Layout rules are an ordered
list of (regex, spec) pairs from weight paths to sharding specs, one entry per weight dimension
(a mesh axis name or None). The first rule whose regex `re.search`es the weight's Keras path
(`decoder/layer_3/mlp/wi/kernel`) wins; unmatched weights are replicated. Rules live in gin:

    # gin/mesh/parti_3b_model4.gin (+ mesh/parti_megatron_rules.gin)
    mesh_layout.mesh = 'batch:128,model:4'
    mesh_layout.rules = [
        ('attention[/_](query|key|value)[/_]kernel', (None, 'model')),
        ('mlp[/_]wi[/_]kernel', (None, 'model')),
        ...
    ]
    mesh_layout.allow_replicated = ['some_big_table']   # see LARGE_PARAMS

Everything here works from axis sizes alone (no devices, no TensorFlow), so layouts can be
planned for a pod on a laptop (zoo/distribute/layouts.py) and checked before a run starts.
"""

import re
from typing import List, NamedTuple, Optional, Sequence, Tuple

from zoo.errors import ZooError, suggest

Spec = Tuple[Optional[str], ...]
# Axis names a rule may use on a mesh that lacks them (they then mean "unsharded"), so one
# rules file serves `batch:8` and `batch:2,model:4`.
STANDARD_AXES = ("batch", "model")
BATCH_AXIS = "batch"
MODEL_AXIS = "model"
# A weight bigger than this left replicated under a model axis is an error (unless allowed).
LARGE_PARAMS = 1_000_000


# -- mesh specs ---------------------------------------------------------------------------------

def parse_mesh(spec: str) -> List[Tuple[str, int]]:
    """'batch:2,model:4' -> [('batch', 2), ('model', 4)], with one-line errors."""
    if not isinstance(spec, str) or not spec.strip():
        raise ZooError(f"mesh {spec!r} is empty; write it like --mesh=batch:2,model:4")
    axes = []
    for part in spec.split(","):
        m = re.fullmatch(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*[:=]\s*(\d+)\s*", part)
        if not m:
            raise ZooError(f"mesh {spec!r}: cannot read {part.strip()!r}; write axis:size "
                           f"pairs separated by commas, like --mesh=batch:2,model:4")
        name, size = m.group(1), int(m.group(2))
        if size < 1:
            raise ZooError(f"mesh {spec!r}: axis {name!r} has size {size}; sizes must be >= 1")
        if name in dict(axes):
            raise ZooError(f"mesh {spec!r}: axis {name!r} appears twice")
        axes.append((name, size))
    return axes


def mesh_string(axes: Sequence[Tuple[str, int]]) -> str:
    return ",".join(f"{n}:{s}" for n, s in axes)


def num_devices_of(axes) -> int:
    n = 1
    for _, s in axes:
        n *= s
    return n


# -- layout rules -------------------------------------------------------------------------------

class MeshLayout(NamedTuple):
    """What gin's `mesh_layout` holds."""

    mesh: Optional[str]
    rules: List
    allow_replicated: List[str]


def mesh_layout(mesh: Optional[str] = None, rules: Sequence = (),
                allow_replicated: Sequence[str] = ()) -> MeshLayout:
    """Gin configurable: a mesh default and the ordered layout rules.

    Args:
        mesh: the mesh used when --mesh is not given, e.g. 'batch:128,model:4' (None: no mesh
            unless --mesh says so).
        rules: ordered (regex, spec) pairs; spec has one entry per weight dimension, a mesh
            axis name or None. First match wins; unmatched weights are replicated.
        allow_replicated: regexes of weights over LARGE_PARAMS parameters that may stay
            replicated on a mesh with a 'model' axis (any other is an error at start-up).
    """
    return MeshLayout(mesh, list(rules), list(allow_replicated))


def _register_gin():
    import gin
    try:
        return gin.external_configurable(mesh_layout, name="mesh_layout",
                                          module="zoo.distribute")
    except ValueError:  # already registered (module reloaded)
        return None


_GIN_MESH_LAYOUT = _register_gin()


def gin_mesh_layout() -> MeshLayout:
    """(mesh, rules, allow_replicated) as bound in gin (may be unset: (None, [], []))."""
    fn = _GIN_MESH_LAYOUT or mesh_layout
    return fn()


class LayoutRules:
    """Ordered regex rules from weight paths to sharding specs, checked against mesh axes.

    Works from axis sizes alone (no devices), so layouts can be planned for a pod on a laptop.

    Args:
        rules: ordered (regex, spec) pairs.
        axes: [(axis name, size), ...] of the mesh.
    """

    def __init__(self, rules: Sequence, axes: Sequence[Tuple[str, int]]):
        self.axes = dict(axes)
        self.rules = []
        for i, rule in enumerate(rules or ()):
            if not isinstance(rule, (tuple, list)) or len(rule) != 2:
                raise ZooError(f"layout rule #{i} {rule!r} is not a (regex, spec) pair")
            pattern, spec = rule
            try:
                regex = re.compile(pattern)
            except (re.error, TypeError) as e:
                raise ZooError(f"layout rule #{i}: bad regex {pattern!r}: {e}") from None
            if isinstance(spec, str) or not isinstance(spec, (tuple, list)):
                raise ZooError(f"layout rule #{i} ({pattern!r}): spec {spec!r} must be a tuple "
                               f"with one mesh axis name or None per weight dimension, e.g. "
                               f"(None, 'model')")
            clean = []
            for axis in spec:
                if axis is None or axis == "unsharded":
                    clean.append(None)
                elif axis in self.axes:
                    clean.append(axis)
                elif axis in STANDARD_AXES:
                    clean.append(None)  # e.g. 'model' on a batch-only mesh
                else:
                    raise ZooError(f"layout rule #{i} ({pattern!r}): unknown mesh axis {axis!r}; "
                                   f"{suggest(str(axis), list(self.axes), what='mesh axis')}")
            used = [a for a in clean if a is not None]
            if len(used) != len(set(used)):
                raise ZooError(f"layout rule #{i} ({pattern!r}): spec {tuple(spec)} uses a mesh "
                               f"axis twice")
            self.rules.append((pattern, regex, tuple(clean)))

    def match(self, path: str, rank: Optional[int] = None):
        """(rule index, spec) of the first rule matching `path` (and `rank` if given)."""
        for i, (_, regex, spec) in enumerate(self.rules):
            if regex.search(path) and (rank is None or len(spec) == rank):
                return i, spec
        return None, None

    def spec_for(self, path: str, shape: Sequence[int]) -> Spec:
        """The spec for a weight; replicated when no rule matches. Checks rank and sizes."""
        shape = tuple(int(d) for d in shape)
        i, spec = self.match(path)
        if spec is None:
            return (None,) * len(shape)
        if len(spec) != len(shape):
            raise ZooError(f"layout rule #{i} ({self.rules[i][0]!r}) gives spec {spec} of rank "
                           f"{len(spec)} to weight {path!r} of shape {list(shape)} (rank "
                           f"{len(shape)}); make the regex more specific or fix the spec")
        self.check(path, shape, spec)
        return spec

    def check(self, path: str, shape: Sequence[int], spec: Spec) -> None:
        for dim, (size, axis) in enumerate(zip(shape, spec)):
            if axis is not None and size % self.axes[axis]:
                raise ZooError(f"weight {path!r} of shape {list(shape)}: dimension {dim} (size "
                               f"{size}) is sharded on mesh axis {axis!r} of size "
                               f"{self.axes[axis]}, and {size} is not divisible by "
                               f"{self.axes[axis]}; change the mesh or the layout rule")

    def shards(self, spec: Spec) -> int:
        """Into how many pieces a tensor with `spec` is cut."""
        n = 1
        for axis in spec:
            if axis is not None:
                n *= self.axes[axis]
        return n


def derive_slot_spec(weight_shape, weight_spec: Spec, slot_shape, nth: int = 0):
    """An optimizer slot's spec from its weight's spec, or None if the shapes do not relate.

    Same shape: the weight's spec. One dimension fewer (a factored second moment): the
    weight's spec without the reduced dimension. When several dimensions could have been
    reduced (equal sizes) and they give different specs, the `nth` such slot of a weight
    takes the `nth` candidate from the last dimension backwards (Adafactor makes the row
    statistics, last dimension reduced, before the column statistics).
    """
    weight_shape = tuple(int(d) for d in weight_shape)
    slot_shape = tuple(int(d) for d in slot_shape)
    if slot_shape == weight_shape:
        return tuple(weight_spec)
    if len(slot_shape) == 0:
        return ()
    if len(slot_shape) == len(weight_shape) - 1:
        dims = [d for d in range(len(weight_shape))
                if weight_shape[:d] + weight_shape[d + 1:] == slot_shape]
        specs = []
        for d in reversed(dims):
            s = tuple(weight_spec[:d]) + tuple(weight_spec[d + 1:])
            if s not in specs:
                specs.append(s)
        if specs:
            return specs[min(nth, len(specs) - 1)]
    return None


def unsharded_large_weights(weights, axes, allow: Sequence[str] = ()) -> List[str]:
    """Paths of weights over LARGE_PARAMS parameters that are replicated although the mesh
    has a 'model' axis of size > 1, except those matching an `allow` regex.

    `weights`: (path, shape, spec) triples.
    """
    if dict(axes).get(MODEL_AXIS, 1) <= 1:
        return []
    allowed = [re.compile(p) for p in allow or ()]
    out = []
    for path, shape, spec in weights:
        params = 1
        for d in shape:
            params *= int(d)
        if (params > LARGE_PARAMS and all(a is None for a in spec)
                and not any(r.search(path) for r in allowed)):
            out.append(path)
    return out


def check_large_weights_sharded(weights, axes, allow: Sequence[str] = ()) -> None:
    """ZooError naming the large weights no rule shards on the mesh's 'model' axis."""
    bad = unsharded_large_weights(weights, axes, allow)
    if bad:
        raise ZooError(
            f"{len(bad)} weight(s) over {LARGE_PARAMS:,} parameters match no layout rule and "
            f"would be replicated on every device of the 'model' axis: "
            f"{', '.join(bad[:4])}{' ...' if len(bad) > 4 else ''}; add a rule to "
            f"mesh_layout.rules, or allow it with mesh_layout.allow_replicated = "
            f"[{bad[0]!r}]")
