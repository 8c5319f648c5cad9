"""Registry behaviours: register, duplicate, unknown with suggestion, listing, create."""

import json
import os
import subprocess
import sys

import keras
import pytest

import zoo
from zoo.errors import UnknownNameError, ZooError
from zoo.registry import REGISTRIES, Registry, registry


class Widget:
    """A widget for tests."""

    def __init__(self, size=3, colour="red"):
        self.size = size
        self.colour = colour


@keras.saving.register_keras_serializable(package="zoo_test")
class WidgetLayer(keras.layers.Layer):
    """A widget layer for tests."""

    def __init__(self, units=4, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def get_config(self):
        return {**super().get_config(), "units": self.units}


@pytest.fixture
def reg():
    r = Registry("test_widget")
    yield r
    for name in r.list():
        r.unregister(name)


def test_register_get_create(reg):
    reg.register("widget_small")(Widget)
    assert reg.get("widget_small") is Widget
    w = reg.create("widget_small", size=5)
    assert isinstance(w, Widget) and w.size == 5 and w.colour == "red"
    assert "widget_small" in reg and len(reg) == 1
    assert reg.entry("widget_small").summary == "A widget for tests."


def test_duplicate_name_raises(reg):
    reg.register("widget_small")(Widget)
    with pytest.raises(ZooError, match="already registered"):
        reg.register("widget_small")(Widget)


def test_unknown_name_suggests_and_lists(reg):
    reg.register("conv_shaped")(Widget)
    reg.register("column")(Widget)
    with pytest.raises(UnknownNameError) as e:
        reg.get("conv_shapd")
    msg = str(e.value)
    assert "unknown test_widget 'conv_shapd'" in msg
    assert "did you mean 'conv_shaped'" in msg
    assert "column" in msg and "conv_shaped" in msg


def test_unknown_argument_names_valid_ones(reg):
    reg.register("widget_small")(Widget)
    with pytest.raises(UnknownNameError, match=r"unknown argument 'sise'.*did you mean 'size'"):
        reg.create("widget_small", sise=3)


def test_size_builder_takes_class_arguments(reg):
    @reg.register("widget_large", builds=Widget)
    def widget_large(**overrides):
        return Widget(**{"size": 10, **overrides})

    assert reg.create("widget_large").size == 10
    assert reg.create("widget_large", colour="blue").colour == "blue"
    assert reg.entry("widget_large").params == ["size", "colour"]
    with pytest.raises(UnknownNameError, match="colour"):
        reg.create("widget_large", color="blue")


def test_keras_layer_accepts_layer_kwargs_and_serializes(reg):
    reg.register("widget_layer")(WidgetLayer)
    layer = reg.create("widget_layer", units=7, name="w1")
    assert type(layer) is WidgetLayer and layer.name == "w1"
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(again) is WidgetLayer and again.units == 7
    with pytest.raises(UnknownNameError, match="units"):
        reg.create("widget_layer", unit=7)


def test_list_pattern(reg):
    for n in ("vit_vqgan_small", "vit_vqgan_base", "parti_350m"):
        reg.register(n)(Widget)
    assert reg.list() == ["parti_350m", "vit_vqgan_base", "vit_vqgan_small"]
    assert reg.list("vit_*") == ["vit_vqgan_base", "vit_vqgan_small"]
    assert reg.list("nothing*") == []


def test_bad_names_rejected(reg):
    for bad in ("", " x", None):
        with pytest.raises(ZooError):
            reg.register(bad)(Widget)
    with pytest.raises(ZooError, match="must be a string"):
        reg.get(3)


# Built-ins of every kind that `import zoo` alone must make available (a sample per kind).
BUILT_INS = {
    "attention": {"column", "conv_shaped", "dense", "row"}, "dataset": {"synthetic_shapes"},
    "decoder": {"parti_decoder"}, "discriminator": {"stylegan"},
    "feature_network": {"tiny_conv", "vgg16", "inception_v3"},
    "image_tokenizer": {"vit_vqgan_small", "vit_vqgan_micro"},
    "metric": {"fid", "clip_score", "shapes_acceptance"}, "model": {"parti_350m", "parti_tiny"},
    "optimizer": {"adafactor"}, "schedule": {"warmup_exponential_decay"},
    "scorer": {"contrastive_scorer"},
    "task": {"contrastive", "mlm", "parti", "superres", "vit_vqgan"},
    "text_encoder": {"parti_encoder", "pretrained"}, "text_tokenizer": {"sentencepiece"},
    "upsampler": {"wdsr_512", "wdsr_tiny"},
}


def test_kinds_and_top_level_api():
    assert set(REGISTRIES) == set(BUILT_INS)
    with pytest.raises(UnknownNameError, match="did you mean 'attention'"):
        registry("atention")
    with pytest.raises(UnknownNameError, match="unknown attention"):
        zoo.create("attention", "no_such_kernel")


def test_import_zoo_alone_lists_every_kinds_built_ins():
    """In a fresh process (nothing imported before): zoo.list() loads every built-in."""
    code = ("import json, zoo\n"
            "print('PAIRS', json.dumps(zoo.list()))\n"
            "print('ATTENTION', json.dumps(zoo.list('attention')))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=300, env={**os.environ, "ZOO_DISABLE_PLUGIN_AUTOLOAD": "1",
                                         "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert r.returncode == 0, r.stderr[-2000:]
    lines = dict(line.split(" ", 1) for line in r.stdout.splitlines() if " " in line)
    listed = {}
    for kind, name in json.loads(lines["PAIRS"]):
        listed.setdefault(kind, set()).add(name)
    for kind, names in BUILT_INS.items():
        assert names <= listed.get(kind, set()), (kind, names - listed.get(kind, set()))
    assert json.loads(lines["ATTENTION"]) == sorted(listed["attention"])


def test_errors_raised_inside_a_component_stay_one_line(reg):
    class Picky:
        """Rejects everything."""

        def __init__(self, size=1):
            raise ZooError(f"picky.size must be 0, got {size}")

    reg.register("picky")(Picky)
    with pytest.raises(ZooError) as e:
        reg.create("picky", size=3)
    assert str(e.value) == "picky.size must be 0, got 3"
    assert type(e.value) is ZooError


def test_resolve_is_gin_bindings_then_overrides_as_plain_json(reg, gin_clean):
    import gin
    reg.register("widget_small")(Widget)
    assert reg.resolve("widget_small") == {}
    gin.parse_config("widget_small.size = (1, 2)\nwidget_small.colour = 'blue'")
    assert reg.resolve("widget_small", {"colour": "green"}) == {"size": [1, 2],
                                                               "colour": "green"}
    assert reg.create("widget_small", **reg.resolve("widget_small")).size == [1, 2]
    with pytest.raises(ZooError, match=r"'widget_small' argument 'colour' = <object.*not a "
                                       r"plain value"):
        reg.resolve("widget_small", {"colour": object()})
    with pytest.raises(UnknownNameError, match="did you mean 'widget_small'"):
        reg.resolve("widget_smal")


def test_a_missing_required_argument_is_one_line_naming_it(reg):
    class NeedsPath:
        """Needs a path."""

        def __init__(self, path, size=1):
            self.path = path

    reg.register("needs_path")(NeedsPath)
    with pytest.raises(ZooError) as e:
        reg.create("needs_path", size=2)
    assert str(e.value) == ("test_widget 'needs_path' needs argument path: bind "
                            "needs_path.path = ... in a gin file (or pass path=...)")


def test_a_subclass_passing_kwargs_on_takes_its_parents_arguments(reg):
    class Big(Widget):
        """A widget with a shine."""

        def __init__(self, shine=0.5, **kwargs):
            super().__init__(**kwargs)
            self.shine = shine

    reg.register("widget_big")(Big)
    assert reg.entry("widget_big").params == ["shine", "size", "colour"]
    assert reg.create("widget_big", size=9, shine=1.0).size == 9
    with pytest.raises(UnknownNameError, match="did you mean 'colour'"):
        reg.create("widget_big", color="red")


def test_tiny_and_needs_are_recorded(reg):
    reg.register("widget_tiny", tiny=lambda: {"size": 1})(Widget)
    reg.register("widget_file", needs="a widget file")(Widget)
    assert reg.entry("widget_tiny").tiny_overrides() == {"size": 1}
    assert reg.entry("widget_file").needs == "a widget file"
    assert reg.entry("widget_file").tiny_overrides() == {}
