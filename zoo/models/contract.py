"""The text-to-image model contract: what a registered `model` must offer to be trained,
sampled, exported and summarised by zoo's tools.

The `parti` task builds whatever `MODELS` entry the gin file names (`parti.model = 'name'`),
the sampler (`zoo.models.sampling.Sampler`), the prompts-to-images pipeline, `zoo-export` and
the training summaries then use it through this contract only. `Parti` (and so every
`parti_*` size, and a plugin's subclass of it) meets it; a model written from scratch must
too. docs/architecture.md ("The model contract") says the same with the reasons.

The registered builder (class or function) accepts, as keyword arguments:

    image_grid         (h, w) of the image code grid      the image tokenizer's grid
    image_vocab_size   int, codebook size                 the image tokenizer's codebook
    text_vocab_size    int                                the text tokenizer's vocabulary
    max_text_length    int, prompt length in tokens
    mixed_precision    bool

(the task sets them from the tokenizers; the rest of the model's arguments come from gin and
`parti.model_options`), and the model it returns is a Keras model with:

    build()                       creates every weight from the configuration (no inputs)
    get_config()                  plain JSON values; `create(name, **config)` (minus `name`,
                                  `trainable`, `dtype`) rebuilds the same architecture: the
                                  task records it in run.json as `model_options`
    image_grid, image_vocab_size, text_vocab_size, max_text_length   as above
    model(inputs, training=)      inputs {text_tokens [B, L], text_mask [B, L],
                                  image_codes [B, h, w] or [B, N], unconditional bool [B] or
                                  None} -> logits [B, N, image_vocab_size], raster order,
                                  teacher forcing (position t sees codes < t)
    encode_text(text_tokens, text_mask, unconditional=None, training=False)
                                  -> (memory [B, L', D], memory_mask [B, L']); examples flagged
                                  `unconditional` get the model's caption-free memory
                                  (classifier-free guidance)
    decoder                       the decoder contract below

A decoder (`model.decoder`; registered decoders are swapped with `parti.decoder = 'name'`):

    num_tokens                    h * w
    bos_id                        the id fed at position 0
    decoder(codes [B, N], memory=, memory_mask=, training=) -> logits [B, N, V]
    memory_kv(memory)             per-layer cross-attention keys/values (once per prompt)
    step_memory(memory, memory_mask)   the same prepared for `step` (once per sampling call)
    inference_weights(mode, native)    the weights packed for `step` (zoo.layers.packed; once
                                  per sampling call)
    init_cache(batch_size, dtype) the KV cache (a nest of tensors)
    step(prev_tokens [B] or [B, L], t, cache, step_memory, weights)
                                  -> (logits [B, V] or [B, L, V], cache): the logits of
                                  positions t .. t + L - 1 given the tokens at t - 1 .. t + L - 2

`check_model_entry` checks the builder's arguments before anything is built, `check_model`
checks a built model; both raise one `ZooError` naming the model and what it lacks.
"""

from typing import Any, Dict

from zoo.errors import ZooError
from zoo.layers.arguments import NOT_ARCHITECTURE, constructor_arguments
from zoo.registry import MODELS, as_json, is_json_value

# Arguments the task sets from the tokenizers (every model builder must take them).
TASK_ARGUMENTS = ("image_grid", "image_vocab_size", "text_vocab_size", "max_text_length",
                  "mixed_precision")
MODEL_ATTRIBUTES = ("image_grid", "image_vocab_size", "text_vocab_size", "max_text_length")
MODEL_METHODS = ("build", "get_config", "encode_text", "__call__")
DECODER_ATTRIBUTES = ("num_tokens", "bos_id")
DECODER_METHODS = ("memory_kv", "step_memory", "inference_weights", "init_cache", "step",
                   "__call__")

_SEE = "(see zoo.models.contract and docs/architecture.md, 'The model contract')"


def check_model_entry(name: str) -> None:
    """The registered model `name` takes the arguments the task sets, else a ZooError."""
    entry = MODELS.entry(name)
    if entry.params is None:  # takes **kwargs
        return
    missing = [a for a in TASK_ARGUMENTS if a not in entry.params]
    if missing:
        raise ZooError(f"model {name!r} ({entry.source}) cannot be trained by the parti task: "
                       f"its builder takes no argument {', '.join(missing)} (the task sets "
                       f"them from the tokenizers) {_SEE}")


def check_model(model, name: str) -> None:
    """A built model meets the contract, else a ZooError naming what it lacks."""
    missing = [a for a in MODEL_ATTRIBUTES if not hasattr(model, a)]
    missing += [f"{m}()" for m in MODEL_METHODS if not callable(getattr(model, m, None))]
    decoder = getattr(model, "decoder", None)
    if decoder is None:
        missing.append("decoder")
    else:
        missing += [f"decoder.{a}" for a in DECODER_ATTRIBUTES if not hasattr(decoder, a)]
        missing += [f"decoder.{m}()" for m in DECODER_METHODS
                    if not callable(getattr(decoder, m, None))]
    if missing:
        raise ZooError(f"model {name!r} ({type(model).__name__}) does not meet the model "
                       f"contract: it has no {', '.join(missing)} {_SEE}")
    try:
        grid = tuple(int(g) for g in model.image_grid)
    except (TypeError, ValueError):
        grid = ()
    if len(grid) != 2 or int(model.decoder.num_tokens) != grid[0] * grid[1]:
        raise ZooError(f"model {name!r}: decoder.num_tokens = {model.decoder.num_tokens} is "
                       f"not the image grid's h * w (image_grid = {model.image_grid!r}) {_SEE}")


def architecture(model, name: str) -> Dict[str, Any]:
    """The model's `get_config()` as plain JSON, without Keras's non-architecture keys: what
    `MODELS.create(name, **architecture)` rebuilds it from (recorded in run.json)."""
    config = constructor_arguments(model.get_config())
    bad = [k for k, v in config.items() if not is_json_value(v)]
    if bad:
        raise ZooError(f"model {name!r}: get_config() entry {bad[0]!r} = {config[bad[0]]!r} is "
                       f"not a plain JSON value, so run.json cannot record the architecture "
                       f"{_SEE}")
    return as_json(config)


def check_rebuilt(model, name: str, recorded: Dict[str, Any]) -> None:
    """The rebuilt model's configuration agrees with what run.json recorded (keys the record
    lacks, e.g. arguments added to the model since, are not compared)."""
    rebuilt = architecture(model, name)
    for key, value in recorded.items():
        if key in NOT_ARCHITECTURE or key == "name":
            continue
        if key in rebuilt and rebuilt[key] != as_json(value):
            raise ZooError(f"model {name!r} rebuilt from its recorded options has {key} = "
                           f"{rebuilt[key]!r}, not the recorded {as_json(value)!r}: its "
                           f"get_config() does not rebuild it {_SEE}")
