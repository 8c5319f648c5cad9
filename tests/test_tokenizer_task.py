"""Tests of the `vit_vqgan` and `superres` tasks through the one training loop."""

import json

import numpy as np
import pytest
import tensorflow as tf

import zoo.plugins
from shapes_standin import shapes_dataset, shapes_images
from zoo.errors import ZooError
from zoo.train.loop import train
from zoo.train.superres_task import SuperResTask
from zoo.train.tokenizer_task import (ViTVQGANTask, WarmupCosine, evaluate_reconstruction,
                                      load_tokenizer)

# The tasks name their dataset, feature network and discriminator by registered name: every
# built-in must be registered when this file runs alone (or one test of it).
zoo.plugins.load_builtins()

SMALL_D = {"channels": 4, "max_channels": 8}
COMMON = dict(feature_network="tiny_conv", feature_network_options={"channels": [8, 8]},
              discriminator_options=SMALL_D, learning_rate=3e-3, end_learning_rate=1e-3,
              warmup_steps=5, total_steps=100)


def standin(task, size):
    task.dataset = lambda batch_size, seed, start_step=0: shapes_dataset(batch_size, size, seed,
                                                                         start_step)
    return task


def eval_loss(task, images):
    losses, metrics = task.losses({"image": tf.constant(images)}, training=False)
    return float(metrics["l2"])


def run(task, model_dir, steps=40):
    return train(task=task, model_dir=str(model_dir), steps=steps, batch_size=8, seed=0,
                 checkpoint_every=steps, summary_every=10, image_summary_every=steps,
                 progress=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A micro tokenizer trained for 40 steps through the loop (GAN on)."""
    d = tmp_path_factory.mktemp("tok")
    task = standin(ViTVQGANTask(tokenizer="vit_vqgan_micro", **COMMON), 16)
    held = shapes_images(16, 16, 123)
    task.build()
    before = eval_loss(task, held)
    result = run(task, d)
    return d, result, before, eval_loss(result.task, held), held


@pytest.fixture(scope="module")
def reconstructing(tmp_path_factory):
    """A micro tokenizer that learns to reconstruct (300 steps, ~15 s): no GAN, perceptual or
    logit-Laplace terms, dead codes restarted. (The GAN fixture above is too short to beat a
    constant image: 40 steps leave its codebook on one code.)"""
    d = tmp_path_factory.mktemp("rec")
    task = standin(ViTVQGANTask(
        tokenizer="vit_vqgan_micro", tokenizer_options={"restart_dead_codes": True,
                                                        "logit_laplace": False},
        feature_network="tiny_conv", feature_network_options={"channels": [8]},
        perceptual_weight=0.0, adversarial_weight=0.0, logit_laplace_weight=0.0,
        learning_rate=1e-2, end_learning_rate=3e-3, warmup_steps=5, total_steps=300), 16)
    result = run(task, d, steps=300)
    return d, result, shapes_images(16, 16, 123)


def test_warmup_cosine():
    s = WarmupCosine(1e-3, 1e-4, 10, 110)
    assert float(s(0)) == pytest.approx(1e-4)
    assert float(s(9)) == pytest.approx(1e-3)
    assert float(s(60)) == pytest.approx(5.5e-4, rel=1e-3)
    assert float(s(110)) == pytest.approx(1e-4) and float(s(500)) == pytest.approx(1e-4)


def test_config_is_json_and_rebuilds_without_gin(gin_clean):
    import gin
    gin.parse_config("vit_vqgan_micro.width = 16\nvit_vqgan_micro.heads = 4")
    cfg = ViTVQGANTask(tokenizer="vit_vqgan_micro", **COMMON).config()
    assert cfg["tokenizer_options"] == {"width": 16, "heads": 4}
    gin.clear_config()
    task = ViTVQGANTask(**json.loads(json.dumps(cfg)))
    task.build()
    assert task.tokenizer.width == 16 and task.config() == cfg
    assert [g.name for g in task.update_groups()] == ["generator", "discriminator"]


def test_two_groups_train_and_improve(trained):
    d, result, before, after, _ = trained
    assert result.step == 40
    assert set(result.losses) == {"generator", "discriminator"}
    assert {"l2", "psnr", "codebook_usage", "perplexity", "logit_laplace", "perceptual",
            "generator_adversarial"} <= set(result.metrics)
    assert after < 0.7 * before, (before, after)
    from zoo.train.summaries import read_scalars
    scalars = read_scalars(str(d / "train"))
    assert "metrics/codebook_usage" in scalars and "loss/discriminator" in scalars


def test_load_tokenizer_restores_trained_weights(reconstructing):
    d, result, held = reconstructing
    tok = load_tokenizer(str(d))
    np.testing.assert_array_equal(np.asarray(tok.encode(held)),
                                  np.asarray(result.task.tokenizer.encode(held)))
    stats = evaluate_reconstruction(tok, held)
    # The statistics, recomputed here from encode -> decode.
    codes = np.asarray(tok.encode(held))
    mse = ((np.asarray(tok.decode(codes)) - held) ** 2).mean(axis=(1, 2, 3))
    assert stats["psnr"] == pytest.approx(float(np.mean(10 * np.log10(1 / mse))), rel=1e-4)
    assert stats["mse"] == pytest.approx(float(mse.mean()), rel=1e-4)
    assert stats["codebook_usage"] == pytest.approx(len(np.unique(codes)) / tok.codebook_size)
    # Better than any constant image: the best one (the held-out images' mean colour) and a
    # blank one; a tokenizer whose decoder ignores the codes cannot get past them.
    def psnr(out):
        err = ((np.broadcast_to(out, held.shape) - held) ** 2).mean(axis=(1, 2, 3))
        return float(np.mean(10 * np.log10(1 / err)))
    baselines = {"mean colour": psnr(held.mean(axis=(0, 1, 2))), "black": psnr(0.0),
                 "grey": psnr(0.5)}
    assert stats["psnr"] > max(baselines.values()) + 2.0, (stats, baselines)
    assert stats["codebook_usage"] > 0.25, stats  # not one code for everything


@pytest.mark.slow
def test_decoder_finetune_keeps_encoder_and_improves(trained, tmp_path):
    d, result, _, _, held = trained
    task = standin(ViTVQGANTask(
        init_from=str(d), freeze_encoder=True, logit_laplace_weight=0.0, adversarial_weight=0.0,
        tokenizer_options={"decoder_blocks": 2, "decoder_width": 48, "decoder_heads": 2,
                           "logit_laplace": False}, **COMMON), 16)
    assert task.config()["tokenizer"] == "vit_vqgan_micro"  # taken from the source run
    task.build()
    source = result.task.tokenizer
    np.testing.assert_array_equal(np.asarray(task.tokenizer.encode(held)),
                                  np.asarray(source.encode(held)))
    before = eval_loss(task, held)
    frozen = [np.asarray(v) for v in source.quantizer.trainable_variables]
    out = run(task, tmp_path / "ft", steps=30)
    tok = out.task.tokenizer
    assert tok.decoder.blocks == 2 and not tok.logit_laplace
    np.testing.assert_array_equal(np.asarray(tok.quantizer.codebook), frozen[0])
    np.testing.assert_array_equal(np.asarray(tok.encode(held)), np.asarray(source.encode(held)))
    assert eval_loss(out.task, held) < 0.8 * before


def test_init_from_rejects_other_encoder(trained):
    d = trained[0]
    task = ViTVQGANTask(init_from=str(d), tokenizer_options={"width": 16}, **COMMON)
    with pytest.raises(ZooError, match="its width is 32, this tokenizer's is 16"):
        task.build()
    with pytest.raises(ZooError, match="not a zoo-train model directory"):
        ViTVQGANTask(init_from=str(d / "nope"))


@pytest.mark.slow
def test_superres_on_tokenizer_reconstructions_improves(trained, tmp_path):
    d = trained[0]
    task = standin(SuperResTask(upsampler="wdsr_tiny", image_size=32, tokenizer_dir=str(d),
                                **COMMON), 32)
    task.build()
    held = shapes_images(8, 32, 7)
    before = eval_loss(task, held)
    out = run(task, tmp_path / "sr", steps=60)
    assert eval_loss(out.task, held) < 0.7 * before
    assert set(out.losses) == {"generator", "discriminator"}
    bad = SuperResTask(upsampler="wdsr_tiny", image_size=64, tokenizer_dir=str(d), **COMMON)
    with pytest.raises(ZooError, match="set superres.image_size = 32"):
        bad.build()


def test_encode_tool_writes_and_reads_codes(trained, tmp_path):
    from helpers_data import train_spm
    from zoo.data.records import encode_dataset, load_encoded, read_encoded
    d = trained[0]
    tok = load_tokenizer(str(d))
    spm = str(tmp_path / "spm.model")
    train_spm(spm)
    out = str(tmp_path / "codes")
    info = encode_dataset(tok, out, split="validation", spm_model=spm, max_length=16,
                          num_examples=20, batch_size=8, shard_size=12, progress=False)
    assert info["num_examples"] == 20 and len(info["files"]) == 2
    assert info["grid_size"] == [4, 4] and info["codebook_size"] == 64
    arrays, _ = load_encoded(out, "validation")
    from zoo.data.pipeline import make_dataset
    ref = next(iter(make_dataset(dataset="synthetic_shapes", split="validation", image_size=16,
                                 batch_size=20, tokenizer=spm, max_length=16, repeat=False,
                                 shuffle=False)))
    np.testing.assert_array_equal(arrays["image_codes"], np.asarray(tok.encode(ref["image"])))
    np.testing.assert_array_equal(arrays["text_tokens"], np.asarray(ref["text_tokens"]))
    np.testing.assert_array_equal(arrays["caption"], ref["caption"].numpy())
    # Batches are a pure function of (seed, step): resuming at step 3 gives the same batch 3.
    full = iter(read_encoded(out, "validation", batch_size=6, seed=1))
    batches = [next(full) for _ in range(5)]
    resumed = next(iter(read_encoded(out, "validation", batch_size=6, seed=1, start_step=3)))
    for k in ("image_codes", "text_tokens", "text_mask"):
        np.testing.assert_array_equal(resumed[k], batches[3][k])
        assert batches[0][k].dtype == tf.int32
    assert batches[0]["image_codes"].shape == (6, 4, 4)
    # Each epoch (20 examples) visits every example once, in its own shuffled order: the first
    # 20 of the 30 rows drawn are exactly the 20 records (duplicate captions are told apart
    # by their codes), neither in file order nor in the next epoch's order.
    def keys(parts):
        return [bytes(c) + codes.tobytes() for c, codes in zip(
            np.concatenate([np.asarray(p["caption"]) for p in parts]),
            np.concatenate([np.asarray(p["image_codes"]) for p in parts]))]

    drawn, records = keys(batches), keys([arrays])
    assert len(drawn) == 30 and sorted(drawn[:20]) == sorted(records)
    assert drawn[:20] != records and drawn[20:] != drawn[:10]
    with pytest.raises(ZooError, match="no encoded split 'test'"):
        read_encoded(out, "test")
