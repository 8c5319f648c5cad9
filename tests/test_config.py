"""Gin: components configurable by registry name, one-line errors naming file/binding."""

import pytest

from zoo import config
from zoo.errors import UnknownNameError, ZooError
from zoo.registry import Registry


class Kernel:
    """A kernel for tests."""

    def __init__(self, kernel_size=11, heads=1):
        self.kernel_size = kernel_size
        self.heads = heads


class Model:
    """A model that takes a component by name."""

    def __init__(self, kernel="cfg_kernel_a", layers=2):
        self.kernel = REG.create(kernel)
        self.layers = layers


REG = Registry("cfg_test")
REG.register("cfg_kernel_a")(Kernel)
REG.register("cfg_kernel_b")(Kernel)
REG.register("cfg_model")(Model)


def test_binding_by_registry_name(gin_clean):
    config.parse(bindings=["cfg_kernel_a.kernel_size = 7"])
    assert REG.create("cfg_kernel_a").kernel_size == 7
    assert REG.create("cfg_kernel_b").kernel_size == 11  # other names untouched
    assert REG.create("cfg_kernel_a", kernel_size=3).kernel_size == 3  # overrides win


def test_module_qualified_binding(gin_clean):
    config.parse(bindings=["cfg_test.cfg_kernel_b.heads = 4"])
    assert REG.create("cfg_kernel_b").heads == 4


def test_swap_component_from_gin_file(gin_clean, tmp_path):
    f = tmp_path / "run.gin"
    f.write_text("cfg_model.kernel = 'cfg_kernel_b'\ncfg_kernel_b.kernel_size = 5\n")
    config.parse([str(f)])
    m = REG.create("cfg_model")
    assert m.kernel.kernel_size == 5 and m.layers == 2


def test_unknown_binding_names_valid_arguments(gin_clean, tmp_path):
    f = tmp_path / "typo.gin"
    f.write_text("cfg_kernel_a.kernel_sise = 3\n")
    with pytest.raises(UnknownNameError) as e:
        config.parse([str(f)])
    msg = str(e.value)
    assert "kernel_sise" in msg and "did you mean 'kernel_size'" in msg and "typo.gin" in msg
    assert "\n" not in msg


def test_unknown_configurable_suggests(gin_clean):
    with pytest.raises(UnknownNameError, match=r"cfg_kernal_a.*did you mean 'cfg_kernel_a'"):
        config.parse(bindings=["cfg_kernal_a.kernel_size = 3"])


def test_syntax_error_names_file_and_line(gin_clean, tmp_path):
    f = tmp_path / "bad.gin"
    f.write_text("cfg_kernel_a.heads = 2\ncfg_kernel_a.kernel_size = = 3\n")
    with pytest.raises(ZooError, match=r"bad.gin, line 2"):
        config.parse([str(f)])


def test_missing_gin_file(gin_clean):
    with pytest.raises(ZooError, match=r"gin file 'no/such.gin' not found"):
        config.parse(["no/such.gin"])


def test_gin_file_found_in_project_gin_dir(gin_clean, tmp_path, monkeypatch):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "k.gin").write_text("cfg_kernel_a.heads = 8\n")
    monkeypatch.setenv(config.GIN_PATH_ENV, str(tmp_path))
    monkeypatch.chdir("/")
    assert config.resolve_gin_file("mine/k.gin") == str(tmp_path / "mine" / "k.gin")
    config.parse(["mine/k"])  # the .gin suffix may be left out
    assert REG.create("cfg_kernel_a").heads == 8


def test_operative_config_written(gin_clean, tmp_path):
    config.parse(bindings=["cfg_kernel_a.kernel_size = 9"])
    REG.create("cfg_kernel_a")
    path = config.write_operative_config(str(tmp_path / "run"))
    assert "cfg_kernel_a.kernel_size = 9" in open(path).read()


def test_includes_resolve_when_the_working_directory_on_sys_path_has_a_runs_folder(
        gin_clean, tmp_path, monkeypatch):
    # `python -m zoo.tools.train` puts the working directory on sys.path; a `runs/` folder
    # there (where people keep model directories) is then an importable namespace package,
    # which gin's package reader tried, and crashed on, for `include 'runs/...'`.
    (tmp_path / "runs").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    config.parse(["runs/demo_parti.gin"], ["SPM_MODEL = 'x'", "TOKENIZER_DIR = 'y'"],
                 finalize=False)
    import gin
    assert gin.query_parameter("TRAIN_STEPS/macro.value") > 0


def test_a_renamed_argument_in_gin_names_its_new_name(gin_clean):
    import zoo  # noqa: F401  (registers the built-in components)
    with pytest.raises(UnknownNameError, match=r"renamed 'width': write vit_vqgan_micro.width"):
        config.parse([], ["vit_vqgan_micro.dim = 16"], finalize=False)
