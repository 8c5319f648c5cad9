"""Keeping lists of Keras layers in checkpoints."""


def track_layers(owner, layers, prefix="layer_"):
    """Sets `owner.<prefix><i>` to each layer of `layers` and returns `layers`.

    tf.train.Checkpoint does not follow Keras 3 layers held only in a Python list (their
    weights would silently be left out of checkpoints); as named attributes they are saved.
    The attribute names are checkpoint keys: changing `prefix` of an existing model breaks
    restoring its checkpoints.
    """
    for i, layer in enumerate(layers):
        setattr(owner, f"{prefix}{i}", layer)
    return layers
