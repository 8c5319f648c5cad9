"""zoo.distribute.mesh: mesh specs, layout rules, slot layouts, start-up errors, DTensor fixes.

Runs on the 8 virtual CPU devices of tests/conftest.py.
"""

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.experimental import dtensor

from zoo import distribute
from zoo.distribute.dtensor_compat import dtensor_compat
from zoo.distribute.rules import LayoutRules, derive_slot_spec, parse_mesh
from zoo.errors import ZooError

AXES = [("batch", 2), ("model", 4)]


# -- mesh specs and rules (no devices) ----------------------------------------------------------

def test_parse_mesh():
    assert parse_mesh("batch:2,model:4") == AXES
    assert parse_mesh(" batch = 128 , model:4") == [("batch", 128), ("model", 4)]


@pytest.mark.parametrize("spec,words", [
    ("", "empty"), ("batch2", "axis:size"), ("batch:0", "size 0"),
    ("batch:2,batch:4", "appears twice"), ("batch:-1", "axis:size")])
def test_parse_mesh_errors(spec, words):
    with pytest.raises(ZooError, match=words):
        parse_mesh(spec)


def test_rules_first_match_wins_and_unmatched_is_replicated():
    rules = LayoutRules([("mlp[/_]wi[/_]kernel", (None, "model")),
                         ("kernel", ("model", None))], AXES)
    assert rules.spec_for("parti/decoder/layer_0/mlp/wi/kernel", (8, 16)) == (None, "model")
    assert rules.spec_for("parti/decoder/layer_0/mlp/wo/kernel", (16, 8)) == ("model", None)
    assert rules.spec_for("parti/decoder/final_norm/gamma", (8,)) == (None,)
    # Adam-style slot names match the same rules through [/_].
    assert rules.match("adam/parti_decoder_layer_0_mlp_wi_kernel_momentum")[1] == (None, "model")


def test_rules_model_axis_absent_means_unsharded():
    rules = LayoutRules([("kernel", (None, "model"))], [("batch", 8)])
    assert rules.spec_for("a/kernel", (4, 6)) == (None, None)


def test_rule_errors_name_the_problem():
    with pytest.raises(ZooError, match=r"unknown mesh axis 'modle'.*did you mean 'model'"):
        LayoutRules([("kernel", (None, "modle"))], AXES)
    with pytest.raises(ZooError, match="bad regex"):
        LayoutRules([("kernel(", (None, "model"))], AXES)
    with pytest.raises(ZooError, match="twice"):
        LayoutRules([("kernel", ("model", "model"))], AXES)
    with pytest.raises(ZooError, match="one mesh axis name or None per weight dimension"):
        LayoutRules([("kernel", "model")], AXES)
    rules = LayoutRules([("kernel", (None, "model"))], AXES)
    with pytest.raises(ZooError, match=r"rank 2 to weight 'x/kernel' of shape \[4\]"):
        rules.spec_for("x/kernel", (4,))


def test_indivisible_dimension_names_weight_dim_and_sizes():
    rules = LayoutRules([("wi[/_]kernel", (None, "model"))], AXES)
    with pytest.raises(ZooError) as e:
        rules.spec_for("parti/mlp/wi/kernel", (8, 10))
    msg = str(e.value)
    for part in ("'parti/mlp/wi/kernel'", "[8, 10]", "dimension 1", "size 10", "'model'",
                 "size 4"):
        assert part in msg, msg


def test_slot_specs_follow_the_weight():
    # Same shape: same layout (Adam moments, Adafactor momentum).
    assert derive_slot_spec((8, 16), (None, "model"), (8, 16)) == (None, "model")
    # Factored second moments drop the reduced dimension.
    assert derive_slot_spec((8, 16), (None, "model"), (8,)) == (None,)
    assert derive_slot_spec((8, 16), (None, "model"), (16,)) == ("model",)
    assert derive_slot_spec((16, 8), ("model", None), (16,)) == ("model",)
    # Square weights: the first factored slot is the row statistic (last dim reduced), the
    # second the column statistic.
    assert derive_slot_spec((8, 8), (None, "model"), (8,), nth=0) == (None,)
    assert derive_slot_spec((8, 8), (None, "model"), (8,), nth=1) == ("model",)
    assert derive_slot_spec((8, 16), (None, "model"), ()) == ()
    assert derive_slot_spec((8, 16), (None, "model"), (3,)) is None


# -- on the 8 virtual devices -------------------------------------------------------------------

def test_mesh_size_must_equal_device_count():
    with pytest.raises(ZooError) as e:
        distribute.get(mesh="batch:4,model:4", layout_rules=[])
    msg = str(e.value)
    assert "4 x 4 = 16 devices" in msg and "8 CPU device(s)" in msg, msg


def test_mesh_and_strategy_exclude_each_other():
    with pytest.raises(ZooError, match="exclude each other"):
        distribute.get(strategy="mirrored", mesh="batch:8")


def test_indivisible_weight_fails_when_the_model_is_built():
    import keras
    dist = distribute.get(mesh="batch:2,model:4", layout_rules=[("wi[/_]kernel", (None, "model"))])
    with pytest.raises(ZooError, match=r"'wi/kernel' of shape \[3, 6\].*size 6.*'model' of size 4"):
        with dist.scope():
            layer = keras.layers.Dense(6, name="wi")
            layer.build((None, 3))
    # The error leaves no default mesh behind (TF's own scope does): later traces in the
    # process would take DTensor paths (the KV cache's in-place write, for one).
    from tensorflow.experimental import dtensor
    assert dtensor.get_default_mesh() is None


def test_variables_get_rule_layouts_and_optimizer_slots_follow():
    import keras

    from zoo.registry import OPTIMIZERS
    import zoo.train  # noqa: F401  (registers Parti's adafactor)
    dist = distribute.get(mesh="batch:2,model:4", layout_rules=[
        ("wi[/_]kernel", (None, "model")), ("wo[/_]kernel", ("model", None))])
    with dist.scope():
        wi = keras.layers.Dense(8, name="wi")
        wi.build((None, 8))
        wo = keras.layers.Dense(4, name="wo")
        wo.build((None, 8))
        adam = keras.optimizers.Adam(name="adam")  # explicit: Keras numbers unnamed ones
        adam.build(wi.trainable_variables + wo.trainable_variables)
        ada = OPTIMIZERS.create("adafactor")
        ada.build(wi.trainable_variables + wo.trainable_variables)
    specs = {p.path: p.spec for p in dist.planned}
    assert dtensor.fetch_layout(wi.kernel.value).sharding_specs == ["unsharded", "model"]
    assert dtensor.fetch_layout(wo.kernel.value).sharding_specs == ["model", "unsharded"]
    assert specs["adam/wi_kernel_momentum"] == (None, "model")
    assert specs["adam/wo_kernel_velocity"] == ("model", None)
    # Parti's Adafactor: factored moments of the square wi kernel [8, 8] (None, model):
    # row (last dim reduced) (None,), col ('model',); of wo [8, 4] (model, None): both 'model'.
    of = {(p.path, p.weight): p.spec for p in dist.planned}
    assert of[("adafactor/kernel_row", "wi/kernel")] == (None,)
    assert of[("adafactor/kernel_col", "wi/kernel")] == ("model",)
    assert of[("adafactor/kernel_row", "wo/kernel")] == ("model",)
    assert of[("adafactor/kernel_col", "wo/kernel")] == (None,)
    assert specs["adafactor/wi_kernel_momentum"] == (None, "model")
    for plan in dist.planned:
        if plan.kind == "slot" and plan.spec:
            assert plan.weight is not None, plan


def _adafactor_step(dist):
    import keras
    shapes = [("a", (16, 64)), ("b", (64, 16))]
    with dist.scope():
        weights = [keras.Variable(np.random.RandomState(i).rand(*s).astype(np.float32), name=n)
                   for i, (n, s) in enumerate(shapes)]
        opt = keras.optimizers.Adafactor(0.1)
        opt.build(weights)
    grads = [np.random.RandomState(10 + i).rand(*s).astype(np.float32)
             for i, (_, s) in enumerate(shapes)]
    grads = [dist.reduce_gradients([_put(dist, g)], [w])[0] for g, w in zip(grads, weights)]
    dist.run(tf.function(lambda: opt.apply_gradients(zip(grads, weights))))
    return [dist.to_host(v).numpy() for v in weights + list(opt.variables)]


def _put(dist, x):
    if dist.mesh is None:
        return tf.constant(x)
    return dtensor.copy_to_mesh(tf.constant(x), dtensor.Layout.replicated(dist.mesh, x.ndim))


def test_two_factored_updates_in_one_function_match_unsharded():
    """DTensor pitfall: a variable read back after an assign in the same tf.function.

    Keras's Adafactor updates its row/column moments, then reads them back for the velocity.
    With two weights of different layouts updated in one tf.function, TF 2.21 read wrong
    values (NaN velocities); zoo's DVariables forward the value written in the function.
    """
    want = _adafactor_step(distribute.get())
    got = _adafactor_step(distribute.get(mesh="batch:2,model:4", layout_rules=[
        ("^a$", (None, "model")), ("^b$", ("model", None))]))
    for x, y in zip(got, want):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


def test_dtensor_compat_rewrites_keep_values():
    a = tf.reshape(tf.range(24.0), [2, 3, 4])
    n = a.numpy()
    with dtensor_compat():
        for key in [(None,), (slice(None), None), (Ellipsis, None), (None, Ellipsis, 1),
                    (0, None, slice(1, 3)), (slice(None), 1, None, slice(None, None, -1))]:
            np.testing.assert_array_equal(a[key].numpy(), n[key])
        import keras
        cache = tf.zeros([2, 3, 5, 4])
        new = tf.ones([2, 3, 1, 4])
        out = keras.ops.slice_update(cache, (0, 0, tf.constant(2), 0), new).numpy()
    want = np.zeros([2, 3, 5, 4])
    want[:, :, 2:3] = 1
    np.testing.assert_array_equal(out, want)


def test_newaxis_slices_trace_under_a_mesh():
    """`x[None]` in a tf.function on DTensors crashes TF 2.21 without dtensor_compat."""
    dist = distribute.get(mesh="batch:8", layout_rules=[])
    with dist.scope():
        table = tf.Variable(tf.ones([16, 32]), name="table")
    x = dist.distribute_values(tf.ones([8, 16, 32]))
    out = dist.run(tf.function(lambda x: x + tf.gather(table, tf.range(16))[None]), x)
    np.testing.assert_array_equal(dist.gather(out).numpy(), np.full([8, 16, 32], 2.0))


def test_vit_vqgan_on_a_mesh_matches_one_device():
    """The ViT-VQGAN (encode, decode) under batch:2,model:4 gives the one-device numbers.

    Its attention once took q/k/v as `qkv[0]` of a [3, B, ...] tensor: DTensor's strided
    slice of a tensor whose batch axis is not dim 0 returned wrong values (eager and traced).
    """
    import zoo.tokenizers  # noqa: F401  (registers the ViT-VQGAN sizes)
    from zoo.registry import IMAGE_TOKENIZERS
    images = np.random.RandomState(0).rand(8, 16, 16, 3).astype(np.float32)
    ref = IMAGE_TOKENIZERS.create("vit_vqgan_micro")  # (built in its constructor)
    dist = distribute.get(mesh="batch:2,model:4", layout_rules=[
        ("qkv[/_]kernel", (None, "model")), ("fc1[/_]kernel", (None, "model"))])
    with dist.scope():
        tok = IMAGE_TOKENIZERS.create("vit_vqgan_micro")
    for a, b in zip(ref.weights, tok.weights):
        b.assign(a.numpy())
    want_codes = ref.encode(images).numpy()
    want = ref.decode(want_codes).numpy()
    x = dist.distribute_values(images)
    for run in (lambda f, *a: dist.run(f, *a), lambda f, *a: dist.run(tf.function(f), *a)):
        codes = dist.gather(run(tok.encode, x)).numpy()
        np.testing.assert_array_equal(codes, want_codes)
        got = dist.gather(run(tok.decode, dist.distribute_values(codes))).numpy()
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_keras_adafactor_factored_moments_pair_with_their_weights():
    """Keras's Adafactor names both factored moments of a weight just like the weight
    ('kernel'); the planner pairs them through the optimizer's own list of weights."""
    import keras
    dist = distribute.get(mesh="batch:2,model:4", layout_rules=[
        ("a[/_]kernel", (None, "model")), ("b[/_]kernel", ("model", None))])
    with dist.scope():
        a = keras.layers.Dense(8, name="a")
        a.build((None, 8))
        b = keras.layers.Dense(8, name="b")
        b.build((None, 8))
        opt = keras.optimizers.Adafactor(name="kada")
        opt.build(a.trainable_variables + b.trainable_variables)
    slots = [(p.path, p.weight, p.spec) for p in dist.planned if p.kind == "slot" and p.spec]
    assert ("kada/kernel", "a/kernel", (None,)) in slots          # row: last dim reduced
    assert ("kada/kernel", "a/kernel", ("model",)) in slots       # column
    assert ("kada/kernel", "b/kernel", ("model",)) in slots
    assert ("kada/kernel", "b/kernel", (None,)) in slots
    assert all(w is not None for _, w, spec in slots if spec)


def test_dtensor_compat_is_scoped_to_its_thread_and_restored():
    """Outside dtensor_compat() (and on other threads while it is active) slicing and Keras's
    slice_update are TensorFlow's and Keras's own."""
    import threading

    from keras.src.backend.tensorflow import core as keras_tf_core
    from tensorflow.python.framework import tensor as tensor_lib
    from tensorflow.python.ops import tensor_getitem_override as getitem_lib
    originals = (tensor_lib.Tensor.__getitem__, getitem_lib._slice_helper,
                 keras_tf_core.slice_update)
    seen = {}

    def other_thread():
        # A traced x[None] keeps its StridedSlice with a new axis here: the original path.
        graph = tf.function(lambda x: x[None]).get_concrete_function(
            tf.TensorSpec([2, 3])).graph
        seen["expand_dims"] = any(op.type == "ExpandDims" for op in graph.get_operations())

    with dtensor_compat():
        assert tensor_lib.Tensor.__getitem__ is not originals[0]
        graph = tf.function(lambda x: x[None]).get_concrete_function(
            tf.TensorSpec([2, 3])).graph
        assert any(op.type == "ExpandDims" for op in graph.get_operations())
        t = threading.Thread(target=other_thread)
        t.start()
        t.join()
    assert seen["expand_dims"] is False
    assert (tensor_lib.Tensor.__getitem__, getitem_lib._slice_helper,
            keras_tf_core.slice_update) == originals


def test_large_weight_without_a_rule_is_an_error_unless_allowed():
    import keras
    big = ("big_kernel_rule_test", (None, "model"))
    dist = distribute.get(mesh="batch:2,model:4", layout_rules=[big])
    with pytest.raises(ZooError, match=r"1 weight\(s\) over 1,000,000 parameters .*: wide/kernel"
                                       r".*allow_replicated"):
        with dist.scope():
            keras.layers.Dense(1100, name="wide").build((None, 1000))
    dist = distribute.get(mesh="batch:2,model:4", layout_rules=[big],
                          allow_replicated=["wide"])
    with dist.scope():
        keras.layers.Dense(1100, name="wide").build((None, 1000))
    # No model axis: data parallel replicates on purpose.
    dist = distribute.get(mesh="batch:8", layout_rules=[big])
    with dist.scope():
        keras.layers.Dense(1100, name="wide").build((None, 1000))


def test_missing_keras_internals_are_an_error_not_replication(monkeypatch):
    import sys
    import keras
    dist = distribute.get(mesh="batch:2,model:4", layout_rules=[("kernel", (None, "model"))])
    monkeypatch.setitem(sys.modules, "keras.src.backend.common.name_scope", None)
    with pytest.raises(ZooError, match="needs Keras 3's name scopes"):
        with dist.scope():
            keras.layers.Dense(8, name="x").build((None, 8))
