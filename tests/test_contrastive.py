"""Contrastive pretraining: symmetric InfoNCE, training through the loop, the scorer, clip_score."""

import numpy as np
import pytest
import tensorflow as tf

import zoo.data  # noqa: F401  (registers synthetic_shapes)
import zoo.eval  # noqa: F401  (registers clip_score)
import zoo.tokenizers  # noqa: F401
import zoo.text_encoders  # noqa: F401
from text_encoder_helpers import TINY_ENCODER, TINY_VIT, contrastive_run, mlm_run, spm_model
from zoo.data import shapes
from zoo.errors import ZooError
from zoo.registry import METRICS, SCORERS
from zoo.text_encoders import contrastive


def _log_softmax(x, axis):
    x = x - x.max(axis=axis, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=axis, keepdims=True))


def test_info_nce_matches_numpy_reference():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(6, 8)).astype(np.float32)
    b = rng.normal(size=(6, 8)).astype(np.float32)
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    loss, logits = contrastive.info_nce(tf.constant(a), tf.constant(b), 14.0)
    ref = 14.0 * a @ b.T
    want = -(np.diag(_log_softmax(ref, 1)).mean() + np.diag(_log_softmax(ref, 0)).mean()) / 2
    np.testing.assert_allclose(float(loss), want, rtol=1e-5)
    np.testing.assert_allclose(logits.numpy(), ref, rtol=1e-5, atol=1e-5)
    # Perfectly aligned, well separated pairs give a loss near zero.
    eye = np.eye(6, 8, dtype=np.float32)
    assert float(contrastive.info_nce(tf.constant(eye), tf.constant(eye), 100.0)[0]) < 1e-6


def _held_out(n=48, seed=3):
    cfg = shapes.ShapesConfig(image_size=32, max_objects=1, sizes=("large",),
                              count_probability=0.0)
    ex = [shapes.generate(seed, i, "validation", cfg) for i in range(n)]
    return np.stack([e["image"] for e in ex]).astype(np.float32) / 255.0, \
        [e["caption"] for e in ex]


def _held_out_loss(task, images, captions):
    """Symmetric InfoNCE of a task's towers on unseen pairs (chance: ln(batch))."""
    return float(contrastive.info_nce(tf.constant(task.embed_images(images)),
                                      tf.constant(task.embed_text(captions)),
                                      float(task.model.logit_scale()))[0])


def test_contrastive_learns_to_match_unseen_images_and_captions():
    _, result = contrastive_run()
    assert result.step == 40
    images, captions = _held_out(64)
    # An untrained twin (same towers, fresh weights) is the baseline: about chance, ln 32.
    untrained = contrastive.ContrastiveTask(
        encoder="parti_encoder", encoder_options=TINY_ENCODER,
        tokenizer_options={"model_path": spm_model(), "max_length": 16}, **TINY_VIT)
    untrained.build()
    trained_loss = _held_out_loss(result.task, images[:32], captions[:32])
    untrained_loss = _held_out_loss(untrained, images[:32], captions[:32])
    assert trained_loss < 2.6 and trained_loss < untrained_loss - 1.0, (
        trained_loss, untrained_loss, np.log(32))
    # Each unseen image picks its own caption among 8 (chance 1/8) far more often.
    accuracy = contrastive.retrieval_accuracy(result.task, images, captions, candidates=8)
    assert accuracy >= 0.4, accuracy
    assert contrastive.retrieval_accuracy(untrained, images, captions, candidates=8) < 0.25


def test_scorer_prefers_matching_captions_and_reranks_by_cosine():
    model_dir, result = contrastive_run()
    scorer = SCORERS.create("contrastive_scorer", model_dir=model_dir)
    images, captions = _held_out()
    matched = scorer.score(images, captions)
    assert matched.shape == (48,) and np.all(np.abs(matched) <= 1.0 + 1e-5)
    shifted = scorer.score(images, captions[1:] + captions[:1])
    assert matched.mean() > shifted.mean() + 0.05, (matched.mean(), shifted.mean())
    # Temperature is learnable and reported.
    assert result.metrics["logit_scale"] != pytest.approx(1 / 0.07, rel=1e-4)
    # Scores are cosine similarities of the towers' embeddings (unit vectors), computed here
    # from the trained task itself, not through the scorer.
    image_emb = result.task.embed_images(images[:8])
    text_emb = result.task.embed_text([captions[0]])[0]
    np.testing.assert_allclose(np.linalg.norm(image_emb, axis=1), 1.0, atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(text_emb), 1.0, atol=1e-4)
    cosine = image_emb @ text_emb
    # rerank: the scores in the samples' order, the order best first.
    order, scores = scorer.rerank(images[:8], captions[0])
    np.testing.assert_allclose(scores, cosine, atol=1e-5)
    assert sorted(order.tolist()) == list(range(8))
    assert np.all(np.diff(cosine[order]) <= 0) and order[0] == int(np.argmax(cosine))
    # Images of another size are resized to the model's.
    big = tf.image.resize(images[:4], [64, 64]).numpy()
    np.testing.assert_allclose(scorer.score(big, captions[:4]), matched[:4], atol=0.05)


def test_clip_score_metric():
    model_dir, _ = contrastive_run()
    images, captions = _held_out(16)
    scorer = SCORERS.create("contrastive_scorer", model_dir=model_dir)
    metric = METRICS.create("clip_score", scorer=scorer)
    value = metric(images, captions)
    # The mean cosine of each image with its own caption (unscaled, negatives kept).
    assert value == pytest.approx(float(np.mean(scorer.score(images, captions))), abs=1e-6)
    assert value > metric(images, captions[::-1])
    with pytest.raises(ZooError, match="images .* and 3 prompts"):
        metric(images, captions[:3])


class _FixedScorer:
    def score(self, images, captions):
        return np.array([float(im.mean()) * (1 if c == "hit" else -1)
                         for im, c in zip(images, captions)], np.float32)


def test_clip_score_formula_with_any_scorer():
    images = np.stack([np.full((4, 4, 3), v, np.float32) for v in (0.2, 0.4, 0.9)])
    metric = METRICS.create("clip_score", scorer=_FixedScorer(), batch_size=2)
    assert metric(images, ["hit", "hit", "miss"]) == pytest.approx((0.2 + 0.4 - 0.9) / 3)
    clip = METRICS.create("clip_score", scorer=_FixedScorer(), scale=100.0,
                          clip_negative=True)
    assert clip(images, ["hit", "hit", "miss"]) == pytest.approx(100 * 0.6 / 3)


def test_retrieval_accuracy_counts_the_right_caption():
    class Task:  # embeddings that make image i closest to caption i
        def embed_images(self, images):
            return np.eye(40, dtype=np.float32)[:len(images)]

        def embed_text(self, captions):
            return np.stack([np.eye(40, dtype=np.float32)[int(c.split()[1])]
                             for c in captions])

    captions = [f"caption {i}" for i in range(40)]
    assert contrastive.retrieval_accuracy(Task(), np.zeros((40, 2, 2, 3)), captions, 32) == 1.0
    wrong = captions[1:] + captions[:1]
    # Every image's best match among all 40 is another caption.
    assert contrastive.retrieval_accuracy(Task(), np.zeros((40, 2, 2, 3)), wrong, 40) == 0.0


def test_scorer_errors(tmp_path):
    with pytest.raises(ZooError, match="contrastive_scorer.model_dir"):
        SCORERS.create("contrastive_scorer")
    mlm_dir, _ = mlm_run()
    with pytest.raises(ZooError, match="is a 'mlm' run, not a 'contrastive'"):
        SCORERS.create("contrastive_scorer", model_dir=mlm_dir)
    model_dir, _ = contrastive_run()
    scorer = SCORERS.create("contrastive_scorer", model_dir=model_dir)
    with pytest.raises(ZooError, match=r"\[B, H, W, 3\]"):
        scorer.score(np.zeros((2, 8, 8)), ["a", "b"])
    with pytest.raises(ZooError, match="2 images but 3 captions"):
        scorer.score(np.zeros((2, 8, 8, 3)), ["a", "b", "c"])


def test_bad_sizes_are_clear():
    args = dict(encoder="parti_encoder", encoder_options=TINY_ENCODER,
                tokenizer_options={"model_path": spm_model(), "max_length": 16})
    with pytest.raises(ZooError, match="patch_size=5 does not divide image_size=32"):
        contrastive.ContrastiveTask(**{**args, **TINY_VIT, "patch_size": 5})
    with pytest.raises(ZooError, match="embed_dim must be a positive integer"):
        contrastive.ContrastiveTask(**{**args, **TINY_VIT, "embed_dim": 0})


def test_text_tower_initialised_from_an_mlm_run():
    from zoo.text_encoders import pretrained
    mlm_dir, result = mlm_run()
    task = contrastive.ContrastiveTask(
        encoder="parti_encoder", encoder_options=TINY_ENCODER,
        tokenizer_options={"model_path": spm_model(), "max_length": 16},
        init_text_encoder=mlm_dir, **TINY_VIT)
    task.build()
    got = {k: v.numpy() for k, v in pretrained.relative_weights(task.encoder).items()}
    want = pretrained.relative_weights(result.task.encoder)
    assert set(got) == set(want)
    for k, v in want.items():
        np.testing.assert_array_equal(got[k], v.numpy(), err_msg=k)
