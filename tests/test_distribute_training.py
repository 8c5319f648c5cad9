"""A tiny Parti trained by the real loop unsharded, on DTensor meshes and under MirroredStrategy
gives the same losses and weights; checkpoints cross-restore between meshes; sampling under a
mesh gives the same tokens. 8 virtual CPU devices (tests/conftest.py).

The runs are shared by the tests of this module (a module fixture), since each DTensor
compilation costs seconds.
"""

import shutil

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.experimental import dtensor

from distribute_helpers import TinyPartiTask, host_values, megatron_rules
from zoo import distribute
from zoo.train.loop import load_task, train
from zoo.train.summaries import read_scalars

pytestmark = pytest.mark.slow

STEPS = 5
BATCH = 8
TOL = 1e-4


def _train(model_dir, dist, steps=STEPS):
    return train(task=TinyPartiTask(), model_dir=str(model_dir), steps=steps, batch_size=BATCH,
                 seed=0, distribution=dist, progress=False, summary_every=1,
                 checkpoint_every=steps)


def _losses(model_dir):
    return [v for _, v in sorted(read_scalars(str(model_dir / "train"))["loss/main"].items())]


@pytest.fixture(scope="module")
def fast_compile():
    """Grappler off while these tests run: DTensor compiles 2-4x faster, values are the same."""
    before = tf.config.optimizer.get_experimental_options().get("disable_meta_optimizer", False)
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
    yield
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": before})


@pytest.fixture(scope="module")
def runs(tmp_path_factory, fast_compile):
    rules = megatron_rules()
    root = tmp_path_factory.mktemp("dist")
    out = {}
    result = _train(root / "single", None)
    out["single"] = dict(dir=root / "single", dist=distribute.get(), task=result.task)
    # batch:2,model:4 trains 3 steps, stops, and resumes from its own checkpoint to step 5.
    mesh_dir = root / "mesh_2x4"
    dist = distribute.get(mesh="batch:2,model:4", layout_rules=rules)
    _train(mesh_dir, dist, steps=3)
    dist = distribute.get(mesh="batch:2,model:4", layout_rules=rules)
    result = _train(mesh_dir, dist)
    assert result.start_step == 3
    out["mesh_2x4"] = dict(dir=mesh_dir, dist=dist, task=result.task, rules=rules)
    dist = distribute.get(mesh="batch:8", layout_rules=rules)
    result = _train(root / "mesh_8", dist)
    out["mesh_8"] = dict(dir=root / "mesh_8", dist=dist, task=result.task)
    dist = distribute.get(strategy="mirrored", num_devices=4)
    result = _train(root / "mirrored", dist)
    out["mirrored"] = dict(dir=root / "mirrored", dist=dist, task=result.task)
    return out


@pytest.mark.parametrize("name", ["mesh_2x4", "mesh_8", "mirrored"])
def test_same_losses_and_weights_as_unsharded(runs, name):
    ref, run = runs["single"], runs[name]
    want, got = _losses(ref["dir"]), _losses(run["dir"])
    assert len(want) == len(got) == STEPS
    np.testing.assert_allclose(got, want, atol=TOL)
    assert want[-1] != want[0]  # it trained
    w_ref = host_values(ref["dist"], ref["task"].model.weights)
    w_run = host_values(run["dist"], run["task"].model.weights)
    assert len(w_ref) == len(w_run)
    worst = max(float(np.max(np.abs(a - b))) for a, b in zip(w_ref, w_run))
    assert worst < TOL, f"{name}: weights differ by {worst}"


def test_weights_are_really_sharded(runs):
    run = runs["mesh_2x4"]
    model = run["task"].model
    layouts = {v.path: dtensor.fetch_layout(v.value).sharding_specs for v in model.weights}
    assert layouts["parti/decoder/layer_0/mlp/wi/kernel"] == ["unsharded", "model"]
    assert layouts["parti/decoder/layer_0/mlp/wo/kernel"] == ["model", "unsharded"]
    assert layouts["parti/decoder/layer_0/self_attention/query/kernel"] == ["unsharded", "model"]
    assert layouts["parti/decoder/logits/kernel"] == ["unsharded", "model"]
    # Optimizer slots follow: momentum like the weight, factored moments drop a dimension.
    slots = {(p.path, p.weight): p.spec for p in run["dist"].planned if p.kind == "slot"}
    wi = "parti/decoder/layer_0/mlp/wi/kernel"
    assert slots[("adafactor/parti_decoder_layer_0_mlp_wi_kernel_momentum", wi)] == (
        None, "model")
    assert slots[("adafactor/kernel_row", wi)] == (None,)
    assert slots[("adafactor/kernel_col", wi)] == ("model",)


@pytest.mark.parametrize("source,target", [
    ("mesh_2x4", "single"), ("mesh_2x4", "mesh_8"), ("single", "mesh_2x4")])
def test_checkpoint_restores_on_another_mesh(runs, source, target, tmp_path):
    rules = runs["mesh_2x4"]["rules"]
    dist = {"single": lambda: distribute.get(),
            "mesh_8": lambda: distribute.get(mesh="batch:8", layout_rules=rules),
            "mesh_2x4": lambda: distribute.get(mesh="batch:2,model:4", layout_rules=rules),
            }[target]()
    src = runs[source]
    copy = tmp_path / "run"
    shutil.copytree(src["dir"], copy)
    task = load_task(str(copy), distribution=dist)
    assert task.restored_step == STEPS
    want = host_values(src["dist"], src["task"].model.weights)
    got = host_values(dist, task.model.weights)
    for a, b, v in zip(got, want, task.model.weights):
        np.testing.assert_array_equal(a, b, err_msg=v.path)
    if target == "mesh_2x4":
        kernel = next(v for v in task.model.weights
                      if v.path == "parti/decoder/layer_0/mlp/wi/kernel")
        assert dtensor.fetch_layout(kernel.value).sharding_specs == ["unsharded", "model"]


def _prompts():
    rng = np.random.RandomState(1)
    text = rng.randint(1, 64, size=(8, 8)).astype(np.int32)
    return text, np.ones_like(text), np.arange(8, dtype=np.int32)


@pytest.mark.parametrize("name,use_cache", [("mesh_8", True), ("mesh_2x4", False)])
def test_sampling_under_a_mesh_gives_the_same_tokens(runs, name, use_cache):
    from zoo.models.sampling import Sampler
    text, mask, ids = _prompts()
    ref = runs["single"]["task"].model
    # float32 weights (bfloat16, the cached default, takes the fused native op on one device and
    # TensorFlow's bfloat16 matmul under DTensor; uncached decoding reads the model's own).
    want = Sampler(ref, temperature=1.0, guidance_scale=1.2, weights="float32")(
        text, mask, 1, seed=3).numpy()
    run = runs[name]
    dist = run["dist"]
    inputs = dist.distribute_values({"text": text, "mask": mask, "ids": ids})
    sampler = Sampler(run["task"].model, temperature=1.0, guidance_scale=1.2,
                      use_cache=use_cache, weights="float32" if use_cache else None)
    got = dist.run(lambda: sampler(inputs["text"], inputs["mask"], 1, seed=3,
                                   prompt_ids=inputs["ids"]))
    got = dist.gather(got).numpy()
    assert want.shape == got.shape == (8, 4, 4)
    np.testing.assert_array_equal(got, want)
    assert len(np.unique(want)) > 1
