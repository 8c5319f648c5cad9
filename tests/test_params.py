"""Parameter counts without allocating weights (the papers' sizes: test_registered_components)."""

import resource

import keras
import pytest

import zoo.models  # noqa: F401
from zoo.errors import UnknownNameError
from zoo.models.params import count_params, total_params, weight_shapes
from zoo.registry import IMAGE_TOKENIZERS, MODELS

def _maxrss_gb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def test_counting_parti_20b_allocates_nothing():
    """(Every paper size's count is checked in test_registered_components.py.)"""
    before = _maxrss_gb()
    shapes = weight_shapes("model", "parti_20b")
    assert total_params(shapes) > 20e9
    assert _maxrss_gb() - before < 1.0  # 20B float32 weights would be 80 GB


def test_counted_variables_are_never_initialized_later():
    from keras.src.backend.common import global_state
    count_params("model", "parti_3b")
    pending = global_state.get_global_attribute("uninitialized_variables", [])
    assert not pending
    before = _maxrss_gb()
    with keras.StatelessScope():  # initializes whatever is pending when it closes
        pass
    assert _maxrss_gb() - before < 1.0


def test_count_equals_the_built_model():
    model = MODELS.create("parti_micro")
    model.build()
    assert count_params("model", "parti_micro") == model.count_params()
    shapes = weight_shapes("model", "parti_micro")
    assert shapes["parti/decoder/layer_0/mlp/wo/kernel"] == (64, 32)


class _NeedsShape(keras.layers.Layer):
    """A stand-in whose build needs an input shape (derived from `image_size`)."""

    def __init__(self, image_size=16, **kwargs):
        super().__init__(**kwargs)
        self.image_size = image_size
        self.conv = keras.layers.Conv2D(4, 3)

    def build(self, input_shape):
        assert tuple(input_shape) == (None, self.image_size, self.image_size, 3)
        self.conv.build(input_shape)


def test_components_whose_build_needs_a_shape():
    IMAGE_TOKENIZERS.register("test_needs_shape")(_NeedsShape)
    try:
        assert count_params("image_tokenizer", "test_needs_shape") == 3 * 3 * 3 * 4 + 4
    finally:
        IMAGE_TOKENIZERS.unregister("test_needs_shape")


def test_unknown_names():
    with pytest.raises(UnknownNameError, match="did you mean 'parti_3b'"):
        count_params("model", "parti_3c")
    with pytest.raises(UnknownNameError, match="unknown component kind"):
        count_params("models", "parti_3b")


def _needs_a_path(path):
    """A stand-in text encoder that cannot be built without a path (like a preset loader)."""
    raise AssertionError("not reached: calling it without `path` fails first")


def test_components_that_need_arguments_are_a_clear_error():
    from zoo.errors import ZooError
    from zoo.models.params import param_counts
    from zoo.registry import TEXT_ENCODERS
    TEXT_ENCODERS.register("test_needs_path")(_needs_a_path)
    try:
        with pytest.raises(ZooError, match="cannot count the parameters of text_encoder "
                                           "'test_needs_path'"):
            count_params("text_encoder", "test_needs_path")
    finally:
        TEXT_ENCODERS.unregister("test_needs_path")
    counts = param_counts("model", "parti_micro")
    # text tokens 64x32 + positions 16x32, unconditional 32, image tokens 17x32, rows and
    # columns 2 x 4x32, logits 32x16 + 16
    assert counts["total"] - counts["without_embeddings"] == (
        64 * 32 + 16 * 32 + 32 + 17 * 32 + 2 * 4 * 32 + 32 * 16 + 16)
