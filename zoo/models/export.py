"""A SavedModel that turns prompt strings into images, tokenizer included.

    export_model_dir("runs/demo/parti", "runs/demo/export")   # what zoo-export runs

The SavedModel needs only TensorFlow and tensorflow-text (`import tensorflow_text` registers
the SentencePiece ops of its graph); `zoo-export --help` shows it served. Its `generate`
signature takes `prompts` string [B], `seed` int64, `num_samples` int32 [] (N) and
`guidance_scale` float32 [], and returns `images` uint8 [B, N, H, W, 3], `png` string [B, N]
(PNG files), `codes` int32 [B, N, h, w] and `truncated` bool [B] (prompts cut at the
tokenizer's max length).

Signatures: `serving_default` takes only `prompts` (seed, number of samples and guidance scale
as exported); `generate` takes all four. Sample s of prompt p depends only on (seed, p, s), as
in zoo-sample, so the same seed gives the same images as `zoo-sample` for the same prompts.
Temperature, top-k and top-p are fixed at export time (flags).
"""

import json
import logging
import os
from pathlib import Path

from zoo.errors import ZooError

SIGNATURE_FULL = "generate"
INFO_FILE = "zoo_export.json"


def to_uint8(images):
    """Images in [0, 1] -> uint8 with round-to-nearest (the one conversion PNGs are made with)."""
    import tensorflow as tf
    images = tf.clip_by_value(tf.cast(images, tf.float32), 0.0, 1.0)
    return tf.cast(tf.round(images * 255.0), tf.uint8)


def build_serving_module(model, text_tokenizer, image_tokenizer, *, upsampler=None,
                         temperature=1.0, top_k=0, top_p=1.0, guidance_scale=1.2,
                         num_samples=1, seed=0, weights="auto"):
    """A tf.Module with `generate(prompts, seed, num_samples, guidance_scale)` (see docstring).

    Args:
        model: a built Parti model.
        text_tokenizer: the in-graph SentencePiece tokenizer (zoo.tokenizers.text).
        image_tokenizer: the image tokenizer whose `decode(codes)` gives images in [0, 1].
        upsampler: optional callable images -> images applied after decoding (e.g. an
            upsampler's `upsample`); track its model on the module so its weights are saved.
        temperature, top_k, top_p: sampling settings baked into the graph.
        guidance_scale, num_samples, seed: defaults used by `serving_default`.
        weights: the precision the decode steps read the weights in (`Sampler`). 'auto' (the
            model's own) by default, unlike zoo-sample's bfloat16: a SavedModel runs without
            zoo's native ops, where bfloat16 weights go through TensorFlow's bfloat16 matmul
            (activations rounded too), which was not measured faster.
    """
    import tensorflow as tf

    from zoo.models.sampling import Sampler, row_keys_for

    # Validates the settings with the sampler's own messages.
    Sampler(model, temperature=temperature, top_k=top_k, top_p=top_p,
            guidance_scale=guidance_scale, weights=weights)
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ZooError(f"--num_samples must be a positive int, got {num_samples!r}")

    settings = dict(temperature=float(temperature), top_k=int(top_k), top_p=float(top_p),
                    weights=weights)

    class TextToImage(tf.Module):
        def __init__(self):
            super().__init__(name="zoo_text_to_image")
            self.model = model
            self.text_tokenizer = text_tokenizer
            self.image_tokenizer = image_tokenizer

        @tf.function(input_signature=[
            tf.TensorSpec([None], tf.string, name="prompts"),
            tf.TensorSpec([], tf.int64, name="seed"),
            tf.TensorSpec([], tf.int32, name="num_samples"),
            tf.TensorSpec([], tf.float32, name="guidance_scale")])
        def generate(self, prompts, seed, num_samples, guidance_scale):
            tf.debugging.assert_positive(num_samples, message="num_samples must be >= 1")
            tf.debugging.assert_non_negative(guidance_scale,
                                             message="guidance_scale must be >= 0")
            tokens = self.text_tokenizer(prompts)
            ids, mask = tokens["ids"], tokens["mask"]
            batch = tf.shape(prompts)[0]
            keys = row_keys_for(seed, tf.range(batch), num_samples)

            def plain():
                return Sampler(model, guidance_scale=1.0, **settings).decode(
                    ids, mask, keys, num_samples)

            def guided():
                return Sampler(model, **settings).decode(ids, mask, keys, num_samples,
                                                         guidance_scale=guidance_scale)

            # A scale of 1 takes the sampler's unguided path (no unconditional half), as
            # zoo-sample does, so the tokens are the same.
            codes = tf.cond(tf.equal(guidance_scale, 1.0), plain, guided)
            h, w = model.image_grid
            codes = tf.reshape(codes, [-1, h, w])
            images = self.image_tokenizer.decode(codes)
            if upsampler is not None:
                images = upsampler(images)
            pixels = to_uint8(images)
            png = tf.map_fn(tf.io.encode_png, pixels, fn_output_signature=tf.string)
            size = tf.shape(pixels)[1:]
            split = tf.stack([batch, num_samples])
            return {
                "images": tf.reshape(pixels, tf.concat([split, size], 0)),
                "png": tf.reshape(png, split),
                "codes": tf.reshape(codes, tf.concat([split, [h, w]], 0)),
                "truncated": tokens["truncated"],
            }

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="prompts")])
        def serve(self, prompts):
            return self.generate(prompts, tf.constant(int(seed), tf.int64),
                                 tf.constant(int(num_samples), tf.int32),
                                 tf.constant(float(guidance_scale), tf.float32))

    return TextToImage()


def export(module, output_dir, info=None) -> Path:
    """Saves a module from `build_serving_module` with its two signatures (atomically)."""
    import shutil

    import tensorflow as tf

    out = Path(output_dir)
    if out.exists() and any(out.iterdir()) and not (out / "saved_model.pb").exists():
        raise ZooError(f"--output_dir {str(out)!r} exists and is not an exported model; pick an "
                       f"empty or new folder (nothing was overwritten)")
    tmp = out.with_name(out.name + ".tmp-export")
    if tmp.exists():
        shutil.rmtree(tmp)
    # tf.functions, not concrete functions: tracing outside the save context would be wasted
    # (saving traces again, the save context being part of the function cache key).
    signatures = {"serving_default": module.serve, SIGNATURE_FULL: module.generate}
    tf.saved_model.save(module, str(tmp), signatures=signatures)
    (tmp / INFO_FILE).write_text(json.dumps(info or {}, indent=2) + "\n", encoding="utf-8")
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out


def export_model_dir(model_dir, output_dir=None, *, step=None, upsampler_dir=None,
                     temperature=None, top_k=None, top_p=None, guidance_scale=None,
                     num_samples=1, seed=0, weights="auto") -> Path:
    """Exports a `parti` zoo-train run (with its tokenizers); returns the SavedModel folder.

    Sampling settings left None take the run's recorded ones (sampling.json), else defaults.
    """
    if not model_dir:
        raise ZooError("--model_dir is required: the directory of a `parti` zoo-train run")
    if not os.path.isdir(model_dir):
        raise ZooError(f"--model_dir {model_dir!r} does not exist; pass the directory of a "
                       f"`parti` zoo-train run (e.g. runs/demo/parti from zoo-demo)")
    from zoo.models import sampling_settings
    from zoo.models.sampling import TextToImage
    settings = sampling_settings.resolve(model_dir, temperature=temperature, top_k=top_k,
                                         top_p=top_p, guidance_scale=guidance_scale)
    logging.getLogger("zoo").info("zoo-export: sampling settings: %s", settings.describe())
    temperature, top_k, top_p, guidance_scale = (settings.values[k]
                                                 for k in sampling_settings.KEYS)
    pipe = TextToImage.from_model_dir(model_dir, step=step, upsampler_dir=upsampler_dir)
    upsampler = pipe.upsampler.upsample if pipe.upsampler is not None else None
    module = build_serving_module(
        pipe.model, pipe.text_tokenizer, pipe.image_tokenizer, upsampler=upsampler,
        temperature=temperature, top_k=top_k, top_p=top_p, guidance_scale=guidance_scale,
        num_samples=num_samples, seed=seed, weights=weights)
    if upsampler is not None:
        module.upsampler_model = pipe.upsampler  # tracked, so its weights are saved
    info = {"model_dir": os.path.abspath(model_dir),
            "checkpoint_step": getattr(pipe.task, "restored_step", None),
            "upsampler_dir": os.path.abspath(upsampler_dir) if upsampler_dir else None,
            "temperature": temperature, "top_k": top_k, "top_p": top_p,
            "guidance_scale": guidance_scale, "num_samples": num_samples, "seed": seed,
            "weights": weights}
    return export(module, output_dir or os.path.join(model_dir, "export"), info)
