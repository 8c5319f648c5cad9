"""What rebuilds a zoo Keras layer or model: its constructor arguments, from its config."""

from typing import Any, Dict, Mapping

# Keras layer arguments that say nothing about the architecture. A zoo layer rebuilt from its
# config takes the dtype policy its own arguments choose (e.g. `mixed_precision`) and is
# trainable, as when it was first made.
NOT_ARCHITECTURE = ("trainable", "dtype")


def constructor_arguments(config: Mapping[str, Any]) -> Dict[str, Any]:
    """A copy of a Keras `get_config()` without the keys in NOT_ARCHITECTURE."""
    return {k: v for k, v in dict(config).items() if k not in NOT_ARCHITECTURE}
