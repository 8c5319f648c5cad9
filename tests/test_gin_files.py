"""Every gin file in gin/ (and the in-tree plugins' gin files) parses with every component
registered, names only registered components, and its bindings build the components they
configure (large sizes without allocating their weights)."""

import contextlib
import sys
from pathlib import Path

import gin
import pytest

from zoo import config, plugins
from zoo.errors import ZooError
from zoo.models.params import build, unallocated
from zoo.registry import REGISTRIES, registry

ROOT = Path(__file__).resolve().parents[1]
GIN_FILES = sorted(str(p.relative_to(config.GIN_DIR)) for p in config.GIN_DIR.rglob("*.gin"))
# The plugins' own gin files (not copies a local `pip install` left under build/).
PLUGIN_GIN_FILES = sorted(str(p) for p in (ROOT / "plugins").rglob("*.gin")
                          if "build" not in p.relative_to(ROOT / "plugins").parts)

# Arguments whose value is the name of a registered component of a kind: (configurable or
# None for any, argument) -> kind.
NAMED = {(None, kind): kind for kind in REGISTRIES}
NAMED.update({("train", "task"): "task", ("vit_vqgan", "tokenizer"): "image_tokenizer",
              ("mlm", "tokenizer"): "text_tokenizer", ("contrastive", "tokenizer"):
              "text_tokenizer", ("mlm", "encoder"): "text_encoder",
              ("contrastive", "encoder"): "text_encoder"})
LAYER_KINDS = ("model", "image_tokenizer", "upsampler", "text_encoder", "decoder",
               "discriminator", "feature_network")


@pytest.fixture(scope="module", autouse=True)
def everything_registered():
    plugins.ensure_loaded()
    for name, folder, module in (("example", "plugins/zoo_example", "zoo_example.components"),
                                 ("keras_hub", "plugins/zoo_keras_hub",
                                  "zoo_keras_hub.components")):
        if module.split(".")[0] not in sys.modules:
            sys.path.insert(0, str(ROOT / folder))
            assert plugins.load_plugin(name, module), plugins.FAILED


def test_there_are_gin_files():
    assert GIN_FILES, f"no gin files under {config.GIN_DIR}"
    assert len(PLUGIN_GIN_FILES) >= 3, PLUGIN_GIN_FILES


def _value(value):
    """A binding's value with macros followed; None for %gin.REQUIRED."""
    while isinstance(value, gin.config.ConfigurableReference):
        name = value.configurable.name
        if name == "constant" and value.scoped_selector.startswith("gin.REQUIRED"):
            return None
        if name != "macro":
            return value
        value = gin.query_parameter(f"%{value.scoped_selector.split('/')[0]}")
    return value


def _bindings():
    """[(selector, configurable, argument, value)] in force, macros followed."""
    out = []
    for (_, selector), params in gin.config._CONFIG.items():  # noqa: SLF001
        if selector.startswith("gin."):
            continue
        for arg, value in params.items():
            out.append((selector, selector.split(".")[-1], arg, _value(value)))
    return out


def _attention_names(value):
    specs = [value] if isinstance(value, (str, dict)) else list(value or ())
    return [s["name"] if isinstance(s, dict) else s for s in specs]


def _check(path, base=()):
    config.parse([*base, path], finalize=False)
    built = set()
    for selector, configurable, arg, value in _bindings():
        where = f"{path}: {configurable}.{arg} = {value!r}"
        kind = NAMED.get((configurable, arg)) or NAMED.get((None, arg))
        if kind and isinstance(value, str):
            assert value in registry(kind), f"{where}: no {kind} {value!r} is registered"
        if arg == "decoder_attention" and value is not None:
            for name in _attention_names(value):
                assert name in registry("attention"), f"{where}: unknown kernel {name!r}"
        parts = selector.split(".")
        if len(parts) == 3 and parts[0] == "zoo" and parts[1] in REGISTRIES:
            built.add((parts[1], parts[2]))
    for kind, name in sorted(built):
        entry = registry(kind).entry(name)
        if entry.needs or kind in ("task", "metric", "scorer"):
            continue  # needs files, or runs a whole stage: the tools' tests build those
        scope = unallocated() if kind in LAYER_KINDS else contextlib.nullcontext()
        try:
            with scope:
                component = registry(kind).create(name)
                if kind in LAYER_KINDS:
                    build(component, f"{kind} {name!r}")
        except ZooError as e:
            pytest.fail(f"{path}: the bindings of {kind} {name!r} do not build: {e}")
    return built


@pytest.mark.parametrize("path", GIN_FILES)
def test_gin_file_names_registered_things_and_builds_them(path, gin_clean):
    _check(path)


@pytest.mark.parametrize("path", PLUGIN_GIN_FILES, ids=lambda p: Path(p).name)
def test_plugin_gin_file_on_the_demo_run(path, gin_clean):
    _check(path, base=["runs/parti_tiny_shapes.gin"])


@pytest.mark.parametrize("path", GIN_FILES)
def test_gin_file_opens_with_a_comment(path):
    first = (config.GIN_DIR / path).read_text().lstrip().splitlines()[0]
    assert first.startswith("#"), f"{path} should start with a comment saying what it is"
