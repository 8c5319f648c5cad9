"""Sampling image codes from Parti: KV-cached decoding in one compiled loop, with guidance.

    sampler = Sampler(model, temperature=1.0, top_k=0, top_p=1.0, guidance_scale=1.2)
    codes = sampler(text_tokens, text_mask, num_samples=4, seed=0)   # [B * 4, h, w] int32

Each new image token costs one decoder step: every self-attention layer keeps a key/value
cache [B, heads, N, head_dim], updated in place, and its kernel attends only to the cached keys
the position may see; cross-attention keys/values are computed once per prompt. The whole
decode loop is one `tf.function` (a `tf.while_loop` over the N positions; `jit_compile=True`
compiles it with XLA), run on TensorFlow's single-threaded executor without XLA.
`use_cache=False` re-runs the decoder on the full sequence at every step (the reference that
the cached loop must reproduce token for token under greedy decoding).

A step is bound by memory traffic (every weight read once for a handful of rows): steps read
the weights packed once per call (`zoo.layers.packed`) in the precision `weights` picks:
'bfloat16' (the default on the cached path: half the bytes, measured 1.6x faster than
float32 on a CPU with 99.4% of greedy tokens unchanged), the model's own ('auto', the default
without the cache), 'float32' or 'int8' (weight-only), through fused native ops where they
run. `jacobi_window=L` decodes with speculative Jacobi decoding
(`zoo.models.jacobi`): L draft tokens per model call, the same distribution, fewer calls.
Measured figures, the bandwidth floor and the greedy agreement of each mode: bench/RESULTS.md.

Classifier-free guidance (Parti: scale 1.2): the conditional and unconditional rows run in
one batched pass (the batch is doubled; unconditional rows use the model's learned
unconditional memory) and the next-token logits are `u + scale * (c - u)`. A scale of 1
skips the unconditional half.

Randomness (`zoo.models.selection`, which also holds the temperature / top-k / top-p
selection): the Gumbel noise of sample `s` of prompt `p` at position `t` is a counter-based
hash of (seed, prompt id, s, t, code), so results are reproducible and do not depend on the
batch size or on which other prompts share the batch (pass `prompt_ids` to keep ids stable
when prompts are split into batches). Jacobi decoding is reproducible for a given batch; its
samples depend on the batch's other rows (see `zoo.models.jacobi`).

Defaults (the paper gives no temperature / top-k / top-p): temperature 1.0, no top-k,
no top-p, guidance 1.2.
"""

import copy
import logging
from typing import Optional

import numpy as np
import tensorflow as tf

from zoo.errors import ZooError
from zoo.layers import packed
from zoo.models import jacobi
from zoo.models.selection import row_keys_for, select_tokens

log = logging.getLogger("zoo")


# The weights mode of cached decoding when none is given: bfloat16 halves the bytes a
# memory-bound step reads (one 32x32 image at parti-pytorch's configuration on a 2-core Xeon
# with AMX: float32 8.7 s, bfloat16 5.5 s; on a 2-core AMD EPYC with AVX2 12.9 s and 2.6-3.2 s;
# greedy tokens 99.4% equal to float32's; the demo's shapes acceptance unchanged). Measured:
# bench/RESULTS.md, "Sampling (issue 14)".
DEFAULT_WEIGHTS = "bfloat16"


def resolve_weights(weights, use_cache=True):
    """The weights mode decoding reads: `weights` checked (`zoo.layers.packed.WEIGHT_MODES`), or
    for None the default: `DEFAULT_WEIGHTS` with the KV cache, the model's own ('auto')
    without it (the uncached reference runs the model as it is)."""
    if weights is None:
        return DEFAULT_WEIGHTS if use_cache else "auto"
    return packed.check_mode(weights)


def _check(temperature, top_k, top_p, guidance_scale, num_samples=1):
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) \
            or temperature < 0:
        raise ZooError(f"temperature must be a number >= 0 (0 = greedy), got {temperature!r}")
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 0:
        raise ZooError(f"top_k must be an int >= 0 (0 = off), got {top_k!r}")
    if not isinstance(top_p, (int, float)) or not 0.0 < top_p <= 1.0:
        raise ZooError(f"top_p must be in (0, 1] (1 = off), got {top_p!r}")
    if not isinstance(guidance_scale, (int, float)) or guidance_scale < 0:
        raise ZooError(f"guidance_scale must be a number >= 0 (1 = no guidance), got "
                       f"{guidance_scale!r}")
    if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)) \
            or num_samples < 1:
        raise ZooError(f"num_samples must be a positive int, got {num_samples!r}")


class Sampler:
    """Compiled decoding of image codes for a `Parti` model.

    Args:
        model: a built `zoo.models.parti.Parti`.
        temperature: float >= 0. 0 is greedy decoding.
        top_k: int. Keep the k most likely codes (0 = all).
        top_p: float in (0, 1]. Nucleus sampling mass (1 = off).
        guidance_scale: float. Classifier-free guidance scale (Parti: 1.2; 1 = off).
        use_cache: bool. KV-cached steps (True) or a full decoder pass per token (False).
        jit_compile: bool. XLA-compile the decode loop.
        num_tokens: int or None. Decode only the first num_tokens positions (the rest stay
            0); for benchmarks and previews. None decodes the whole grid.
        weights: the precision decode steps read the weights in (`zoo.layers.packed`):
            'auto' (the model's own compute dtype), 'float32', 'bfloat16' or 'int8'
            (weight-only, per-column scales); other than 'auto', cached decoding only. None
            (the default): `DEFAULT_WEIGHTS` ('bfloat16') with the cache, 'auto' without.
            `self.weights` holds the mode used.
        jacobi_window: 0 (one token per model call) or L >= 2: speculative Jacobi decoding
            with L draft tokens per call (`zoo.models.jacobi`; same distribution, fewer
            calls). Cached decoding only.
    """

    def __init__(self, model, temperature=1.0, top_k=0, top_p=1.0, guidance_scale=1.2,
                 use_cache=True, jit_compile=False, num_tokens=None, weights=None,
                 jacobi_window=0):
        _check(temperature, top_k, top_p, guidance_scale)
        self.model = model
        self.temperature = float(temperature)
        self.top_k = int(top_k)
        self.top_p = float(top_p)
        self.guidance_scale = float(guidance_scale)
        self.use_cache = bool(use_cache)
        self.jit_compile = bool(jit_compile)
        self.weights = resolve_weights(weights, self.use_cache)
        self.jacobi_window = jacobi.check_window(jacobi_window)
        if not self.use_cache and (self.jacobi_window or self.weights != "auto"):
            raise ZooError(f"jacobi_window={jacobi_window!r} and weights={weights!r} need the KV "
                           f"cache (use_cache=True); the uncached reference runs the model as "
                           f"it is, one token per call")
        total = model.decoder.num_tokens
        if num_tokens is not None and (isinstance(num_tokens, bool) or not isinstance(
                num_tokens, (int, np.integer)) or not 0 < num_tokens <= total):
            raise ZooError(f"num_tokens must be in [1, {total}] or None, got {num_tokens!r}")
        self.num_tokens = int(num_tokens or total)
        self.last_model_calls = None
        self._fns = {}

    _runtime_scale = False  # set on the copy `decode` makes for a guidance scale tensor

    @property
    def guided(self):
        return self._runtime_scale or self.guidance_scale != 1.0

    def __call__(self, text_tokens, text_mask, num_samples=1, seed=0, prompt_ids=None):
        """Codes [B * num_samples, h, w] int32, prompt-major (the samples of prompt 0 first).
        Afterwards `last_model_calls` holds the decoder calls this batch took (num_tokens
        without Jacobi decoding).

        Args:
            text_tokens, text_mask: int [B, L] (from the text tokenizer).
            num_samples: samples per prompt.
            seed: int; with `prompt_ids` it fixes every sample.
            prompt_ids: int [B] identifying the prompts for the noise (default 0..B-1).
        """
        _check(self.temperature, self.top_k, self.top_p, self.guidance_scale, num_samples)
        text_tokens = tf.convert_to_tensor(text_tokens, tf.int32)
        text_mask = tf.convert_to_tensor(text_mask, tf.int32)
        if text_tokens.shape.rank != 2 or text_tokens.shape != text_mask.shape:
            raise ZooError(f"text_tokens and text_mask must be [batch, length] of one shape, "
                           f"got {text_tokens.shape} and {text_mask.shape}")
        if prompt_ids is None:
            prompt_ids = tf.range(tf.shape(text_tokens)[0])
        keys = row_keys_for(seed, prompt_ids, int(num_samples))
        onednn_bfloat16 = (self.use_cache and self.weights == "bfloat16"
                           and not self._native(text_tokens, int(num_samples)))
        executor = _executor(self.jit_compile, text_tokens, onednn_bfloat16=onednn_bfloat16)
        # One function per executor: a function instantiated for one cannot run on the other.
        key = (int(num_samples), executor)
        fn = self._fns.get(key)
        if fn is None:
            fn = tf.function(lambda a, b, c: self._decode_counted(a, b, c, int(num_samples)),
                             jit_compile=self.jit_compile, reduce_retracing=True,
                             autograph=False)
            self._fns[key] = fn
        from tensorflow.python.eager import context
        with context.function_executor_type(executor):
            codes, calls = fn(text_tokens, text_mask, keys)
        if tf.executing_eagerly():
            self.last_model_calls = int(calls)
        h, w = self.model.image_grid
        return tf.reshape(codes, [-1, h, w])

    def decode(self, text_tokens, text_mask, row_keys, num_samples, guidance_scale=None):
        """Codes [B * num_samples, h * w] int32 traced into the caller's graph (no tf.function
        or checks of its own), for graphs that embed the sampler, such as an export.

        Args:
            text_tokens, text_mask: int32 [B, L] tensors.
            row_keys: int64 [B * num_samples] (`row_keys_for(seed, prompt_ids, num_samples)`).
            num_samples: int or int32 scalar tensor.
            guidance_scale: None (the sampler's own) or a float32 scalar tensor given at run
                time; then the guided path (conditional and unconditional halves) is traced
                whatever its value, so take the unguided path yourself for a scale of 1.
        """
        if guidance_scale is None:
            return self._decode(text_tokens, text_mask, row_keys, num_samples)
        runtime = copy.copy(self)
        runtime.guidance_scale, runtime._runtime_scale = guidance_scale, True
        return runtime._decode(text_tokens, text_mask, row_keys, num_samples)

    def _native(self, text_tokens, num_samples, *tensors):
        """Whether decode steps multiply through the fused native op (`packed.use_native`) for
        this batch: decided here only, from the rows of each decode-step product (prompts x
        samples x both guidance halves x the Jacobi window; unknown if the batch is), so the
        packing and the executor (`_executor`) cannot disagree."""
        prompts = text_tokens.shape[0]
        rows = None
        if prompts is not None and isinstance(num_samples, (int, np.integer)):
            window = min(self.jacobi_window, self.num_tokens) or 1
            rows = prompts * int(num_samples) * (2 if self.guided else 1) * window
        return packed.use_native(rows, text_tokens, *tensors)

    # -- the compiled loop -------------------------------------------------------------------

    def _encode(self, text_tokens, text_mask, num_samples):
        tokens = tf.repeat(text_tokens, num_samples, axis=0)
        mask = tf.repeat(text_mask, num_samples, axis=0)
        rows = tokens.shape[0] if tokens.shape[0] is not None else tf.shape(tokens)[0]
        uncond = tf.zeros([rows], tf.bool)
        if self.guided:
            tokens = tf.concat([tokens, tokens], 0)
            mask = tf.concat([mask, mask], 0)
            uncond = tf.concat([uncond, tf.ones([rows], tf.bool)], 0)
        memory, memory_mask = self.model.encode_text(tokens, mask, uncond, training=False)
        return memory, memory_mask, rows

    def _guide(self, logits, rows):
        if not self.guided:
            return logits
        cond, uncond = logits[:rows], logits[rows:]
        return uncond + self.guidance_scale * (cond - uncond)

    def _decode(self, text_tokens, text_mask, keys, num_samples):
        return self._decode_counted(text_tokens, text_mask, keys, num_samples)[0]

    def _decode_counted(self, text_tokens, text_mask, keys, num_samples):
        """(codes [B * S, N] int32, decoder calls int32 scalar)."""
        decoder = self.model.decoder
        n = self.num_tokens
        memory, memory_mask, rows = self._encode(text_tokens, text_mask, num_samples)
        select = lambda logits, t: select_tokens(  # noqa: E731
            logits, keys, t, self.temperature, self.top_k, self.top_p)
        if not self.use_cache:
            return self._decode_uncached(memory, memory_mask, rows, select), tf.constant(n)

        batch = 2 * rows if self.guided else rows
        weights = decoder.inference_weights(self.weights,
                                            self._native(text_tokens, num_samples, memory))
        prepared = decoder.step_memory(memory, memory_mask)
        cache = decoder.init_cache(batch, weights.dtype)

        def step(prev, t, cache):
            inputs = tf.concat([prev, prev], 0) if self.guided else prev
            logits, cache = decoder.step(inputs, t, cache, prepared, weights)
            return self._guide(logits, rows), cache

        if self.jacobi_window:
            codes, calls = jacobi.decode(step, cache, keys, n, self.jacobi_window,
                                         decoder.image_vocab_size, decoder.bos_id,
                                         self.model.image_grid[1], self.temperature,
                                         self.top_k, self.top_p)
            return tf.pad(codes, [[0, 0], [0, decoder.num_tokens - n]]), calls

        def body(t, prev, codes, cache):
            logits, cache = step(prev, t, cache)
            token = select(logits, t)
            return t + 1, token, _write_column(codes, token, t), cache

        codes = tf.zeros([rows, decoder.num_tokens], tf.int32)
        prev = tf.fill([rows], decoder.bos_id)
        _, _, codes, _ = tf.while_loop(
            lambda t, *_: t < n, body, (tf.constant(0), prev, codes, cache),
            maximum_iterations=n)
        return codes, tf.constant(n)

    def _decode_uncached(self, memory, memory_mask, rows, select):
        decoder = self.model.decoder

        def body(t, codes):
            inputs = tf.concat([codes, codes], 0) if self.guided else codes
            logits = decoder(inputs, memory=memory, memory_mask=memory_mask, training=False)
            step_logits = tf.gather(logits, t, axis=1)
            token = select(self._guide(step_logits, rows), t)
            return t + 1, _write_column(codes, token, t)

        codes = tf.zeros([rows, decoder.num_tokens], tf.int32)
        n = self.num_tokens
        _, codes = tf.while_loop(lambda t, *_: t < n, body, (tf.constant(0), codes),
                                 maximum_iterations=n)
        return codes


def _executor(jit_compile, *tensors, onednn_bfloat16=False):
    """The executor the decode loop runs on ('' is TensorFlow's default). Without XLA a decode
    step is a few hundred small ops, and the default executor hands them between its inter-op
    threads (a few microseconds each, far more on a busy machine); the single-threaded
    executor runs them in order on the calling thread (measured: 1.5 -> 0.4 ms per step of a
    6-layer decoder too narrow to compute anything; `bench/sampling.py --phases=overhead`),
    while matmuls and native ops still use the intra-op threads. XLA and DTensor keep the
    default, and so do bfloat16 products TensorFlow multiplies (`onednn_bfloat16`: more rows
    than the fused op takes): on the single-threaded executor they miss oneDNN's kernels
    (measured, a decode step's products at 16 rows: 25.6 ms there against 8.3 ms on the
    default executor; float32 16.8 / 15.3 ms; bench/RESULTS.md)."""
    from zoo.attention import native
    if jit_compile or onednn_bfloat16 or native.on_dtensor(*tensors):
        return ""
    return "SINGLE_THREADED_EXECUTOR"


def _write_column(codes, token, t):
    n = tf.shape(codes)[1]
    onehot = tf.cast(tf.range(n) == t, tf.int32)[None, :]
    return codes * (1 - onehot) + token[:, None] * onehot


def generate(model, text_tokens, text_mask, *, num_samples=1, seed=0, prompt_ids=None,
             **settings):
    """One-off sampling: `Sampler(model, **settings)(text_tokens, text_mask, num_samples,
    seed, prompt_ids)` (settings: temperature, top_k, ... as `Sampler` takes them)."""
    return Sampler(model, **settings)(text_tokens, text_mask, num_samples, seed, prompt_ids)


# -- prompts to images ---------------------------------------------------------------------------


def check_prompts(prompts):
    """The prompts as a list of str; an empty prompt is an error (the empty string is the
    unconditional path inside the sampler, never a user's prompt)."""
    if isinstance(prompts, (str, bytes)):
        prompts = [prompts]
    out = []
    for i, p in enumerate(prompts):
        if isinstance(p, bytes):
            try:
                p = p.decode("utf-8")
            except UnicodeDecodeError:
                raise ZooError(f"prompt {i} is not valid UTF-8: {p[:40]!r}") from None
        if not isinstance(p, str):
            raise ZooError(f"prompt {i} must be a string, got {type(p).__name__}")
        if not p.strip():
            raise ZooError(f"prompt {i} is empty; give some text (unconditional samples are "
                           f"what guidance_scale=0 gives)")
        out.append(p)
    if not out:
        raise ZooError("no prompts given")
    return out


class TextToImage:
    """Prompts in, images out: text tokenizer -> Parti sampler -> image tokenizer decode
    (-> upsampler), with optional reranking by a registered scorer.

        pipe = TextToImage.from_model_dir("runs/demo/parti", guidance_scale=1.2)
        images, scores = pipe(["a red circle at the top"], num_samples=4, seed=0)
        # images float32 [1, 4, H, W, 3] in [0, 1]; scores None without a scorer

    With a scorer (`scorer.score(images [N, H, W, 3] in [0, 1], captions tf.string [N]) ->
    float [N]`), each prompt's samples come back best first with their scores. Sample s of
    prompt p depends only on (seed, prompt id p, s): pass `prompt_ids` when splitting a prompt
    list into batches. Prompts longer than the tokenizer's max_length are truncated with a
    warning; empty prompts are an error.

    Args:
        model: a built Parti model. text_tokenizer: SentencePieceTokenizer (max_length set).
        image_tokenizer: the image tokenizer whose codes the model predicts (`decode`).
        upsampler: optional model with `upsample(images)`.
        scorer: optional scorer object or registered SCORERS name.
        temperature, top_k, top_p, guidance_scale, use_cache, jit_compile, weights,
            jacobi_window: see `Sampler`.
        distribution: the `zoo.distribute` distribution the model was built under (its
            weights sharded on a mesh, or mirrored); prompts are spread over its replicas
            (padded to a multiple of them) and the images are the same as on one device.
    """

    def __init__(self, model, text_tokenizer, image_tokenizer, *, upsampler=None, scorer=None,
                 temperature=1.0, top_k=0, top_p=1.0, guidance_scale=1.2, use_cache=True,
                 jit_compile=False, weights=None, jacobi_window=0, distribution=None):
        if distribution is None:
            from zoo.distribute.base import Distribution
            distribution = Distribution()
        self.distribution = distribution
        self.model = model
        self.text_tokenizer = text_tokenizer
        self.image_tokenizer = image_tokenizer
        self.upsampler = upsampler
        if isinstance(scorer, str):
            from zoo.registry import SCORERS
            scorer = SCORERS.create(scorer)
        self.scorer = scorer
        grid = tuple(getattr(image_tokenizer, "grid_size", model.image_grid))
        if grid != tuple(model.image_grid):
            raise ZooError(f"the image tokenizer's {grid} code grid does not match the model's "
                           f"{tuple(model.image_grid)}")
        # Devices per replica > 1: the weights are sharded (a mesh with a model axis).
        if use_cache and distribution.num_devices > distribution.num_replicas:
            log.warning("zoo: KV-cached decoding does not run on a mesh with a model axis yet "
                        "(DTensor cannot carry the head-sharded cache through the decode "
                        "loop); decoding without the cache, one full decoder pass per token%s",
                        "" if weights in (None, "auto") and not jacobi_window else
                        f" (weights={weights!r} and jacobi_window={jacobi_window!r} need the "
                        f"cache: ignored)")
            if weights is not None:
                packed.check_mode(weights)  # a bad value is still an error
            use_cache, weights, jacobi_window = False, None, 0
        self.sampler = Sampler(model, temperature=temperature, top_k=top_k, top_p=top_p,
                               guidance_scale=guidance_scale, use_cache=use_cache,
                               jit_compile=jit_compile, weights=weights,
                               jacobi_window=jacobi_window)
        self._decode = tf.function(image_tokenizer.decode, autograph=False)

    @classmethod
    def from_model_dir(cls, model_dir, step=None, upsampler_dir=None, scorer=None,
                       distribution=None, **settings):
        """From a `parti` zoo-train run (its text and image tokenizers come with it), built
        under `distribution` when given (e.g. a mesh that shards a model too big for one
        device)."""
        from zoo.train.loop import load_task
        task = load_task(model_dir, step, distribution=distribution)
        for attr in ("model", "text_tokenizer", "image_tokenizer"):
            if getattr(task, attr, None) is None:
                raise ZooError(f"{model_dir} is not a Parti run (its task has no {attr}); "
                               f"give the model_dir of a `parti` training run")
        upsampler = None
        if upsampler_dir:
            upsampler = getattr(load_task(upsampler_dir), "upsampler", None)
            if upsampler is None:
                raise ZooError(f"{upsampler_dir} is not a super-resolution run")
        pipe = cls(task.model, task.text_tokenizer, task.image_tokenizer, upsampler=upsampler,
                   scorer=scorer, distribution=distribution, **settings)
        pipe.task = task
        return pipe

    def tokenize(self, prompts):
        """(ids, mask) int32 [B, L] for checked prompts; warns about truncated ones."""
        prompts = check_prompts(prompts)
        out = self.text_tokenizer(tf.constant(prompts))
        for p, cut in zip(prompts, np.asarray(out["truncated"])):
            if cut:
                log.warning("zoo: prompt truncated to %d tokens: %r",
                            self.text_tokenizer.max_length, p[:80])
        return out["ids"], out["mask"]

    def _padded(self, x):
        """x [B, ...] padded (repeating its last row) to a multiple of the replicas."""
        pad = -x.shape[0] % self.distribution.num_replicas
        if not pad:
            return x
        return np.concatenate([x, np.repeat(x[-1:], pad, axis=0)], axis=0)

    def _codes(self, prompts, prompt_ids, num_samples, seed):
        """Codes [B', S, h, w] with B' >= B: padded to a multiple of the replicas."""
        ids, mask = self.tokenize(prompts)
        if prompt_ids is None:
            prompt_ids = np.arange(len(prompts))
        dist = self.distribution
        inputs = dist.distribute_values({
            "ids": self._padded(np.asarray(ids, np.int32)),
            "mask": self._padded(np.asarray(mask, np.int32)),
            "prompt_ids": self._padded(np.asarray(prompt_ids, np.int32).reshape(-1))})
        codes = dist.run(lambda x: self.sampler(x["ids"], x["mask"], num_samples=num_samples,
                                                seed=seed, prompt_ids=x["prompt_ids"]),
                         inputs)
        h, w = self.model.image_grid
        return np.asarray(dist.gather(codes)).reshape(-1, num_samples, h, w)

    def codes(self, prompts, prompt_ids=None, num_samples=1, seed=0):
        """Image codes int32 [B, num_samples, h, w] (unranked)."""
        prompts = check_prompts(prompts)
        codes = self._codes(prompts, prompt_ids, num_samples, seed)[:len(prompts)]
        return tf.constant(codes)

    def __call__(self, prompts, prompt_ids=None, num_samples=1, seed=0):
        """(images float32 [B, S, H, W, 3] in [0, 1], scores [B, S] or None)."""
        prompts = check_prompts(prompts)
        codes = self._codes(prompts, prompt_ids, num_samples, seed)
        b = len(prompts)
        flat = codes.reshape((-1,) + tuple(self.model.image_grid))
        dist = self.distribution
        images = dist.gather(dist.run(self._decode, dist.distribute_values(flat)))
        images = np.asarray(images)[:b * num_samples]
        if self.upsampler is not None:
            images = self.upsampler.upsample(images)
        images = np.asarray(images, np.float32)
        images = images.reshape((b, num_samples) + images.shape[1:])
        if self.scorer is None:
            return images, None
        captions = tf.constant([p for p in prompts for _ in range(num_samples)])
        scores = np.asarray(self.scorer.score(images.reshape((-1,) + images.shape[2:]),
                                              captions), np.float64).reshape(b, num_samples)
        order = np.argsort(-scores, axis=1, kind="stable")
        images = np.take_along_axis(images, order[:, :, None, None, None], axis=1)
        return images, np.take_along_axis(scores, order, axis=1)
