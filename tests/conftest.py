"""Test session setup: quiet TF, 8 virtual CPU devices (default device stays /CPU:0)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

NUM_VIRTUAL_DEVICES = 8


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: an end-to-end run over ~20 s; left out by "
                            "default (pytest.ini), run with -m slow (CI runs both)")
    import tensorflow as tf
    from tensorflow.python.util import _pywrap_util_port
    # zoo-train asks for oneDNN kernels (common.prefer_onednn) unless this is set: tool
    # subprocesses and in-process tool runs then use this process's kernels, so that runs
    # compared with each other (kill-and-resume against an uninterrupted run) use the same.
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS",
                          "1" if _pywrap_util_port.IsMklEnabled() else "0")
    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration()] * NUM_VIRTUAL_DEVICES)
    except RuntimeError:  # already initialised (e.g. re-entrant pytest in a subprocess)
        pass


@pytest.fixture
def gin_clean():
    """Clears gin's bindings before and after a test."""
    import gin
    gin.clear_config()
    yield
    gin.clear_config()


@pytest.fixture(autouse=True)
def _restore_zoo_logger():
    """A tool run in-process (common.run) gives the `zoo` logger its own plain handler and
    stops it propagating, which would hide its records from later tests' caplog: put the
    logger back as it was after every test."""
    import logging
    log = logging.getLogger("zoo")
    saved = (log.level, log.propagate, list(log.handlers))
    yield
    log.setLevel(saved[0])
    log.propagate = saved[1]
    log.handlers[:] = saved[2]
