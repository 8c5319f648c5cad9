"""Sampling: the KV cache reproduces uncached decoding, guidance in one pass, seeds, filters;
Jacobi decoding keeps greedy tokens and the sampling distribution; weights modes."""

import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy import stats

import zoo.models  # noqa: F401
from zoo.errors import ZooError
from zoo.models.sampling import Sampler, generate
from zoo.models.selection import filter_logits, select_tokens
from zoo.registry import MODELS

# Exact comparisons (cache against no cache, XLA, Jacobi, exact distributions) decode with the
# model's own float32 weights; the default is bfloat16 on the cached path.
F32 = dict(weights="float32")


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
        codes = Sampler(model, temperature=0, guidance_scale=1.2, **F32)(*prompts).numpy()
    finally:
        del model.decoder.step
    return codes, seen


@pytest.fixture(scope="module")
def sampled(model, prompts):
    sampler = Sampler(model, temperature=1.0, top_k=8, **F32)
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
    xla = Sampler(model, temperature=1.0, top_k=8, jit_compile=True, **F32)
    np.testing.assert_array_equal(xla(*prompts, num_samples=2, seed=7).numpy(), sampled[1])


def test_top_k_one_is_greedy(model, prompts, greedy):
    np.testing.assert_array_equal(generate(model, *prompts, top_k=1, seed=5, **F32).numpy(),
                                  greedy[0])


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
    # Decode steps read the model's bfloat16 weights (auto) and compute in float32: the KV
    # cache and the bfloat16 cross-attention keys/values of the text meet float32 queries (a
    # dtype mismatch once made the cached step fail: "BatchMatMulV2 ... float32 does not
    # match bfloat16").
    keras.utils.set_random_seed(2)
    m = MODELS.create("parti_micro", image_grid=(4, 4), image_vocab_size=24, decoder_layers=2,
                      dropout=0.0, mixed_precision=True)
    m.build()
    decoder = m.decoder
    cache = decoder.init_cache(3)
    assert cache[0][0].dtype == tf.float32
    assert decoder.inference_weights().blocks[0].qkv.kernel.dtype == tf.bfloat16
    codes = Sampler(m, temperature=1.0, guidance_scale=1.2)(*prompts, seed=3).numpy()
    assert codes.shape == (3, 4, 4) and codes.min() >= 0 and codes.max() < 24
    # Teacher-forced: each cached step's logits equal the full pass's at that position (to
    # bfloat16 rounding; greedy token-by-token equality is not stable under bf16 near-ties).
    memory, memory_mask = m.encode_text(*prompts)
    flat = tf.constant(codes.reshape(3, 16))
    full = decoder(flat, memory, memory_mask).numpy()
    prepared = decoder.step_memory(memory, memory_mask)
    prev = tf.fill([3], decoder.bos_id)
    for t in range(16):
        logits, cache = decoder.step(prev, tf.constant(t), cache, prepared)
        np.testing.assert_allclose(logits.numpy(), full[:, t], atol=0.1, rtol=0.05)
        prev = flat[:, t]


# -- Jacobi decoding, weights modes, the decode step's new paths ---------------------------------


@pytest.mark.parametrize("window", [2, 5, 36])
def test_jacobi_greedy_gives_the_ordinary_greedy_tokens(model, prompts, greedy, window):
    sampler = Sampler(model, temperature=0, guidance_scale=1.2, jacobi_window=window, **F32)
    np.testing.assert_array_equal(sampler(*prompts).numpy(), greedy[0])
    assert 0 < sampler.last_model_calls <= 36


def test_jacobi_greedy_under_xla_and_the_model_calls(model, prompts, greedy):
    ordinary = Sampler(model, temperature=0)
    ordinary(*prompts)
    assert ordinary.last_model_calls == 36  # one per token
    xla = Sampler(model, temperature=0, jacobi_window=8, jit_compile=True, **F32)
    np.testing.assert_array_equal(xla(*prompts).numpy(), greedy[0])
    assert xla.last_model_calls < 36


@pytest.fixture(scope="module")
def peaked():
    """A 2x2 grid over 4 codes with sharp (far from uniform) distributions: 256 images, each
    with an exact probability under guidance 1.2 at temperature 1."""
    keras.utils.set_random_seed(3)
    m = MODELS.create("parti_micro", image_grid=(2, 2), image_vocab_size=4, decoder_layers=2,
                      dropout=0.0, decoder_attention="dense")
    m.build()
    m.decoder.logits.kernel.assign(m.decoder.logits.kernel * 8.0)
    tokens, mask = tf.constant([[5, 9, 11, 0]]), tf.constant([[1, 1, 1, 0]])
    images = np.array(list(itertools.product(range(4), repeat=4)), np.int32)
    n = len(images)
    memory, memory_mask = m.encode_text(tf.repeat(tokens, 2 * n, 0), tf.repeat(mask, 2 * n, 0),
                                        tf.repeat([False, True], n))
    logits = m.decoder(tf.concat([images, images], 0), memory, memory_mask).numpy()
    logits = logits.astype(np.float64)
    guided = logits[n:] + 1.2 * (logits[:n] - logits[n:])
    logp = guided - np.log(np.exp(guided).sum(-1, keepdims=True))
    exact = np.exp(np.take_along_axis(logp, images[..., None], -1)[..., 0].sum(-1))
    return m, tokens, mask, exact / exact.sum()


def _fits(peaked, sampler, samples=4000):
    m, tokens, mask, exact = peaked
    codes = sampler(tokens, mask, num_samples=samples, seed=11).numpy().reshape(samples, 4)
    counts = np.bincount((codes * 4 ** np.arange(3, -1, -1)).sum(-1), minlength=256)
    keep = exact * samples >= 5  # pool the rare images (chi-square needs 5 expected)
    observed = np.append(counts[keep], counts[~keep].sum())
    expected = np.append(exact[keep], exact[~keep].sum()) * samples
    return stats.chisquare(observed, expected).pvalue


@pytest.mark.parametrize("window", [0, 3, 4])
def test_jacobi_samples_have_the_ordinary_sampling_distribution(peaked, window):
    # 4000 samples of one prompt against the exact distribution of the 256 images; the rows
    # share the window, so rows ahead of the others verify from their own frontier too.
    # An acceptance rule that keeps every draft, or redraws rejected tokens from p instead of
    # the residual max(0, p - q), fails this by far (p < 1e-100).
    sampler = Sampler(peaked[0], temperature=1.0, jacobi_window=window, **F32)
    assert _fits(peaked, sampler) > 1e-3


def test_jacobi_keeps_top_k_filtering(peaked):
    m, tokens, mask, _ = peaked
    sampler = Sampler(m, temperature=1.0, top_k=1, jacobi_window=4)
    np.testing.assert_array_equal(
        sampler(tokens, mask, num_samples=3, seed=2).numpy(),
        np.repeat(Sampler(m, temperature=0)(tokens, mask).numpy(), 3, axis=0))


@pytest.mark.parametrize("weights", ["float32", "bfloat16", "int8"])
def test_weights_modes_sample_and_stay_close_to_float32(model, prompts, greedy, weights):
    codes = Sampler(model, temperature=0, weights=weights)(*prompts).numpy()
    agree = (codes == greedy[0]).mean()
    if weights == "float32":  # the micro model is float32: the same weights
        assert agree == 1.0
    else:
        assert agree >= 0.8, agree
    # Teacher-forced logits of the packed weights against the model's own pass.
    decoder = model.decoder
    memory, memory_mask = model.encode_text(*prompts)
    flat = tf.constant(greedy[0].reshape(3, 36))
    full = decoder(flat, memory, memory_mask).numpy()
    w = decoder.inference_weights(weights, native=weights != "float32")
    prepared = decoder.step_memory(memory, memory_mask)
    cache = decoder.init_cache(3, w.dtype)
    logits, cache = decoder.step(tf.concat([tf.fill([3, 1], decoder.bos_id), flat[:, :35]], 1),
                                 tf.constant(0), cache, prepared, w)
    tolerance = 1e-4 if weights == "float32" else 0.15
    np.testing.assert_allclose(logits.numpy(), full, atol=tolerance, rtol=0.05)


def test_compact_weights_read_fewer_bytes(model):
    decoder = model.decoder
    f32 = decoder.inference_weights("float32").nbytes()
    assert decoder.inference_weights("bfloat16", native=True).nbytes() < 0.55 * f32
    assert decoder.inference_weights("int8", native=True).nbytes() < 0.3 * f32


def test_several_positions_per_step_equal_single_steps(model, prompts, greedy):
    decoder = model.decoder
    memory, memory_mask = model.encode_text(*prompts)
    prepared = decoder.step_memory(memory, memory_mask)
    flat = tf.constant(greedy[0].reshape(3, 36))
    inputs = tf.concat([tf.fill([3, 1], decoder.bos_id), flat[:, :35]], 1)
    cache = decoder.init_cache(3)
    singles = []
    for t in range(12):
        logits, cache = decoder.step(inputs[:, t], tf.constant(t), cache, prepared)
        singles.append(logits.numpy())
    cache = decoder.init_cache(3)
    window, cache = decoder.step(inputs[:, :5], tf.constant(0), cache, prepared)
    window2, _ = decoder.step(inputs[:, 5:12], tf.constant(5), cache, prepared)
    np.testing.assert_allclose(np.concatenate([window, window2], 1), np.stack(singles, 1),
                               atol=1e-4)


def test_the_decoder_runs_on_a_prefix_of_rows(model, prompts, greedy):
    memory, memory_mask = model.encode_text(*prompts)
    flat = tf.constant(greedy[0].reshape(3, 36))
    full = model.decoder(flat, memory, memory_mask).numpy()
    prefix = model.decoder(flat[:, :12], memory, memory_mask).numpy()  # 2 rows of 6
    np.testing.assert_allclose(prefix, full[:, :12], atol=1e-5)
    with pytest.raises(ZooError, match="not whole rows of the 6x6 grid"):
        model.decoder(flat[:, :10], memory, memory_mask)


def test_repeated_calls_do_not_leak_state_through_the_in_place_cache(model, prompts, sampled):
    sampler, want = sampled
    sampler(*prompts, num_samples=2, seed=99)
    sampler(*prompts, num_samples=1, seed=5)
    np.testing.assert_array_equal(sampler(*prompts, num_samples=2, seed=7).numpy(), want)


@pytest.mark.parametrize("kwargs,needle", [
    (dict(weights="fp16"), "weights must be one of auto, float32, bfloat16, int8; got 'fp16'"),
    (dict(weights="bf16"), "one of auto, float32, bfloat16, int8; got 'bf16'"),
    (dict(weights=False), "got False"),
    (dict(jacobi_window=1), r"jacobi_window must be 0 \(off.*or an int >= 2.*got 1"),
    (dict(jacobi_window=-4), "got -4"),
    (dict(jacobi_window=True), "got True"),
    (dict(jacobi_window="16"), "got '16'"),
    (dict(jacobi_window=8, use_cache=False), "need the KV cache"),
    (dict(weights="int8", use_cache=False), "need the KV cache"),
])
def test_bad_sampler_options_are_clear_errors(model, kwargs, needle):
    with pytest.raises(ZooError, match=needle):
        Sampler(model, **kwargs)


# -- the default weights: bfloat16 where decoding is cached, the model's own where not ------------


def test_default_weights_are_bfloat16_on_the_cached_path(model, prompts):
    from zoo.models import sampling
    assert sampling.DEFAULT_WEIGHTS == "bfloat16"
    sampler = Sampler(model, temperature=0)
    assert sampler.weights == "bfloat16"
    modes = []
    build = model.decoder.inference_weights

    def spy(mode="auto", native=False):
        modes.append(mode)
        return build(mode, native)

    model.decoder.inference_weights = spy
    try:
        codes = sampler(*prompts).numpy()
    finally:
        del model.decoder.inference_weights
    assert modes == ["bfloat16"]  # what the decode loop packed
    np.testing.assert_array_equal(codes, Sampler(model, temperature=0,
                                                 weights="bfloat16")(*prompts).numpy())
    assert Sampler(model, weights="auto").weights == "auto"  # auto: the model's own dtype


def test_default_weights_without_the_cache_are_the_models_own(model, prompts, greedy, caplog):
    with caplog.at_level("WARNING", logger="zoo"):
        sampler = Sampler(model, temperature=0, use_cache=False)
    assert sampler.weights == "auto" and not caplog.text
    np.testing.assert_array_equal(sampler(*prompts).numpy(), greedy[0])
    with pytest.raises(ZooError, match="weights='bfloat16'.*need the KV cache"):
        Sampler(model, weights="bfloat16", use_cache=False)  # asked for explicitly


class _ModelAxis:
    """A distribution whose replicas span 2 devices (weights sharded on a model axis)."""

    num_replicas, num_devices = 1, 2


def _pipe(model, caplog, **settings):
    import types

    from zoo.models.sampling import TextToImage
    image_tokenizer = types.SimpleNamespace(grid_size=model.image_grid, decode=lambda c: c)
    with caplog.at_level("WARNING", logger="zoo"):
        return TextToImage(model, None, image_tokenizer, distribution=_ModelAxis(), **settings)


def test_a_model_axis_decodes_uncached_with_the_default_weights_silently(model, caplog):
    pipe = _pipe(model, caplog)
    assert not pipe.sampler.use_cache and pipe.sampler.weights == "auto"
    assert "without the cache" in caplog.text and "ignored" not in caplog.text
    caplog.clear()
    pipe = _pipe(model, caplog, weights="bfloat16")  # asked for: said to be ignored
    assert pipe.sampler.weights == "auto"
    assert "weights='bfloat16' and jacobi_window=0 need the cache: ignored" in caplog.text
    with pytest.raises(ZooError, match="one of auto, float32, bfloat16, int8; got 'fp16'"):
        _pipe(model, caplog, weights="fp16")
    from zoo.models.sampling import TextToImage
    pipe = TextToImage(model, None, _pipe(model, caplog).image_tokenizer)  # one device
    assert pipe.sampler.use_cache and pipe.sampler.weights == "bfloat16"


def _op_types(sampler, tokens, mask, num_samples):
    """Every op type in the sampler's traced decode function, its loop bodies included."""
    from zoo.models.selection import row_keys_for
    sampler(tokens, mask, num_samples)
    fn = next(iter(sampler._fns.values()))
    graph = fn.get_concrete_function(tf.convert_to_tensor(tokens, tf.int32),
                                     tf.convert_to_tensor(mask, tf.int32),
                                     row_keys_for(0, tf.range(len(tokens)), num_samples)
                                     ).graph.as_graph_def()
    nodes = list(graph.node) + [n for f in graph.library.function for n in f.node_def]
    return {n.op for n in nodes}


def test_the_fused_op_serves_one_guided_prompt_and_onednn_more_rows(model, prompts,
                                                                  monkeypatch):
    # Measured on an AMX CPU: the fused compact-weight op beats oneDNN's bfloat16 matmul at 2
    # rows and loses from 4-16 rows on; batches and Jacobi windows go to oneDNN. (The limit
    # is the AMX one here whatever CPU runs the test.)
    from zoo.layers import packed
    monkeypatch.setattr(packed, "NATIVE_MAX_ROWS", packed.NATIVE_MAX_ROWS_AMX)
    if packed.native_library() is None:
        pytest.skip("native ops unavailable here")
    one = _op_types(Sampler(model, temperature=0), prompts[0][:1], prompts[1][:1], 1)
    assert "ZooSmallMatmul" in one  # 2 rows: the conditional and unconditional one
    batch = _op_types(Sampler(model, temperature=0), *prompts, 1)  # 6 rows
    assert "ZooSmallMatmul" not in batch
    window = _op_types(Sampler(model, temperature=0, jacobi_window=4), prompts[0][:1],
                       prompts[1][:1], 1)  # 2 rows x 4 positions
    assert "ZooSmallMatmul" not in window


def test_bfloat16_products_tensorflow_multiplies_run_on_the_default_executor(model, prompts,
                                                                            monkeypatch):
    # On TensorFlow's single-threaded executor bfloat16 matmuls miss oneDNN's kernels (3x
    # slower, measured); the fused op and float32 products keep the single-threaded one.
    from zoo.layers import packed
    from zoo.models import sampling
    chosen = []
    pick = sampling._executor

    def spy(*args, **kwargs):
        chosen.append(pick(*args, **kwargs))
        return chosen[-1]

    monkeypatch.setattr(sampling, "_executor", spy)
    monkeypatch.setattr(packed, "NATIVE_MAX_ROWS", packed.NATIVE_MAX_ROWS_AMX)
    Sampler(model, temperature=0)(*prompts)  # 6 rows: TensorFlow's bfloat16 matmul
    Sampler(model, temperature=0, weights="float32")(*prompts)
    assert chosen == ["", "SINGLE_THREADED_EXECUTOR"]
    if packed.native_library() is not None:  # 2 rows: the fused op
        Sampler(model, temperature=0)(prompts[0][:1], prompts[1][:1])
        assert chosen[-1] == "SINGLE_THREADED_EXECUTOR"
        # One decision for both: a Jacobi window longer than the tokens decoded is cut to
        # them (1 unguided row x 2 positions: the fused op), and so is the executor's count.
        short = Sampler(model, temperature=0, guidance_scale=1.0, jacobi_window=4,
                        num_tokens=2)
        assert "ZooSmallMatmul" in _op_types(short, prompts[0][:1], prompts[1][:1], 1)
        short(prompts[0][:1], prompts[1][:1])
        assert chosen[-1] == "SINGLE_THREADED_EXECUTOR"
