"""Pretrained text encoders: load a pretraining run's encoder into Parti, by name from gin.

    # Parti with the text encoder of an `mlm` or `contrastive` run (any width: Parti adds a
    # projection when it differs from the decoder's; train_text_encoder = False freezes it)
    parti_tiny.text_encoder = 'pretrained'
    parti_tiny.text_encoder_options = {'model_dir': 'runs/mlm_shapes'}
    # (or `pretrained.model_dir = ...`; in text_encoder_options it is recorded in Parti's run)
    # with the tokenizer the encoder was trained with: the run's SentencePiece model, or the
    # text tokenizer 'pretrained_tokenizer' (pretrained_tokenizer.model_dir = ...)

    # or: the weights loaded into an encoder of a given architecture (Parti's own sizes); any
    # weight whose name or shape differs is a ZooError that names it
    parti_tiny.text_encoder_options = {'model_dir': 'runs/mlm_shapes',
                                      'encoder': 'parti_encoder',
                                      'encoder_options': {'vocab_size': 58, 'width': 256, ...}}

A pretraining run is any `zoo-train` model directory whose task config names its text encoder
(`encoder`, `encoder_options`) and whose model keeps it as `model.text_encoder` (the `mlm` and
`contrastive` tasks). Weights are read from its newest valid checkpoint (or `step`), without
rebuilding the rest of the run.
"""

import os
from typing import Dict, Optional

import numpy as np
import tensorflow as tf

from zoo.errors import ZooError
from zoo.registry import TEXT_ENCODERS, TEXT_TOKENIZERS
from zoo.text_encoders import common

_SHOWN = 6  # mismatched weights named in an error


def read_run(model_dir) -> Dict:
    """run.json of a pretraining run, checked to name a text encoder."""
    from zoo.train import run_info  # noqa: PLC0415

    model_dir = os.fspath(model_dir) if model_dir else model_dir
    if not model_dir or not os.path.isdir(model_dir):
        raise ZooError(f"pretrained text encoder: model_dir {model_dir!r} does not exist (train "
                       f"one with zoo-train --gin_file=runs/mlm_shapes.gin or "
                       f"runs/contrastive_shapes.gin)")
    info = run_info.read(model_dir)
    if info is None:
        raise ZooError(f"pretrained text encoder: {model_dir} has no {run_info.RUN_FILE}; it is "
                       f"not a zoo-train model directory")
    config = info.get("task_config") or {}
    if "encoder" not in config:
        raise ZooError(f"pretrained text encoder: the {info.get('task')!r} run in {model_dir} "
                       f"has no text encoder (use an 'mlm' or 'contrastive' run)")
    return info


def checkpoint_of(model_dir: str, step: Optional[int] = None) -> str:
    """The checkpoint prefix of `step`, or of the newest valid checkpoint."""
    from zoo.train import checkpoint as ckpt_lib  # noqa: PLC0415

    if step is None:
        step, _ = ckpt_lib.latest_valid(model_dir)
        if step is None:
            raise ZooError(f"pretrained text encoder: {model_dir} has no valid checkpoint yet")
    elif step not in ckpt_lib.list_steps(model_dir):
        raise ZooError(f"pretrained text encoder: {model_dir} has no checkpoint at step {step} "
                       f"(have: {ckpt_lib.list_steps(model_dir)})")
    return ckpt_lib.checkpoint_prefix(model_dir, step)


def build_encoder(name: str, config: Dict, layer_name: Optional[str] = None):
    """A registered encoder with its weights created (called once on a dummy batch)."""
    encoder = TEXT_ENCODERS.create_with_defaults(name, config, name=layer_name)
    length = int(config.get("max_length") or 8)
    tokens = tf.zeros([1, min(length, 8)], tf.int32)
    encoder(tokens, tf.ones_like(tokens), training=False)
    return encoder


def restore_encoder(model_dir, step: Optional[int] = None, layer_name: Optional[str] = None,
                    overrides: Optional[Dict] = None):
    """The text encoder of a pretraining run, built as it was and restored from its checkpoint.

    `overrides` replace non-architectural arguments the encoder accepts (dropout, precision).
    """
    info = read_run(model_dir)
    config = info["task_config"]
    name, encoder_options = config["encoder"], dict(config.get("encoder_options") or {})
    params = TEXT_ENCODERS.entry(name).params
    for key, value in (overrides or {}).items():
        if value is not None and (params is None or key in params):
            encoder_options[key] = value
    encoder = build_encoder(name, encoder_options, layer_name)
    prefix = checkpoint_of(os.fspath(model_dir), step)
    # The pretraining tasks checkpoint their weights by name (`task/weights/<path>`, see
    # common.weights_by_name); the encoder's are under `text_encoder/`.
    named = {f"text_encoder/{k}": v for k, v in relative_weights(encoder).items()}
    root = tf.train.Checkpoint(task=tf.train.Checkpoint(weights=tf.train.Checkpoint(**named)))
    try:
        status = root.read(prefix)
        status.assert_existing_objects_matched()
    except (AssertionError, ValueError) as e:
        raise ZooError(f"pretrained text encoder: checkpoint {prefix} does not hold the "
                       f"weights of its {name!r} encoder ({str(e).splitlines()[0][:200]})") \
            from None
    status.expect_partial()
    return encoder


def relative_weights(encoder) -> Dict[str, tf.Variable]:
    """{path below the encoder's own name: variable}, e.g. 'layer_0/mlp/wi/kernel'."""
    out = {}
    for v in encoder.weights:
        parts = v.path.split("/")
        if encoder.name in parts:
            parts = parts[parts.index(encoder.name) + 1:]
        out["/".join(parts)] = v
    return out


def load_encoder_weights(encoder, source, step: Optional[int] = None) -> None:
    """Copies weights into `encoder` (built) by name; a ZooError names any mismatch.

    `source` is a pretraining run directory, another encoder, or {name: array}.
    """
    if isinstance(source, (str, os.PathLike)):
        where = f"run {os.fspath(source)}"
        source = restore_encoder(source, step)
    else:
        where = "the given weights"
    if isinstance(source, dict):
        weights = {k: np.asarray(v) for k, v in source.items()}
    else:
        weights = {k: v.numpy() for k, v in relative_weights(source).items()}
    if not encoder.built or not encoder.weights:
        raise ZooError("load_encoder_weights: build the encoder before loading weights into it")
    target = relative_weights(encoder)
    # In the encoder's weight order (embeddings first), so the first ones named say most.
    missing = [k for k in target if k not in weights]
    unexpected = [k for k in weights if k not in target]
    shapes = [k for k in target
              if k in weights and tuple(target[k].shape) != tuple(weights[k].shape)]
    problems = []
    if shapes:
        problems.append("shape mismatch: " + ", ".join(
            f"{k} {tuple(weights[k].shape)} in {where} vs {tuple(target[k].shape)} here"
            for k in shapes[:_SHOWN]) + (" ..." if len(shapes) > _SHOWN else ""))
    if missing:
        problems.append(f"not in {where}: " + ", ".join(
            f"{k} {tuple(target[k].shape)}" for k in missing[:_SHOWN])
            + (" ..." if len(missing) > _SHOWN else ""))
    if unexpected:
        problems.append(f"only in {where}: " + ", ".join(
            f"{k} {tuple(weights[k].shape)}" for k in unexpected[:_SHOWN])
            + (" ..." if len(unexpected) > _SHOWN else ""))
    if problems:
        raise ZooError(f"cannot load pretrained text encoder weights into {encoder.name!r} "
                       f"({len(shapes)} of different shape, {len(missing)} missing, "
                       f"{len(unexpected)} unexpected): " + "; ".join(problems)
                       + " (build the encoder with the pretraining run's architecture, e.g. "
                         "leave pretrained.encoder unset)")
    for key, variable in target.items():
        variable.assign(weights[key].astype(variable.dtype))


@TEXT_ENCODERS.register("pretrained", needs="an mlm or contrastive run (model_dir)")
def pretrained(model_dir=None, step=None, encoder=None, encoder_options=None, dropout=None,
               mixed_precision=None, name="pretrained_encoder", trainable=True):
    """The text encoder of an mlm/contrastive run (its own architecture, or `encoder`'s).

    Args:
        model_dir: the pretraining run's directory.
        step: its checkpoint step (None: the newest valid one).
        encoder, encoder_options: load into this registered architecture instead (a weight
            whose name or shape differs is an error that names it).
        dropout, mixed_precision: override these (the Parti model passes its own).
        name: layer name. trainable: False freezes the encoder (Parti also has
            `train_text_encoder`).
    """
    if model_dir is None:
        raise ZooError("pretrained text encoder needs a run directory: set "
                       "pretrained.model_dir = 'runs/mlm_shapes' (an mlm or contrastive run)")
    overrides = {"dropout": dropout, "mixed_precision": mixed_precision}
    if encoder is None:
        loaded = restore_encoder(model_dir, step, layer_name=name, overrides=overrides)
    else:
        config = dict(encoder_options or {})
        params = TEXT_ENCODERS.entry(encoder).params
        for key, value in overrides.items():
            if value is not None and (params is None or key in params):
                config.setdefault(key, value)
        loaded = build_encoder(encoder, config, name)
        load_encoder_weights(loaded, os.fspath(model_dir), step)
    loaded.trainable = bool(trainable)
    return loaded


@TEXT_TOKENIZERS.register("pretrained_tokenizer", needs="an mlm or contrastive run (model_dir)")
def pretrained_tokenizer(model_dir=None, max_length=None):
    """The text tokenizer a pretraining run used (same vocabulary as its encoder)."""
    if model_dir is None:
        raise ZooError("pretrained tokenizer needs a run directory: set "
                       "pretrained_tokenizer.model_dir = 'runs/mlm_shapes'")
    config = read_run(model_dir)["task_config"]
    tok_config = dict(config.get("tokenizer_options") or {})
    if max_length is not None:
        tok_config["max_length"] = max_length
    return TEXT_TOKENIZERS.create_with_defaults(config.get("tokenizer", "sentencepiece"),
                                                tok_config)


def export_encoder_weights(encoder, path: str) -> str:
    """Writes `{relative name: array}` of an encoder to an .npz file (for load_encoder_weights)."""
    weights = {k: v.numpy() for k, v in relative_weights(encoder).items()}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    np.savez(path, **weights)
    return path


def read_encoder_weights(path: str) -> Dict[str, np.ndarray]:
    if not os.path.isfile(path):
        raise ZooError(f"encoder weights file {path!r} not found")
    with np.load(path) as f:
        return {k: f[k] for k in f.files}

