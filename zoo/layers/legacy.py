"""Keras names that zoo no longer registers, kept loadable.

`zoo>SelfAttention`: until both were renamed, the ViT-VQGAN's bidirectional self-attention
(zoo/layers/vit.py, now `zoo>ViTSelfAttention`) and the decoder's causal self-attention
(zoo/layers/transformer.py, now `zoo>CausalSelfAttention`) registered under this one name, and
Keras kept whichever was imported last. A model saved then (`.keras`, or a config from
`keras.saving.serialize_keras_object`) names `zoo>SelfAttention`; this resolver picks the
layer its config describes, whatever the import order.
"""

import keras

LEGACY_NAME = "zoo>SelfAttention"


class LegacySelfAttention:
    """Rebuilds a layer saved as `zoo>SelfAttention` by the keys of its config."""

    @classmethod
    def from_config(cls, config):
        # Only the causal layer's config names an attention `kernel` (and a `memory_width`).
        if "kernel" in config or "memory_width" in config:
            from zoo.layers.transformer import SelfAttention
        else:
            from zoo.layers.vit import SelfAttention
        return SelfAttention.from_config(config)


keras.saving.get_custom_objects()[LEGACY_NAME] = LegacySelfAttention
