"""Helpers shared by the text-encoder tasks: building components from names and configs, pooling.

A task stores the *resolved* arguments of what it built (`component_options`), so that
`TaskClass(**task.config())` rebuilds the same models without gin.
"""

from typing import Any, Dict

import keras
from keras import ops

from zoo.errors import ZooError
from zoo.layers.arguments import NOT_ARCHITECTURE
from zoo.registry import Registry, as_json, is_json_value


def component_options(registry: Registry, name: str, built, overrides=None) -> Dict[str, Any]:
    """The arguments that rebuild `built` (created as `registry.create(name, **overrides)`).

    Taken from `built.get_config()` for a registered class, else from the gin bindings plus
    `overrides`; kept only where the registered component accepts them and they are plain
    JSON values.
    """
    entry = registry.entry(name)
    config = {}
    # A registered class rebuilds from its get_config(); a builder function (which may take
    # other arguments than what it builds) from the arguments it was given.
    if isinstance(entry.obj, type) and isinstance(built, entry.obj) and hasattr(built,
                                                                               "get_config"):
        try:
            config = dict(built.get_config())
        except (NotImplementedError, TypeError):
            config = {}
    if not config:
        config = registry.resolve(name, overrides)
    accepted = entry.params
    out = {}
    for key, value in config.items():
        if key in NOT_ARCHITECTURE or key == "name" or (accepted is not None
                                                        and key not in accepted):
            continue
        if is_json_value(value):
            out[key] = as_json(value)
    return out


def masked_mean(sequence, mask):
    """Mean over the real positions of `sequence` [B, L, D] (`mask` [B, L], 1 = real)."""
    mask = ops.cast(mask, sequence.dtype)[..., None]
    return ops.sum(sequence * mask, axis=1) / ops.maximum(ops.sum(mask, axis=1), 1.0)


def l2_normalize(x, axis=-1, eps=1e-6):
    return x / ops.maximum(ops.sqrt(ops.sum(ops.square(x), axis=axis, keepdims=True)), eps)


def warmup_cosine(learning_rate: float, warmup_steps: int, decay_steps: int,
                  final_fraction: float = 0.1):
    """Linear warm-up to `learning_rate`, then cosine decay to `final_fraction` of it."""
    warmup_steps = max(int(warmup_steps), 0)
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup_steps else learning_rate,
        decay_steps=max(int(decay_steps), 1), alpha=final_fraction,
        warmup_target=learning_rate if warmup_steps else None, warmup_steps=warmup_steps)


def weights_by_name(model):
    """A trackable holding every weight of `model` under its path below the model's name.

    Checkpointing this next to the model makes restoring independent of Keras object
    tracking: Keras 3 lists of layers (e.g. an encoder's `blocks`) are invisible to
    tf.train.Checkpoint's object graph, so without it their weights are only reachable
    through the optimizer's slots and `load_task` (which restores no optimizer) misses them.
    """
    import tensorflow as tf  # noqa: PLC0415

    named = {}
    for v in model.weights:
        key = v.path.split("/", 1)[1] if "/" in v.path else v.path
        named[key] = v
    return tf.train.Checkpoint(**named)
