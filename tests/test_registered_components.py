"""Every registered component, plugins included, tested by being registered (as timm tests its
model registry): each builds from its defaults (or the tiny overrides it declares with
`register(..., tiny=...)`) and rebuilds from its configuration; one that needs something from
outside (`register(..., needs=...)`) says so in one line when it is missing; every size from a
paper has that paper's parameter count; every Keras name is registered once.

Large sizes are built without allocating their weights (`zoo.models.params.unallocated`), so
parti_20b is built here as it is, in about a second.
"""

import contextlib
import importlib
import json
import pkgutil
import sys
from pathlib import Path

import pytest

import zoo
from zoo import plugins
from zoo.errors import ZooError
from zoo.models.params import build, param_counts, shapes_of, unallocated
from zoo.registry import REGISTRIES, registry

ROOT = Path(__file__).resolve().parents[1]
# The plugins in this repository take part as if installed (their tests install them for real).
IN_TREE_PLUGINS = {"example": ("plugins/zoo_example", "zoo_example.components"),
                   "keras_hub": ("plugins/zoo_keras_hub", "zoo_keras_hub.components")}


def _load_everything():
    plugins.ensure_loaded()
    for name, (folder, module) in IN_TREE_PLUGINS.items():
        if module.split(".")[0] not in sys.modules:
            sys.path.insert(0, str(ROOT / folder))
            plugins.load_plugin(name, module)
    return [(kind, name) for kind in sorted(REGISTRIES) for name in REGISTRIES[kind].list()]


ENTRIES = _load_everything()
# Arguments of a Keras object's config that are not part of what it is.
NOT_COMPARED = ("name", "trainable", "dtype")
# Kinds of Keras layers and models, built without allocating their weights (Keras optimizers
# create variables in their constructor, which a stateless scope forbids).
LAYER_KINDS = ("model", "image_tokenizer", "upsampler", "text_encoder", "decoder",
               "discriminator", "feature_network")


def test_in_tree_plugins_loaded():
    failed = {n: plugins.FAILED[n] for n in IN_TREE_PLUGINS if n in plugins.FAILED}
    assert not failed, failed
    sources = {registry(k).entry(n).source for k, n in ENTRIES}
    assert {"zoo", *IN_TREE_PLUGINS} <= sources, sources


def _config(obj):
    """What rebuilds `obj`: a task's config(), else get_config(); None when it has neither."""
    for method in ("config", "get_config"):
        fn = getattr(obj, method, None)
        if callable(fn):
            try:
                return dict(fn())
            except NotImplementedError:
                return None
    return None


def _rebuild(cls, config):
    if hasattr(cls, "from_config"):
        return cls.from_config(dict(config))
    return cls(**config)


def _comparable(config):
    return json.loads(json.dumps({k: v for k, v in config.items() if k not in NOT_COMPARED},
                                 sort_keys=True, default=repr))


def _relative(shapes):
    """{path below the component's own (auto-numbered) name: shape}."""
    return sorted((p.split("/", 1)[-1], s) for p, s in shapes.items())


@pytest.mark.parametrize("kind,name", ENTRIES, ids=[f"{k}:{n}" for k, n in ENTRIES])
def test_builds_and_rebuilds_from_its_config(kind, name):
    reg = registry(kind)
    entry = reg.entry(name)
    tiny = entry.tiny_overrides()
    scope = unallocated() if kind in LAYER_KINDS else contextlib.nullcontext()
    if entry.needs:
        # Nothing from outside here: building it is a one-line error saying what is missing.
        with pytest.raises(ZooError) as e, scope:
            reg.create(name, **tiny)
        assert str(e.value).strip() and "\n" not in str(e.value), str(e.value)
        return
    with scope:
        try:
            obj = reg.create(name, **tiny)
        except ZooError as e:
            pytest.fail(f"{kind} {name!r} does not build from its defaults ({e}); declare "
                        f"register(..., tiny=...) or register(..., needs=...)")
        if kind in LAYER_KINDS:
            build(obj, f"{kind} {name!r}")
        config = _config(obj)
        if config is None:  # a plain object or function result: building it is the test
            return
        # A class (or a size builder of one) records every argument it takes.
        if entry.params is not None and (isinstance(entry.obj, type) or entry.builds):
            missing = set(entry.params) - set(config) - set(NOT_COMPARED)
            assert not missing, f"{kind} {name!r}: its config lacks {sorted(missing)}"
        again = _rebuild(type(obj), config)
        if kind in LAYER_KINDS:
            build(again, f"{kind} {name!r}")
        assert _comparable(_config(again)) == _comparable(config)
        assert _relative(shapes_of(again)) == _relative(shapes_of(obj))
        # By name, as a task rebuilds it from run.json, when the entry takes every argument.
        args = {k: v for k, v in config.items() if k not in NOT_COMPARED}
        if entry.params is None or set(args) <= set(entry.params):
            by_name = reg.create(name, **args)
            if kind in LAYER_KINDS:
                build(by_name, f"{kind} {name!r}")
            assert type(by_name) is type(obj)
            assert _comparable(_config(by_name)) == _comparable(config)
            assert _relative(shapes_of(by_name)) == _relative(shapes_of(obj))


# -- parameter counts against the papers --------------------------------------------------------

# Figures as the papers give them (docs/architecture.md, "Sizes"), and the tolerance each is
# held to: Parti Table 1 counts the transformer without embeddings and logits; the ViT-VQGAN
# table counts one side (encoder or decoder; the Small-Large tokenizer of Parti pairs a small
# encoder with a large decoder); Parti's WDSR upsamplers are "about" 15M and 30M.
PAPER = {
    ("model", "parti_350m"): {"without_embeddings": 350e6},
    ("model", "parti_750m"): {"without_embeddings": 750e6},
    ("model", "parti_3b"): {"without_embeddings": 3e9},
    ("model", "parti_20b"): {"without_embeddings": 20e9},
    ("image_tokenizer", "vit_vqgan_small"): {"encoder": 32e6, "decoder": 32e6},
    ("image_tokenizer", "vit_vqgan_base"): {"encoder": 91e6, "decoder": 91e6},
    ("image_tokenizer", "vit_vqgan_large"): {"encoder": 599e6, "decoder": 599e6},
    ("image_tokenizer", "vit_vqgan_small_large"): {"encoder": 32e6, "decoder": 599e6},
    ("upsampler", "wdsr_512"): {"total": 15e6},
    ("upsampler", "wdsr_1024"): {"total": 30e6},
}
TOLERANCE = {"model": 0.05, "image_tokenizer": 0.05, "upsampler": 0.10}
# Registered sizes that are not from a paper (CPU demo and test sizes, the generic class).
NOT_FROM_A_PAPER = {("model", "parti_tiny"), ("model", "parti_micro"),
                    ("image_tokenizer", "vit_vqgan_tiny"), ("image_tokenizer", "vit_vqgan_micro"),
                    ("upsampler", "wdsr"), ("upsampler", "wdsr_tiny"),
                    ("upsampler", "wdsr_tiny_4x")}


def test_every_size_of_zoo_has_a_paper_figure_or_says_it_has_none():
    sized = {(k, n) for k, n in ENTRIES if k in ("model", "image_tokenizer", "upsampler")
             and registry(k).entry(n).source == "zoo"}
    assert set(PAPER) <= sized, set(PAPER) - sized
    assert sized - set(PAPER) == NOT_FROM_A_PAPER, sized - set(PAPER)


@pytest.mark.parametrize("kind,name", sorted(PAPER), ids=[f"{k}:{n}" for k, n in sorted(PAPER)])
def test_size_matches_the_paper(kind, name):
    counts = param_counts(kind, name)
    counted = {**counts, **counts["groups"]}
    for part, figure in PAPER[kind, name].items():
        assert abs(counted[part] / figure - 1) < TOLERANCE[kind], (part, counted[part], figure)


# -- Keras names ----------------------------------------------------------------------------------


def _import_every_module():
    """Every module of zoo (not the tools: absl flags are defined once per process) and of the
    in-tree plugins, so that every Keras class is registered."""
    for info in pkgutil.walk_packages(zoo.__path__, "zoo."):
        if not info.name.startswith("zoo.tools"):
            importlib.import_module(info.name)
    for _, module in IN_TREE_PLUGINS.values():
        importlib.import_module(module)


def test_every_registered_keras_name_is_unique():
    from keras.src.saving import object_registration
    _import_every_module()
    owners = {}
    for cls, name in object_registration.GLOBAL_CUSTOM_NAMES.items():
        owners.setdefault(name, []).append(cls)
    ours = {n: c for n, c in owners.items() if n.split(">")[0].startswith("zoo")}
    assert len(ours) > 20, sorted(ours)
    twice = {n: [f"{c.__module__}.{c.__qualname__}" for c in cs] for n, cs in ours.items()
             if len(cs) > 1}
    assert not twice, twice
    for name, (cls,) in ours.items():  # loading a name gives the class that saved it
        assert object_registration.GLOBAL_CUSTOM_OBJECTS[name] is cls, name


def test_layers_saved_under_the_old_shared_name_load_as_what_they_were(tmp_path):
    """Both self-attention layers were `zoo>SelfAttention` once: a Keras model of them saved
    then (zoo's own models save their arguments, not their layers) still loads, each layer as
    what it was, whatever was imported last."""
    import zipfile

    import keras
    import numpy as np

    from zoo.layers import transformer, vit
    x = np.random.default_rng(0).random((2, 9, 16)).astype("float32")
    # The ViT layer's config then said `dim` for its width (zoo.compat), the causal one `width`.
    for layer, new_name, then in (
            (vit.SelfAttention(width=16, heads=2), "zoo>ViTSelfAttention", b'"dim": 16'),
            (transformer.SelfAttention(width=16, heads=2, kernel="row"),
             "zoo>CausalSelfAttention", b'"width": 16')):
        grid = (3, 3)
        call = (lambda t, layer=layer: layer(t)) if new_name.endswith("ViTSelfAttention") \
            else (lambda t, layer=layer: layer(t, grid=grid))
        inputs = keras.Input((9, 16))
        model = keras.Model(inputs, call(inputs))
        path, old = tmp_path / "new.keras", tmp_path / "old.keras"
        model.save(path)
        with zipfile.ZipFile(path) as src, zipfile.ZipFile(old, "w") as dst:
            for item in src.infolist():
                data = src.read(item.filename)
                if item.filename == "config.json":
                    assert new_name.encode() in data
                    data = data.replace(new_name.encode(), b"zoo>SelfAttention")
                    data = data.replace(b'"width": 16', then)
                dst.writestr(item, data)
        loaded = keras.saving.load_model(old)
        assert type(loaded.layers[-1]) is type(layer)
        np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(model(x)), atol=1e-6)
