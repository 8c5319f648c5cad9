"""Each new variable's layout: weights from the rules, optimizer slots from their weights.

Used by the variable creator of `MeshDistribution` (real DVariables) and by
`zoo.distribute.layouts` (no devices, nothing allocated), so the report shows exactly what a
run would create.

Who creates a variable and for which weight comes from Keras's own records, not from the
Python stack: the innermost Keras name scope says whether a layer or an optimizer is creating
it (and gives the variable's path); an optimizer slot made by `add_variable_from_reference`
carries its weight's path in its name; a slot made by `add_variable` (Adafactor's factored row
and column moments, named after the weight's short name) follows the next weight of the
optimizer's `_trainable_variables` (the list `build` loops over, in order) that has that name
and a related shape. A slot's layout is derived from its weight's: same shape -> same layout; a
factored moment (one dimension reduced away) -> the weight's spec with that dimension dropped.
"""

import dataclasses
import re
from typing import Dict, List, Optional, Tuple

from zoo.distribute.rules import LayoutRules, Spec, derive_slot_spec
from zoo.errors import ZooError


@dataclasses.dataclass
class Planned:
    """One variable's layout decision."""

    path: str
    shape: Tuple[int, ...]
    dtype: str
    spec: Spec
    source: str      # which rule / weight decided it
    kind: str        # 'weight' (trainable), 'slot' (optimizer variable) or 'other'
    weight: Optional[str] = None  # for a slot: the weight it follows


def _keras_scope_stack():
    from keras.src.backend.common import global_state
    return global_state.get_global_attribute("name_scope_stack") or []


def creating_optimizer():
    """The Keras optimizer whose name scope is innermost (it is creating a slot), else None."""
    from keras.src.optimizers.base_optimizer import BaseOptimizer
    for scope in reversed(_keras_scope_stack()):
        caller = getattr(scope, "caller", None)
        if caller is not None:
            return caller if isinstance(caller, BaseOptimizer) else None
    return None


def keras_path(name: str) -> str:
    """The Keras path a variable named `name` gets in the current name scope."""
    try:
        from keras.src.backend.common.name_scope import current_path
        parent = current_path()
    except ImportError as e:
        raise ZooError(f"zoo.distribute needs Keras 3's name scopes to lay out weights "
                       f"(keras.src.backend.common.name_scope: {e}); install the Keras version "
                       f"in requirements.txt") from None
    if not parent:
        import tensorflow as tf
        parent = tf.get_current_name_scope()
    return f"{parent}/{name}" if parent else name


def _sanitized(path: str) -> str:
    return path.replace("/", "_")


class LayoutPlanner:
    """Decides each new variable's spec from the rules; optimizer slots follow their weights."""

    def __init__(self, rules: LayoutRules):
        self.rules = rules
        self.planned: List[Planned] = []
        self._weights: Dict[str, Planned] = {}      # sanitized path -> weight plan
        self._ref_cursor: Dict[int, int] = {}        # id(optimizer) -> index of last ref slot
        self._name_cursor: Dict[int, int] = {}       # id(optimizer) -> index of last named slot
        self._index: Dict[int, tuple] = {}           # id(optimizer) -> (list, ids, path -> index)
        self._unreferenced: Dict[str, int] = {}      # weight path -> named slots it has
        self._keep = []                              # keeps optimizer ids valid
        self.errors: List[ZooError] = []

    def plan(self, name: str, shape, dtype, trainable: bool = True) -> Planned:
        """The plan for the variable being created now under the current Keras name scope."""
        try:
            return self._plan(name, shape, dtype, trainable)
        except ZooError as e:
            # Keras swallows errors raised while it auto-builds layers; callers re-raise.
            self.errors.append(e)
            raise

    def raise_errors(self):
        if self.errors:
            error, self.errors = self.errors[0], []
            raise error

    @property
    def weights(self) -> List[Planned]:
        return [p for p in self.planned if p.kind == "weight"]

    def _plan(self, name, shape, dtype, trainable) -> Planned:
        path = keras_path(name)
        shape = tuple(int(d) for d in shape)
        dtype = getattr(dtype, "name", str(dtype))
        optimizer = creating_optimizer()
        kind = "slot" if optimizer is not None else ("weight" if trainable else "other")
        if not shape:
            plan = Planned(path, shape, dtype, (), "scalar", kind)
        elif optimizer is None:
            spec = self.rules.spec_for(path, shape)
            i, _ = self.rules.match(path)
            plan = Planned(path, shape, dtype, spec,
                           f"rule #{i}" if i is not None else "no rule: replicated", kind)
            self._weights[_sanitized(path)] = plan
        else:
            plan = self._slot(optimizer, name, path, shape, dtype)
        self.planned.append(plan)
        return plan

    def _slot(self, optimizer, name, path, shape, dtype) -> Planned:
        weight, nth = self._slot_weight(optimizer, name, shape)
        if weight is not None:
            if re.search(r"[/_](row|r)$", name):  # names that say which dimension was reduced
                nth = 0
            elif re.search(r"[/_](col|column|c)$", name):
                nth = 1
            spec = derive_slot_spec(weight.shape, weight.spec, shape, nth)
            if spec is not None:
                return Planned(path, shape, dtype, spec, f"follows {weight.path}", "slot",
                               weight.path)
        # A slot not tied to a weight: rules by name (same rank only), else replicated.
        i, spec = self.rules.match(path, len(shape))
        if spec is not None:
            self.rules.check(path, shape, spec)
            return Planned(path, shape, dtype, spec, f"rule #{i}", "slot")
        return Planned(path, shape, dtype, (None,) * len(shape), "no weight found: replicated",
                       "slot")

    def _slot_weight(self, optimizer, name, shape):
        """(weight plan, nth unreferenced slot of that weight) or (None, 0)."""
        key = id(optimizer)
        self._keep.append(optimizer)
        listed = getattr(optimizer, "_trainable_variables", None) or []
        weights = list(listed)
        # The optimizer's weight list is fixed while it builds its slots: its index is made
        # once per list, not once per slot (quadratic: parti_3b has 1140 weights and 2719
        # slots; 7 s of the 44 s of `zoo-layouts --model=parti_3b` under cProfile).
        cached = self._index.get(key)
        if cached is None or cached[0] is not listed or cached[1] != [id(w) for w in weights]:
            cached = (listed, [id(w) for w in weights],
                      {_sanitized(getattr(w, "path", "")): i for i, w in enumerate(weights)})
            self._index[key] = cached
        index = cached[2]
        # add_variable_from_reference: '<weight path with _>_<slot>'; the longest match wins.
        # Each '_' of the name ends a candidate prefix: looked up, not compared with every weight.
        best = None
        for end in (i for i, c in enumerate(name) if c == "_"):
            plan = self._weights.get(name[:end])
            if plan is not None:
                best = (name[:end], plan)
        if best is not None:
            if best[0] in index:
                self._ref_cursor[key] = index[best[0]]
            return best[1], 0
        # add_variable(name=<weight name>...): the next weight of the optimizer's list with
        # that name and a related shape; a weight takes at most two such slots (row, column).
        start = max(self._ref_cursor.get(key, -1) + 1, self._name_cursor.get(key, 0))
        for i in range(start, len(weights)):
            w = weights[i]
            plan = self._weights.get(_sanitized(getattr(w, "path", "")))
            if plan is None or not (name == w.name or name.startswith(f"{w.name}_")):
                continue
            nth = self._unreferenced.get(plan.path, 0)
            if nth >= 2 or derive_slot_spec(plan.shape, plan.spec, shape, nth) is None:
                continue
            self._unreferenced[plan.path] = nth + 1
            self._name_cursor[key] = i
            return plan, nth
        return None, 0
