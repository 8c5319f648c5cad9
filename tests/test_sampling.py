"""Sampling: the KV cache reproduces uncached decoding, guidance in one pass, seeds, filters."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import zoo.models  # noqa: F401
from zoo.errors import ZooError
from zoo.models.sampling import Sampler, filter_logits, generate, select_tokens
from zoo.registry import MODELS


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(1)
    # A 6x6 grid and the DALL-E schedule over 4 layers: row, row, column, conv_shaped.
    m = MODELS.create("parti_micro", image_grid=(6, 6), image_vocab_size=24, decoder_layers=4,
                      dropout=0.0)
    m.build()
    return m


@pytest.fixture(scope="module")
def prompts():
    rng = np.random.default_rng(0)
    tokens = rng.integers(3, 64, (3, 16)).astype(np.int32)
    mask = (np.arange(16)[None] < np.array([[4], [9], [16]])).astype(np.int32)
    return tf.constant(tokens * mask), tf.constant(mask)


@pytest.fixture(scope="module")
def greedy(model, prompts):
    """Greedy guided codes; records the batch the decoder step was traced with."""
    seen = []
    step = model.decoder.step

    def spy(prev, *args, **kwargs):
        seen.append(int(prev.shape[0]))
        return step(prev, *args, **kwargs)

    model.decoder.step = spy
    try:
        codes = Sampler(model, temperature=0, guidance_scale=1.2)(*prompts).numpy()
    finally:
        del model.decoder.step
    return codes, seen


@pytest.fixture(scope="module")
def sampled(model, prompts):
    sampler = Sampler(model, temperature=1.0, top_k=8)
    return sampler, sampler(*prompts, num_samples=2, seed=7).numpy()


def test_greedy_with_cache_equals_greedy_without(model, prompts, greedy):
    assert [type(b.self_attention.attention_kernel).__name__ for b in model.decoder.blocks] \
        == ["RowAttention", "RowAttention", "ColumnAttention", "ConvShapedAttention"]
    cached, _ = greedy
    uncached = Sampler(model, temperature=0, guidance_scale=1.2, use_cache=False)(*prompts)
    assert cached.shape == (3, 6, 6)
    np.testing.assert_array_equal(cached, uncached.numpy())
    assert len(np.unique(cached)) > 1


def test_guidance_runs_cond_and_uncond_rows_in_one_batched_pass(greedy):
    codes, seen = greedy
    assert seen == [6]  # one trace of the step, 3 conditional + 3 unconditional rows
    assert not (codes == codes[0]).all()


def test_guidance_scale_zero_is_the_unconditional_model(model, prompts):
    codes = Sampler(model, temperature=0, guidance_scale=0.0)(*prompts).numpy()
    assert (codes == codes[0]).all()  # the text no longer matters


def test_seeded_reproducible_and_independent_of_batching(prompts, sampled):
    sampler, a = sampled
    np.testing.assert_array_equal(sampler(*prompts, num_samples=2, seed=7).numpy(), a)
    assert not (a[0] == a[1]).all()  # two samples of one prompt differ
    assert not (sampler(*prompts, num_samples=2, seed=8).numpy() == a).all()
    # Prompts in another order, with their ids, get the same samples.
    order = [2, 0, 1]
    moved = sampler(tf.gather(prompts[0], order), tf.gather(prompts[1], order), num_samples=2,
                    seed=7, prompt_ids=order).numpy()
    np.testing.assert_array_equal(moved, a.reshape(3, 2, 6, 6)[order].reshape(6, 6, 6))


def test_xla_compiled_loop_gives_the_same_tokens(model, prompts, sampled):
    xla = Sampler(model, temperature=1.0, top_k=8, jit_compile=True)
    np.testing.assert_array_equal(xla(*prompts, num_samples=2, seed=7).numpy(), sampled[1])


def test_top_k_one_is_greedy(model, prompts, greedy):
    np.testing.assert_array_equal(generate(model, *prompts, top_k=1, seed=5).numpy(), greedy[0])


def test_filter_logits():
    logits = tf.math.log(tf.constant([[0.5, 0.3, 0.15, 0.05]]))
    kept = lambda x: (x.numpy()[0] > -1e8).tolist()  # noqa: E731
    assert kept(filter_logits(logits, top_k=2)) == [True, True, False, False]
    assert kept(filter_logits(logits, top_p=0.7)) == [True, True, False, False]
    assert kept(filter_logits(logits, top_p=0.5)) == [True, False, False, False]
    assert kept(filter_logits(logits, top_p=0.96)) == [True, True, True, True]
    keys = tf.range(4000, dtype=tf.int64)
    draws = select_tokens(tf.tile(logits, [4000, 1]), keys, 3).numpy()
    freq = np.bincount(draws, minlength=4) / 4000
    np.testing.assert_allclose(freq, [0.5, 0.3, 0.15, 0.05], atol=0.05)


def test_bad_settings_are_clear_errors(model, prompts):
    with pytest.raises(ZooError, match="temperature"):
        Sampler(model, temperature=-1)
    with pytest.raises(ZooError, match="top_p"):
        Sampler(model, top_p=0)
    with pytest.raises(ZooError, match="num_samples"):
        Sampler(model)(*prompts, num_samples=0)
    with pytest.raises(ZooError, match="text_tokens and text_mask"):
        Sampler(model)(prompts[0], prompts[1][:, :3])


def test_mixed_precision_model_samples_with_the_cache(prompts):
    # The KV cache takes the dtype the projections compute in (bfloat16 here); a float32 cache
    # made the cached step fail ("BatchMatMulV2 ... float32 does not match bfloat16").
    keras.utils.set_random_seed(2)
    m = MODELS.create("parti_micro", image_grid=(4, 4), image_vocab_size=24, decoder_layers=2,
                      dropout=0.0, mixed_precision=True)
    m.build()
    decoder = m.decoder
    cache = decoder.init_cache(3)
    assert cache[0][0].dtype == tf.bfloat16
    codes = Sampler(m, temperature=1.0, guidance_scale=1.2)(*prompts, seed=3).numpy()
    assert codes.shape == (3, 4, 4) and codes.min() >= 0 and codes.max() < 24
    # Teacher-forced: each cached step's logits equal the full pass's at that position (to
    # bfloat16 rounding; greedy token-by-token equality is not stable under bf16 near-ties).
    memory, memory_mask = m.encode_text(*prompts)
    flat = tf.constant(codes.reshape(3, 16))
    full = decoder(flat, memory, memory_mask).numpy()
    kv = decoder.memory_kv(memory)
    prev = tf.fill([3], decoder.bos_id)
    for t in range(16):
        logits, cache = decoder.step(prev, tf.constant(t), cache, kv, memory_mask)
        np.testing.assert_allclose(logits.numpy(), full[:, t], atol=0.1, rtol=0.05)
        prev = flat[:, t]
