"""Parameter counts of registered components without allocating their weights.

    count_params("model", "parti_20b")        # 20.5e9, in about a second, no 80 GB allocation

The component is built under `keras.StatelessScope(initialize_variables=False)`: Keras 3 then
creates its variables with shapes and initializers only (no tensors), and they stay
uninitialized when the scope closes. The count is the sum of the variables' shapes; the
variables are then dropped from Keras's list of pending initializations, so a later stateless
scope does not allocate them.

Building without data: the component's `build()` is called with no arguments when it accepts
that (every zoo model builds all weights from its configuration); otherwise with an input
shape derived from common attributes (`image_size` -> (None, S, S, 3); `max_length` ->
(None, L)). A component whose weights are created in `__init__` needs nothing.
"""

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


def param_counts(kind: str, name: str) -> Dict[str, int]:
    """{'total': ..., 'without_embeddings': ...} from one non-allocating build."""
    shapes = weight_shapes(kind, name)
    return {"total": total_params(shapes),
            "without_embeddings": total_params(shapes, exclude_embeddings=True)}


def total_params(shapes: Dict[str, tuple], exclude_embeddings: bool = False) -> int:
    """The number of parameters in {path: shape} (see `count_params`)."""
    return int(sum(int(np.prod(s)) for path, s in shapes.items()
                   if not (exclude_embeddings and _is_embedding(path))))


def weight_shapes(kind: str, name: str) -> Dict[str, tuple]:
    """{weight path: shape} of a registered component, without allocating any weight."""
    import keras
    from keras.src.backend.common import global_state

    reg = registry(kind)
    key = "uninitialized_variables"
    before = list(global_state.get_global_attribute(key, [], set_to_default=True))
    try:
        with keras.StatelessScope(initialize_variables=False):
            try:
                component = reg.create(name)
                _build(component, f"{kind} {name!r}")
            except ZooError:
                raise
            except Exception as e:  # noqa: BLE001 -- e.g. a plugin needing a preset path
                detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise ZooError(f"cannot count the parameters of {kind} {name!r} without "
                               f"building it: {detail}") from None
            weights = list(getattr(component, "weights", []))
            shapes = {}
            for i, v in enumerate(weights):
                path = getattr(v, "path", None) or getattr(v, "name", f"weight_{i}")
                shapes[path if path not in shapes else f"{path}#{i}"] = tuple(
                    int(d) for d in v.shape)
    finally:
        # Forget the variables created here: nothing may initialize them later.
        pending = global_state.get_global_attribute(key, [], set_to_default=True)
        keep_ids = {id(v) for v in before}
        global_state.set_global_attribute(key, [v for v in pending if id(v) in keep_ids])
    return shapes


def _build(component, what):
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
        raise ZooError(f"cannot count the parameters of {what}: its build() needs an input "
                       f"shape; let build() take no arguments (shapes from the config)")
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
