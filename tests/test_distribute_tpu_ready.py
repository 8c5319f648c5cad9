"""Every task's compiled step is TPU-ready: only numeric, fully shaped tensors enter
`strategy.run` (captions stay on the host), and the step XLA-compiles (jit_compile=True, the
nearest offline stand-in for a TPU) under MirroredStrategy on 2 of the session's virtual CPU
devices (tests/conftest.py sets them before TensorFlow starts). A Parti step is also checked
against TPUStrategy's constraints: no host callbacks or string ops in the traced step, fixed
shapes, one trace for every batch."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from text_encoder_helpers import TINY_ENCODER, TINY_VIT, spm_model
from zoo import distribute
from zoo.errors import ZooError
from zoo.train import steps as steps_lib

pytestmark = pytest.mark.slow

BATCH = 4
SMALL_ADVERSARIAL = dict(feature_network="tiny_conv", feature_network_options={"channels": [8, 8]},
                         discriminator_options={"channels": 4, "max_channels": 8},
                         warmup_steps=2, total_steps=10)


def _vit_vqgan():
    from zoo.train.tokenizer_task import ViTVQGANTask
    return ViTVQGANTask(tokenizer="vit_vqgan_micro", **SMALL_ADVERSARIAL)


def _superres():
    from zoo.train.superres_task import SuperResTask
    return SuperResTask(upsampler="wdsr_tiny", image_size=32, **SMALL_ADVERSARIAL)


def _parti():
    from zoo.train.parti_task import PartiTask
    return PartiTask(model="parti_micro", image_tokenizer="vit_vqgan_micro",
                     text_tokenizer=spm_model(), max_text_length=16)


def _mlm():
    from zoo.text_encoders.mlm import MLMTask
    return MLMTask(encoder="parti_encoder", encoder_options=TINY_ENCODER,
                   tokenizer_options={"model_path": spm_model(), "max_length": 16},
                   dataset="synthetic_shapes", warmup_steps=2)


def _contrastive():
    from zoo.text_encoders.contrastive import ContrastiveTask
    return ContrastiveTask(encoder="parti_encoder", encoder_options=TINY_ENCODER,
                           tokenizer_options={"model_path": spm_model(), "max_length": 16},
                           dataset="synthetic_shapes", warmup_steps=2, **TINY_VIT)


TASKS = {"vit_vqgan": _vit_vqgan, "superres": _superres, "parti": _parti, "mlm": _mlm,
         "contrastive": _contrastive}
# The ViT-VQGAN's quantizer records its code usage in the step by assigning variables with
# ONLY_FIRST_REPLICA aggregation: a cross-replica sync point (merge_call). TPUStrategy compiles
# the whole replica function and allows it; under MirroredStrategy TF cannot put a sync point
# inside the per-replica XLA function (nor one XLA cluster across the replicas' devices). Its
# step is therefore XLA-compiled on one device and run under MirroredStrategy without XLA.
SYNC_POINTS_IN_STEP = {"vit_vqgan"}


def _build(make, dist):
    task = make()
    keras.utils.set_random_seed(0)
    with dist.scope():
        task.build()
        groups = task.update_groups()
    return task, groups


@pytest.mark.parametrize("name", sorted(TASKS))
def test_step_xla_compiles_under_mirrored_strategy(name):
    if name in SYNC_POINTS_IN_STEP:
        _step(name, distribute.get(), jit_compile=True)
        _step(name, distribute.get(strategy="mirrored", num_devices=2), jit_compile=False)
    else:
        _step(name, distribute.get(strategy="mirrored", num_devices=2), jit_compile=True)


def _step(name, dist, jit_compile):
    task, groups = _build(TASKS[name], dist)
    full = task.dataset(BATCH, 0, 0)
    device = steps_lib.device_dataset(full, BATCH)
    for spec in tf.nest.flatten(device.element_spec):
        assert spec.dtype != tf.string and spec.shape.is_fully_defined(), (name, spec)
    strings = [k for k, v in full.element_spec.items() if v.dtype == tf.string] \
        if isinstance(full.element_spec, dict) else []
    assert not set(strings) & set(device.element_spec), strings
    batches = iter(dist.distribute_dataset(device))
    grad_step, apply_step = steps_lib.make_step_functions(task, groups, dist, jit_compile)
    batch = next(batches)
    assert steps_lib.host_only_ops(grad_step.get_concrete_function(batch)) == []
    before = [np.array(dist.to_host(v)) for v in groups[0].variables]
    for _ in range(2):
        losses, _, norms, grads = grad_step(batch)
        apply_step(grads)
        batch = next(batches)
    for group in groups:
        assert np.isfinite(float(dist.reduce_mean(losses[group.name]))), name
        assert np.isfinite(float(dist.reduce_mean(norms[group.name]))), name
    after = [np.array(dist.to_host(v)) for v in groups[0].variables]
    assert any(not np.array_equal(a, b) for a, b in zip(before, after)), "nothing was updated"
    assert grad_step.experimental_get_tracing_count() == 1  # fixed shapes: one trace


def test_parti_step_meets_tpu_constraints():
    """What TPUStrategy asks of a step, checked on the Parti step without a TPU: the traced
    step (jit_compile, so every op needs an XLA kernel) holds no Python callbacks, prints or
    string tensors; every input has a static shape; the loop names offending ops before a
    TPU run starts."""
    from zoo.distribute.base import Distribution
    dist = Distribution()
    task, groups = _build(_parti, dist)
    device = steps_lib.device_dataset(task.dataset(BATCH, 0, 0), BATCH)
    assert set(device.element_spec) == {"text_tokens", "text_mask", "image_codes",
                                        "unconditional"}
    grad_step, _ = steps_lib.make_step_functions(task, groups, dist, jit_compile=True)
    batch = next(iter(device))
    concrete = grad_step.get_concrete_function(batch)
    assert steps_lib.host_only_ops(concrete) == []
    assert all(t.shape.is_fully_defined() for t in concrete.inputs if t.dtype != tf.resource)
    grad_step(batch)  # compiles and runs with XLA

    # The same check names a step that a TPU could not run: a host callback in the losses.
    losses = task.losses

    def with_callback(b, training=True):
        out, metrics = losses(b, training)
        tf.print("loss", out["model"])
        return out, metrics

    task.losses = with_callback
    bad_step, _ = steps_lib.make_step_functions(task, groups, dist, jit_compile=False)
    bad = steps_lib.host_only_ops(bad_step.get_concrete_function(batch))
    assert any(op.startswith("PrintV2") for op in bad), bad


def test_device_dataset_keeps_strings_on_the_host_and_fixes_shapes():
    ds = tf.data.Dataset.range(3).map(lambda s: {
        "caption": tf.fill([4], tf.strings.as_string(s)),
        "tokens": tf.ones([4, tf.cast(s, tf.int32) * 0 + 5], tf.int32),
        "nested": {"x": tf.zeros([4, 2]), "name": tf.fill([4], "n")}})
    assert ds.element_spec["tokens"].shape.as_list() == [4, None]
    device = steps_lib.device_dataset(ds, 4)
    assert set(device.element_spec) == {"tokens", "nested"}
    assert set(device.element_spec["nested"]) == {"x"}
    assert device.element_spec["tokens"].shape.as_list() == [4, 5]
    grown = tf.data.Dataset.range(2).map(lambda s: {"t": tf.ones([4, 2 + tf.cast(s, tf.int32)])})
    it = iter(steps_lib.device_dataset(grown, 4))
    next(it)
    with pytest.raises(tf.errors.InvalidArgumentError):
        next(it)  # a batch of another shape is an error, not a silent recompilation
    with pytest.raises(ZooError, match="outside a dict"):
        steps_lib.device_dataset(tf.data.Dataset.from_tensors((tf.constant(["a"]),)), 1)
