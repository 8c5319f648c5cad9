"""Shared helpers for the text-encoder tests: tiny SentencePiece model, captions, a local step."""

import itertools
import os

import numpy as np

COLOURS = ["red", "green", "blue", "yellow", "purple", "orange"]
SHAPES = ["circle", "square", "triangle"]
PLACES = ["at the top", "at the bottom", "on the left", "on the right", "in the centre"]


def captions(n=None):
    """Simple shape captions, every combination once (n: the first n)."""
    all_ = [f"a {c} {s} {p}" for c, s, p in itertools.product(COLOURS, SHAPES, PLACES)]
    all_ += [f"two {c} {s}s" for c, s in itertools.product(COLOURS, SHAPES)]
    return all_ if n is None else all_[:n]


def train_spm(folder, texts=None, vocab_size=64):
    """A tiny SentencePiece model (pad=0, eos=1, unk=2 like zoo-train-spm's); its path."""
    import sentencepiece as spm
    folder = str(folder)
    corpus = os.path.join(folder, "corpus.txt")
    with open(corpus, "w") as f:
        f.write("\n".join(texts or captions()) + "\n")
    prefix = os.path.join(folder, "spm")
    spm.SentencePieceTrainer.train(
        input=corpus, model_prefix=prefix, vocab_size=vocab_size, model_type="unigram",
        pad_id=0, eos_id=1, unk_id=2, bos_id=-1, character_coverage=1.0,
        minloglevel=2, hard_vocab_limit=False)
    return prefix + ".model"


def run_steps(task, steps, batch_size=16, seed=0):
    """Trains `task` for `steps` with a plain compiled step; returns the per-step losses.

    Seed the weights with keras.utils.set_random_seed *before* making the task: resetting TF's
    seed after a SentencePiece tokenizer has run destroys its resource (TF clears its caches).
    """
    import tensorflow as tf
    task.build()
    groups = task.update_groups()
    data = iter(task.dataset(batch_size, seed, 0))

    @tf.function
    def step(batch):
        with tf.GradientTape() as tape:
            losses, metrics = task.losses(batch, training=True)
            total = tf.add_n([losses[g.name] for g in groups])
        grads = tape.gradient(total, [v for g in groups for v in g.variables])
        i = 0
        for g in groups:
            n = len(g.variables)
            gs = grads[i:i + n]
            i += n
            if g.clip_norm:
                gs, _ = tf.clip_by_global_norm(gs, g.clip_norm)
            g.optimizer.apply_gradients(zip(gs, g.variables))
        return losses, metrics

    history = []
    for _ in range(steps):
        losses, metrics = step(next(data))
        history.append({k: float(v) for k, v in {**losses, **metrics}.items()})
    return history


def mean(xs):
    return float(np.mean(xs))


def register_stand_in_encoder():
    """Registers `test_tiny_text_encoder` (embedding + one attention block) once; its name.

    A stand-in with the text encoder interface for tests that must not depend on the size or
    speed of Parti's own encoder.
    """
    import keras
    from keras import ops

    from zoo.registry import TEXT_ENCODERS

    name = "test_tiny_text_encoder"
    if name in TEXT_ENCODERS:
        return name

    @keras.saving.register_keras_serializable(package="zoo_tests")
    class TinyTextEncoder(keras.layers.Layer):
        """Stand-in text encoder for tests."""

        def __init__(self, vocab_size=64, width=32, heads=2, max_length=64, **kwargs):
            super().__init__(**kwargs)
            self.vocab_size, self.width, self.heads = vocab_size, width, heads
            self.max_length = max_length
            self.embed = keras.layers.Embedding(vocab_size, width, name="token_embedding")
            self.position = keras.layers.Embedding(max_length, width, name="position_embedding")
            self.attention = keras.layers.MultiHeadAttention(heads, width // heads,
                                                             name="self_attention")
            self.norm1 = keras.layers.LayerNormalization(name="norm1")
            self.mlp = keras.layers.Dense(width, activation="gelu", name="mlp")
            self.norm2 = keras.layers.LayerNormalization(name="norm2")

        def call(self, tokens, mask, training=False):
            x = self.embed(tokens) + self.position(ops.arange(ops.shape(tokens)[1]))[None]
            m = ops.cast(mask, "bool")
            x = x + self.attention(self.norm1(x), self.norm1(x),
                                   attention_mask=m[:, None, :] & m[:, :, None])
            return x + self.mlp(self.norm2(x))

        def get_config(self):
            return {**super().get_config(), "vocab_size": self.vocab_size,
                    "width": self.width, "heads": self.heads, "max_length": self.max_length}

    TEXT_ENCODERS.register(name)(TinyTextEncoder)
    return name


TINY_ENCODER = {"width": 32, "layers": 1, "heads": 2, "mlp_dim": 64, "max_length": 16,
                "dropout": 0.0}
_RUNS = {}


def spm_model():
    """A tiny SentencePiece model for these tests (made once per process)."""
    if "spm" not in _RUNS:
        import tempfile
        _RUNS["spm"] = train_spm(tempfile.mkdtemp(prefix="zoo_te_spm_"))
    return _RUNS["spm"]


def mlm_run(steps=60):
    """(model_dir, TrainResult) of a tiny `mlm` run through the one loop (once per process)."""
    if "mlm" not in _RUNS:
        import tempfile

        from zoo.text_encoders.mlm import MLMTask
        from zoo.train.loop import train
        folder = tempfile.mkdtemp(prefix="zoo_te_mlm_")
        corpus = os.path.join(folder, "captions.txt")
        with open(corpus, "w") as f:
            f.write("\n".join(captions()) + "\n")
        task = MLMTask(encoder="parti_encoder", encoder_options=TINY_ENCODER,
                       tokenizer_options={"model_path": spm_model(), "max_length": 16},
                       text_files=[corpus], learning_rate=3e-3, warmup_steps=5)
        model_dir = os.path.join(folder, "run")
        result = train(task=task, model_dir=model_dir, steps=steps, batch_size=32, seed=0,
                       checkpoint_every=steps, summary_every=0, image_summary_every=0,
                       progress=False)
        _RUNS["mlm"] = (model_dir, result)
    return _RUNS["mlm"]


TINY_VIT = {"image_size": 32, "patch_size": 8, "image_width": 32, "image_layers": 1,
            "image_heads": 2, "image_mlp_dim": 64, "embed_dim": 32}


def contrastive_run(steps=40):
    """(model_dir, TrainResult) of a tiny `contrastive` run on synthetic_shapes (once)."""
    if "contrastive" not in _RUNS:
        import tempfile

        from zoo.text_encoders.contrastive import ContrastiveTask
        from zoo.train.loop import train
        folder = tempfile.mkdtemp(prefix="zoo_te_con_")
        task = ContrastiveTask(
            encoder="parti_encoder", encoder_options=TINY_ENCODER,
            tokenizer_options={"model_path": spm_model(), "max_length": 16},
            dataset="synthetic_shapes",
            dataset_options={"max_objects": 1, "sizes": ["large"], "count_probability": 0.0},
            learning_rate=3e-3, warmup_steps=5, **TINY_VIT)
        model_dir = os.path.join(folder, "run")
        result = train(task=task, model_dir=model_dir, steps=steps, batch_size=32, seed=0,
                       checkpoint_every=steps, summary_every=0, image_summary_every=0,
                       progress=False)
        _RUNS["contrastive"] = (model_dir, result)
    return _RUNS["contrastive"]
