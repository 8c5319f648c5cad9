"""The `parti` training task through the one loop, the prompts-to-images pipeline, zoo-sample."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import zoo.plugins
from zoo.errors import ZooError

zoo.plugins.load_builtins()

from zoo.models.sampling import TextToImage  # noqa: E402
from zoo.registry import SCORERS  # noqa: E402
from zoo.train.loop import load_task, train  # noqa: E402
from zoo.train.parti_task import PartiTask  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def spm_model(tmp_path_factory):
    import sentencepiece as spm
    from zoo.data.pipeline import captions
    folder = tmp_path_factory.mktemp("spm")
    corpus = folder / "corpus.txt"
    corpus.write_text("\n".join(captions("synthetic_shapes", max_sentences=2000)) + "\n")
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(folder / "spm"), vocab_size=40, pad_id=0, eos_id=1,
        unk_id=2, bos_id=-1, minloglevel=2, hard_vocab_limit=False)
    return str(folder / "spm.model")


def make_task(spm_model, **overrides):
    args = dict(model="parti_micro", image_tokenizer="vit_vqgan_micro", text_tokenizer=spm_model,
                schedule_options={"peak": 3e-3, "warmup_steps": 2}, image_summaries=2,
                model_options={"dropout": 0.0})
    args.update(overrides)
    return PartiTask(**args)


@pytest.fixture(scope="module")
def trained(spm_model, tmp_path_factory):
    """A run to sample from (12 steps on an untrained tokenizer's codes, which carry little
    meaning): what Parti learns is tested on codes that do, below."""
    model_dir = str(tmp_path_factory.mktemp("parti_run"))
    result = train(task=make_task(spm_model), model_dir=model_dir, steps=12, batch_size=16,
                   checkpoint_every=12, summary_every=4, image_summary_every=12,
                   progress=False)
    return model_dir, result


def test_trains_through_the_loop(trained):
    model_dir, result = trained
    assert result.step == 12 and np.isfinite(result.losses["model"])
    info = json.load(open(os.path.join(model_dir, "run.json")))
    assert info["task"] == "parti"
    assert info["task_config"]["model"] == "parti_micro"
    assert info["task_config"]["model_options"]["image_grid"] == [4, 4]


class PaletteCodes:
    """A fixed image tokenizer for tests: each 8x8 patch of a 24x24 shapes image, one cell of
    the data's 3x3 grid, becomes 0 (black background) or 1 + the index of the nearest palette
    colour. The codes then say exactly which colour is where, as the captions do."""

    image_size, grid_size, codebook_size = 24, (3, 3), 8

    def encode(self, images):
        from zoo.data import shapes
        b = tf.shape(images)[0]
        x = tf.reshape(images, [b, 3, 8, 3, 8, 3])
        x = tf.reshape(tf.transpose(x, [0, 1, 3, 2, 4, 5]), [b, 3, 3, 64, 3])
        fg = tf.cast(tf.reduce_max(x, -1) > 0.2, tf.float32)[..., None]
        n = tf.reduce_sum(fg, -2)
        mean = tf.reduce_sum(x * fg, -2) / tf.maximum(n, 1.0)
        palette = tf.constant(list(shapes.COLOURS.values()), tf.float32) / 255.0
        nearest = tf.argmin(tf.reduce_sum(tf.square(mean[..., None, :] - palette), -1), -1,
                            output_type=tf.int32)
        return tf.where(n[..., 0] > 4, 1 + nearest, 0)


def _loss(task, batch, unconditional):
    flags = tf.fill([int(batch["image_codes"].shape[0])], unconditional)
    return float(task.losses({**batch, "unconditional": flags}, training=False)[0]["model"])


@pytest.mark.slow
def test_parti_learns_text_to_image(spm_model, tmp_path):
    """On held-out examples the caption lowers the loss far below what any model that ignores
    the text can reach: the entropy of the image codes alone (measured on the data).

    One large object on a 3x3 grid (6 colours x 9 cells = 54 code grids, about 0.44 nats per
    code without the caption; with it, none). Checked against a broken text path (the encoder
    fed zeros instead of the caption): conditional loss 0.43, at that floor; working: 0.14."""
    from collections import Counter

    from zoo.data.records import encode_dataset, load_encoded
    data = {"max_objects": 1, "sizes": ["large"]}
    codes = str(tmp_path / "codes")
    for split, n in (("train", 1024), ("validation", 256)):
        encode_dataset(PaletteCodes(), codes, split=split, num_examples=n, batch_size=128,
                       progress=False, dataset_args=data)
    grids = Counter(map(bytes, np.asarray(load_encoded(codes, "train")[0]["image_codes"],
                                          np.int8)))
    p = np.array(list(grids.values())) / sum(grids.values())
    floor = float(-(p * np.log(p)).sum() / 9)  # nats per code of the best text-free model
    assert len(grids) == 54 and 0.4 < floor < 0.45, (len(grids), floor)

    task = make_task(spm_model, code_records=codes, image_summaries=0,
                     image_tokenizer_options={"image_size": 24, "patch_size": 8,
                                              "codebook_size": 8},
                     model_options={"dropout": 0.0, "width": 64, "mlp_dim": 128, "heads": 4},
                     condition_drop_rate=0.2)
    train(task=task, model_dir=str(tmp_path / "parti"), steps=400, batch_size=32, seed=0,
          checkpoint_every=400, summary_every=0, image_summary_every=0, progress=False)
    task.split = "validation"
    held_out = next(iter(task.dataset(256, seed=0)))
    conditional, unconditional = _loss(task, held_out, False), _loss(task, held_out, True)
    assert conditional < 0.5 * floor, (conditional, unconditional, floor)
    assert unconditional > conditional + 0.25 * floor, (conditional, unconditional, floor)


def test_xla_compiled_steps_match_the_graph_steps(spm_model, tmp_path):
    # The batches carry the raw caption strings, which XLA cannot take: the loop drops them
    # before the compiled step (train.jit_compile=True failed with "unsupported operations").
    losses = {}
    for jit in (False, True):
        result = train(task=make_task(spm_model), model_dir=str(tmp_path / f"jit{jit}"),
                       steps=3, batch_size=4, checkpoint_every=3, summary_every=3,
                       image_summary_every=0, progress=False, jit_compile=jit)
        losses[jit] = result.losses["model"]
    np.testing.assert_allclose(losses[True], losses[False], rtol=1e-4)


def test_config_rebuilds_without_gin(spm_model, gin_clean):
    import gin
    gin.parse_config("parti_micro.decoder_attention = ['column', 'row']\n"
                     "adafactor.beta_1 = 0.8")
    task = make_task(spm_model)
    config = task.config()
    gin.clear_config()
    again = PartiTask(**json.loads(json.dumps(config)))
    assert again.config() == json.loads(json.dumps(config))
    assert again.model_options["decoder_attention"] == ["column", "row"]
    assert again.optimizer_options["beta_1"] == 0.8
    assert config["model_options"]["text_vocab_size"] == 40  # from the SentencePiece model


def test_condition_drop_is_a_function_of_seed_and_step(spm_model):
    task = make_task(spm_model, condition_drop_rate=0.5)
    task.build()
    first = [b["unconditional"].numpy() for b in task.dataset(16, seed=3).take(4)]
    resumed = next(iter(task.dataset(16, seed=3, start_step=3)))["unconditional"].numpy()
    np.testing.assert_array_equal(resumed, first[3])
    assert not all((f == first[0]).all() for f in first[1:])
    share = np.mean(first)
    assert 0.25 < share < 0.75
    batch = next(iter(task.dataset(16, seed=3)))
    assert batch["image_codes"].shape == (16, 4, 4) and batch["text_tokens"].shape == (16, 16)
    task.condition_drop_rate = 0.0
    assert not next(iter(task.dataset(16, seed=3)))["unconditional"].numpy().any()


def test_bad_task_arguments(spm_model, tmp_path):
    with pytest.raises(ZooError, match="text_tokenizer is required"):
        PartiTask(model="parti_micro", image_tokenizer="vit_vqgan_micro")
    with pytest.raises(ZooError, match="condition_drop_rate"):
        make_task(spm_model, condition_drop_rate=1.5)
    with pytest.raises(ZooError, match="does not exist"):
        make_task(spm_model, image_tokenizer_dir=str(tmp_path / "nope"))
    with pytest.raises(ZooError, match="not a zoo-train model directory"):
        make_task(spm_model, image_tokenizer_dir=str(tmp_path))


class _BrightnessScorer:
    """Scores images by mean brightness (a stand-in for the contrastive scorer)."""

    def score(self, images, captions):
        assert images.ndim == 4 and len(captions) == len(images)
        return np.asarray(images).mean(axis=(1, 2, 3))


def test_prompts_to_images_with_reranking(trained):
    model_dir, _ = trained
    pipe = TextToImage.from_model_dir(model_dir, temperature=1.0)
    images, scores = pipe(["a red circle", "two blue squares"], num_samples=3, seed=1)
    assert images.shape == (2, 3, 16, 16, 3) and scores is None
    assert 0.0 <= images.min() and images.max() <= 1.0
    SCORERS.register("test_brightness")(_BrightnessScorer)
    try:
        ranked = TextToImage.from_model_dir(model_dir, temperature=1.0, scorer="test_brightness")
        r_images, r_scores = ranked(["a red circle", "two blue squares"], num_samples=3, seed=1)
    finally:
        SCORERS.unregister("test_brightness")
    assert (np.diff(r_scores, axis=1) <= 0).all()  # best first
    np.testing.assert_allclose(r_scores, r_images.mean(axis=(2, 3, 4)), rtol=1e-5)
    # Same samples, reordered.
    np.testing.assert_allclose(np.sort(r_images.mean(axis=(2, 3, 4)), axis=1),
                               np.sort(images.mean(axis=(2, 3, 4)), axis=1), rtol=1e-5)
    with pytest.raises(ZooError, match="prompt 1 is empty"):
        pipe(["a red circle", "  "])


@pytest.mark.slow
@pytest.mark.parametrize("mesh,strategy", [
    ("batch:4,model:2", "default"), ("batch:8", "default"), (None, "mirrored")])
def test_distributed_sampling_gives_the_single_device_images(trained, mesh, strategy, caplog):
    from distribute_helpers import megatron_rules
    from zoo import distribute
    prompts = ["a red circle", "two blue squares", "a green triangle"]  # padded to 4 / 8
    model_parallel = mesh is not None and "model" in mesh
    # KV-cached decoding does not run on a model axis: the pipeline falls back to uncached.
    # Cached paths compare in float32 (bfloat16, the default, takes the fused native op on one
    # device and TensorFlow's bfloat16 matmul under DTensor); the model axis keeps the default,
    # which resolves to the model's own weights there without a word about them.
    weights = None if model_parallel else "float32"
    want = TextToImage.from_model_dir(trained[0], use_cache=not model_parallel,
                                      weights=weights)(prompts, num_samples=2, seed=4)[0]
    dist = distribute.get(strategy=strategy, mesh=mesh,
                          layout_rules=megatron_rules() if mesh else None)
    with caplog.at_level("WARNING", logger="zoo"):
        pipe = TextToImage.from_model_dir(trained[0], distribution=dist, weights=weights)
    assert pipe.sampler.use_cache is not model_parallel
    assert ("without the cache" in caplog.text) is model_parallel
    assert "ignored" not in caplog.text and pipe.sampler.weights in ("auto", "float32")
    if model_parallel:  # the weights really are sharded over the model axis
        from tensorflow.experimental import dtensor
        specs = [dtensor.fetch_layout(v.value).sharding_specs
                 for v in pipe.model.trainable_variables]
        assert any("model" in s for s in specs)
    got, _ = pipe(prompts, num_samples=2, seed=4)
    assert got.shape == want.shape == (3, 2, 16, 16, 3)
    np.testing.assert_allclose(got, want, atol=1e-5)
    codes = pipe.codes(prompts[:1], num_samples=2, seed=4)
    assert codes.shape == (1, 2, 4, 4)


def test_long_prompts_are_truncated_with_a_warning(trained, caplog):
    pipe = TextToImage.from_model_dir(trained[0])
    with caplog.at_level("WARNING", logger="zoo"):
        ids, mask = pipe.tokenize(["a red circle " * 20])
    assert ids.shape == (1, 16) and int(mask.numpy().sum()) == 16
    assert "truncated" in caplog.text


def _run_tool(*args):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "ZOO_DISABLE_PLUGIN_AUTOLOAD": "1"}
    return subprocess.run([sys.executable, "-m", "tools.sample", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_zoo_sample_writes_pngs_and_a_gallery(trained, tmp_path):
    prompts = tmp_path / "prompts.tsv"
    prompts.write_text("Prompt\tCategory\tChallenge\tNote\n"
                       "a red circle\tShapes\tBasic\t\n"
                       "two green squares\tShapes\tCount\t\n")
    out = tmp_path / "out"
    proc = _run_tool(f"--model_dir={trained[0]}", f"--prompts_file={prompts}",
                     "--prompt=a blue triangle", "--num_samples=2", f"--output_dir={out}",
                     "--batch_size=2", "--progress=false")
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert [r["prompt"] for r in rows] == ["a blue triangle", "a red circle",
                                           "two green squares"]
    assert rows[1]["category"] == "Shapes"
    assert all((out / name).is_file() for r in rows for name in r["images"])
    assert (out / "index.html").is_file()
    bad = _run_tool(f"--model_dir={trained[0]}", "--prompt=", f"--output_dir={out}")
    assert bad.returncode == 1
    assert "empty prompt" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.slow
def test_zoo_sample_on_a_mesh_writes_the_same_images(trained, tmp_path):
    from PIL import Image
    args = [f"--model_dir={trained[0]}", "--prompt=a red circle", "--prompt=two blue squares",
            "--prompt=a green triangle", "--num_samples=2", "--batch_size=3", "--seed=7",
            "--progress=false"]
    one = _run_tool(*args, f"--output_dir={tmp_path / 'one'}")
    assert one.returncode == 0, one.stderr[-2000:]
    mesh = _run_tool(*args, f"--output_dir={tmp_path / 'mesh'}", "--virtual_devices=2",
                     "--mesh=batch:2")
    assert mesh.returncode == 0, mesh.stderr[-2000:]
    names = sorted(p.name for p in (tmp_path / "one" / "images").iterdir())
    assert len(names) == 6
    for name in names:
        a = np.asarray(Image.open(tmp_path / "one" / "images" / name), np.int16)
        b = np.asarray(Image.open(tmp_path / "mesh" / "images" / name), np.int16)
        assert np.abs(a - b).max() <= 1, name  # rounding of the last bit at most
    bad = _run_tool(*args, f"--output_dir={tmp_path / 'bad'}", "--mesh=batch:3")
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert "--virtual_devices" in bad.stderr


def test_trains_from_code_records(spm_model, tmp_path):
    from zoo.registry import IMAGE_TOKENIZERS
    from zoo.data.records import encode_dataset
    tokenizer = IMAGE_TOKENIZERS.create("vit_vqgan_micro")
    encode_dataset(tokenizer, str(tmp_path / "codes"), num_examples=40, batch_size=20,
                   progress=False)
    task = make_task(spm_model, code_records=str(tmp_path / "codes"))
    task.build()
    batches = list(task.dataset(8, seed=1).take(3))
    assert batches[0]["image_codes"].shape == (8, 4, 4)
    assert batches[0]["text_tokens"].shape == (8, 16)  # this run's tokenizer and length
    again = next(iter(task.dataset(8, seed=1, start_step=2)))
    np.testing.assert_array_equal(again["image_codes"], batches[2]["image_codes"])
    losses, metrics = task.losses(batches[0])
    assert np.isfinite(float(losses["model"])) and "accuracy" in metrics
    with pytest.raises(ZooError, match="grids of"):
        make_task(spm_model, code_records=str(tmp_path / "codes"), image_tokenizer="vit_vqgan_tiny")


# -- the model contract: the task builds whatever MODELS entry it is given --------------------


class _NoDecoder(keras.Model):
    """A registered model that lacks most of the contract (for the error)."""

    def __init__(self, image_grid=(4, 4), image_vocab_size=16, text_vocab_size=64,
                 max_text_length=16, mixed_precision=False, **kwargs):
        super().__init__(**kwargs)
        self.image_grid, self.image_vocab_size = tuple(image_grid), image_vocab_size
        self.text_vocab_size, self.max_text_length = text_vocab_size, max_text_length

    def get_config(self):
        return {**super().get_config(), "image_grid": list(self.image_grid),
                "image_vocab_size": self.image_vocab_size,
                "text_vocab_size": self.text_vocab_size,
                "max_text_length": self.max_text_length}


def _fixed_size(width=32):
    """A model builder that takes none of the arguments the task sets."""
    from zoo.models.parti import Parti
    return Parti(image_grid=(4, 4), image_vocab_size=16, width=width, mlp_dim=64, heads=2,
                 encoder_layers=1, decoder_layers=1, text_vocab_size=64, max_text_length=16)


def test_a_model_outside_the_contract_is_a_clear_error(spm_model):
    from zoo.registry import MODELS
    MODELS.register("test_no_decoder")(_NoDecoder)
    MODELS.register("test_fixed_size")(_fixed_size)
    try:
        task = make_task(spm_model, model="test_no_decoder", model_options={})
        with pytest.raises(ZooError, match=r"model 'test_no_decoder' \(_NoDecoder\) does not "
                                           r"meet the model contract: it has no "
                                           r"encode_text\(\), decoder .*docs/architecture.md"):
            task.build()
        with pytest.raises(ZooError, match="'test_fixed_size' .*takes no argument image_grid, "
                                           "image_vocab_size, text_vocab_size, max_text_length, "
                                           "mixed_precision"):
            make_task(spm_model, model="test_fixed_size", model_options={})
        with pytest.raises(ZooError, match="unknown model 'parti_mikro'; did you mean "
                                           "'parti_micro'"):
            make_task(spm_model, model="parti_mikro")
    finally:
        MODELS.unregister("test_no_decoder")
        MODELS.unregister("test_fixed_size")


def test_the_registered_model_is_built_with_its_registered_decoder(spm_model, gin_clean):
    """A decoder registered by name is swapped into a Parti size from gin; the task records and
    rebuilds it without gin."""
    import gin

    from zoo.models.parti import ImageDecoder
    from zoo.registry import DECODERS

    class ShiftedDecoder(ImageDecoder):
        """Parti's decoder with its position embedding shifted by one row (for the test)."""

        def positions(self, index):
            return super().positions((index + self.image_grid[1]) % self.num_tokens)

    DECODERS.register("test_shifted")(ShiftedDecoder)
    try:
        gin.parse_config("parti_micro.decoder = 'test_shifted'")
        task = make_task(spm_model)
        assert task.model_options["decoder"] == "test_shifted"
        gin.clear_config()
        again = PartiTask(**json.loads(json.dumps(task.config())))
        again.build()
        assert type(again.model.decoder) is ShiftedDecoder
    finally:
        DECODERS.unregister("test_shifted")


def test_run_json_written_before_decoders_were_registered_still_loads(spm_model, tmp_path):
    """A parti run.json as written before `decoder`/`decoder_options` existed (and when
    `text_encoder_options` was `text_encoder_config`; a demo run's Parti, at micro sizes):
    the task reads it and builds Parti with its own decoder."""
    from zoo.train import run_info
    old = {"decoder_attention": ["row", {"block_cols": None, "block_rows": None,
                                         "kernel_size": 11, "name": "conv_shaped",
                                         "native": True}],
           "decoder_layers": 2, "dropout": 0.0, "encoder_layers": 1, "heads": 2,
           "image_grid": [4, 4], "image_vocab_size": 64, "max_text_length": 16,
           "mixed_precision": False, "mlp_dim": 64, "name": "parti",
           "text_encoder": "parti_encoder", "text_encoder_config": {}, "text_vocab_size": 40,
           "train_text_encoder": True, "width": 32}
    config = {"model": "parti_tiny", "model_options": old, "image_tokenizer": "vit_vqgan_micro",
              "image_tokenizer_options": {}, "text_tokenizer": spm_model,
              "max_text_length": 16, "dataset": "synthetic_shapes", "dataset_options": {}}
    (tmp_path / "run.json").write_text(json.dumps({"task": "parti", "task_config": config}))
    task = PartiTask(**run_info.read(str(tmp_path))["task_config"])
    task.build()
    assert type(task.model.decoder).__name__ == "ImageDecoder"
    assert task.model.decoder.num_tokens == 16 and task.model.width == 32
    assert task.model_options["decoder"] == "parti_decoder"
