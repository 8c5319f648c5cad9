"""Registry behaviours: register, duplicate, unknown with suggestion, listing, create."""

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


def test_kinds_and_top_level_api():
    for kind in ("image_tokenizer", "text_tokenizer", "text_encoder", "decoder", "attention",
                 "upsampler", "model", "dataset", "metric", "task"):
        assert kind in REGISTRIES
    with pytest.raises(UnknownNameError, match="did you mean 'attention'"):
        registry("atention")
    pairs = zoo.list()
    assert all(isinstance(k, str) and isinstance(n, str) for k, n in pairs)
    assert set(zoo.list("attention")) >= set()  # built-ins loaded without error
    with pytest.raises(UnknownNameError, match="unknown attention"):
        zoo.create("attention", "no_such_kernel")


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
