"""The example plugin's decoder and model: sine-cosine positions, swapped in by name, and the
model contract the parti task, the sampler and the export rely on."""

import numpy as np
import pytest
import tensorflow as tf

import zoo
from zoo import config
from zoo.errors import ZooError
from zoo.models import contract
from zoo.registry import DECODERS, MODELS

MICRO = dict(image_grid=(4, 4), image_vocab_size=16, width=32, mlp_dim=64, heads=2,
             encoder_layers=1, decoder_layers=2, text_vocab_size=20, max_text_length=8,
             decoder_attention=["row", "conv_shaped"], dropout=0.0)


@pytest.fixture(scope="module")
def components():
    import zoo_example.components as c
    return c


def _batch(n=2):
    rng = np.random.default_rng(0)
    return {"text_tokens": tf.constant(rng.integers(3, 20, (n, 8)), tf.int32),
            "text_mask": tf.ones([n, 8], tf.int32),
            "image_codes": tf.constant(rng.integers(0, 16, (n, 4, 4)), tf.int32)}


def test_positions_are_fixed_and_tell_every_cell_apart(components):
    decoder = DECODERS.create("example_sincos", image_grid=(8, 8), image_vocab_size=16,
                              layers=1, width=32, heads=2, mlp_dim=64, attention=["dense"])
    decoder.build()
    assert not [w.path for w in decoder.weights if "row" in w.path or "column" in w.path]
    pos = np.asarray(decoder.positions(np.arange(64)))
    assert pos.shape == (64, 32)
    distances = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    assert distances[~np.eye(64, dtype=bool)].min() > 0.1  # no two cells share an embedding
    # Row in the first half, column in the second: cells of one row share the first half.
    np.testing.assert_allclose(pos[8:16, :16], np.repeat(pos[8:9, :16], 8, 0), atol=1e-6)
    with pytest.raises(ZooError, match="divisible by 4"):
        DECODERS.create("example_sincos", image_grid=(2, 2), image_vocab_size=4, layers=1,
                        width=6, heads=2, mlp_dim=8, attention=["dense"])


def test_swapped_into_any_parti_size_by_name_from_gin(components, gin_clean):
    config.parse([], ["parti_micro.decoder = 'example_sincos'",
                      "parti_micro.decoder_options = {'max_wavelength': 50.0}"])
    model = zoo.create("model", "parti_micro")
    assert type(model.decoder) is components.SinCosImageDecoder
    assert model.decoder.max_wavelength == 50.0
    assert model.get_config()["decoder"] == "example_sincos"
    with pytest.raises(ZooError, match="unknown decoder 'example_sincoss'.*example_sincos"):
        zoo.create("model", "parti_micro", decoder="example_sincoss")


def test_model_meets_the_contract_and_rebuilds_from_its_architecture(components):
    model = MODELS.create("example_sincos_tiny", max_wavelength=200.0, **MICRO)
    contract.check_model(model, "example_sincos_tiny")
    model.build()
    arch = contract.architecture(model, "example_sincos_tiny")
    assert arch["max_wavelength"] == 200.0 and arch["decoder"] == "example_sincos"
    again = MODELS.create("example_sincos_tiny", **arch)
    contract.check_rebuilt(again, "example_sincos_tiny", arch)
    assert type(again.decoder) is components.SinCosImageDecoder
    assert again.decoder.max_wavelength == 200.0


def test_cached_decoding_steps_equal_the_full_pass(components):
    """What the sampler relies on: step t given the codes before it = the teacher-forced
    logits at t."""
    model = MODELS.create("example_sincos_tiny", **MICRO)
    model.build()
    batch = _batch()
    full = model(batch).numpy()
    memory, mask = model.encode_text(batch["text_tokens"], batch["text_mask"])
    step_memory = model.decoder.step_memory(memory, mask)
    cache = model.decoder.init_cache(2)
    codes = tf.reshape(batch["image_codes"], [2, -1])
    prev = tf.fill([2], model.decoder.bos_id)
    for t in range(16):
        logits, cache = model.decoder.step(prev, tf.constant(t), cache, step_memory)
        np.testing.assert_allclose(logits.numpy(), full[:, t], atol=2e-4)
        prev = codes[:, t]
