"""Parameter counts of registered components without allocating their weights.

    count_params("model", "parti_20b")        # 20.5e9, in about a second, no 80 GB allocation
    param_counts("image_tokenizer", "vit_vqgan_small")["groups"]   # {'encoder': ..., ...}

The component is built under `keras.StatelessScope(initialize_variables=False)`: Keras 3 then
creates its variables with shapes and initializers only (no tensors), and they stay
uninitialized when the scope closes. The count is the sum of the variables' shapes; the
variables are then dropped from Keras's list of pending initializations, so a later stateless
scope does not allocate them.

Building without data: the component's `build()` is called with no arguments when it accepts
that (every zoo model builds all weights from its configuration); otherwise with an input
shape derived from common attributes (`image_size` -> (None, S, S, 3); `max_length` ->
(None, L)). A component whose weights are created in `__init__` needs nothing.

Parts: a component may name groups of its top-level parts in a class attribute
`param_groups = {"encoder": ("patch_embed", "encoder", ...), ...}` (the ViT-VQGAN does:
the paper's size table counts one side, encoder or decoder); `param_counts` then adds each
group's count, so `zoo-list --params` can print them next to the total.
"""

import contextlib
import inspect
from typing import Dict

import numpy as np

from zoo.errors import ZooError
from zoo.registry import registry

# Parameter names that hold embeddings (input lookups and output logits over a vocabulary).
EMBEDDING_PARTS = ("token_embedding", "position_embedding", "row_embedding",
                   "column_embedding", "logits", "unconditional_embedding")


def count_params(kind: str, name: str, exclude_embeddings: bool = False) -> int:
    """Trainable + non-trainable parameters of registered component `name` of `kind`.

    Args:
        kind: registry kind, e.g. "model", "image_tokenizer", "upsampler", "text_encoder".
        name: registered name, e.g. "parti_350m".
        exclude_embeddings: leave out token/position embeddings and output logits (the
            convention behind Parti's Table 1, which matches the transformer layers only).
    """
    return total_params(weight_shapes(kind, name), exclude_embeddings)


def param_counts(kind: str, name: str) -> Dict:
    """{'total': ..., 'without_embeddings': ..., 'groups': {group: count}} from one
    non-allocating build (`groups` is empty unless the component declares `param_groups`)."""
    shapes, groups = _weights(kind, name)
    return {"total": total_params(shapes),
            "without_embeddings": total_params(shapes, exclude_embeddings=True),
            "groups": {group: total_params({p: s for p, s in shapes.items()
                                            if _part(p) in parts})
                       for group, parts in groups.items()}}


def total_params(shapes: Dict[str, tuple], exclude_embeddings: bool = False) -> int:
    """The number of parameters in {path: shape} (see `count_params`)."""
    return int(sum(int(np.prod(s)) for path, s in shapes.items()
                   if not (exclude_embeddings and _is_embedding(path))))


def weight_shapes(kind: str, name: str) -> Dict[str, tuple]:
    """{weight path: shape} of a registered component, without allocating any weight."""
    return _weights(kind, name)[0]


@contextlib.contextmanager
def unallocated():
    """Keras variables created inside get shapes but no values, and are never initialized
    later: build anything, however large, to read its weights' shapes."""
    import keras
    from keras.src.backend.common import global_state

    key = "uninitialized_variables"
    before = list(global_state.get_global_attribute(key, [], set_to_default=True))
    try:
        with keras.StatelessScope(initialize_variables=False):
            yield
    finally:
        # Forget the variables created here: nothing may initialize them later.
        pending = global_state.get_global_attribute(key, [], set_to_default=True)
        keep_ids = {id(v) for v in before}
        global_state.set_global_attribute(key, [v for v in pending if id(v) in keep_ids])


def shapes_of(component) -> Dict[str, tuple]:
    """{weight path: shape} of a built component."""
    shapes = {}
    for i, v in enumerate(getattr(component, "weights", [])):
        path = getattr(v, "path", None) or getattr(v, "name", f"weight_{i}")
        shapes[path if path not in shapes else f"{path}#{i}"] = tuple(int(d) for d in v.shape)
    return shapes


def _weights(kind: str, name: str):
    """({weight path: shape}, the component's param_groups) from a non-allocating build."""
    reg = registry(kind)
    reg.entry(name)  # an unknown name stays an UnknownNameError, with suggestions
    with unallocated():
        try:
            component = reg.create(name)
            build(component, f"{kind} {name!r}")
        except Exception as e:  # noqa: BLE001 -- e.g. a plugin needing a preset path
            detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ZooError(f"cannot count the parameters of {kind} {name!r} without "
                           f"building it: {detail}") from None
        return shapes_of(component), dict(getattr(component, "param_groups", None) or {})


def _part(path: str) -> str:
    """The top-level part of a weight path below the component's own name."""
    parts = path.split("/")
    return parts[1] if len(parts) > 1 else parts[0]


def build(component, what):
    """Builds `component`'s weights from its configuration: `build()` when it takes no
    arguments, else with an input shape from its attributes (see the module docstring)."""
    build = getattr(component, "build", None)
    if build is None or getattr(component, "built", False):
        return
    try:
        params = inspect.signature(build).parameters
    except (TypeError, ValueError):
        params = {}
    required = [p for p in params.values()
                if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if not required:
        build()
        return
    shape = _input_shape(component)
    if shape is None:
        raise ZooError(f"cannot build {what} from its configuration: its build() needs an "
                       f"input shape; let build() take no arguments (shapes from the config)")
    build(shape)


def _input_shape(component):
    size = getattr(component, "image_size", None)
    if size is not None:
        h, w = (size, size) if isinstance(size, int) else tuple(size)
        return (None, h, w, 3)
    length = getattr(component, "max_length", None)
    if isinstance(length, int):
        return (None, length)
    return None


def _is_embedding(path: str) -> bool:
    parts = path.split("/")
    return any(p in EMBEDDING_PARTS for p in parts)
