"""Native (C++) TensorFlow ops, compiled on first use: the attention kernels' fused forward
pass (`conv_shaped_attention.cc`), decode-step attention over the KV cache
(`cached_attention.cc`, `zoo.attention.base`) and the sampler's compact-weight matmul
(`small_matmul.cc`, `zoo.layers.packed`).

`load("conv_shaped_attention")` returns the op library built from `conv_shaped_attention.cc`
next to this file (a module with `zoo_conv_shaped_attention`), or None when native ops are
unavailable; callers then use their pure-TensorFlow kernels. Nothing is compiled when zoo is
imported, only at the first `load`.

Builds: g++ with TensorFlow's compile and link flags (`tf.sysconfig`), -O3 -march=native
(then, if that fails, without -march). The shared library is cached in
`$ZOO_CACHE_DIR/ops/<key>/` (default `~/.cache/zoo/ops/<key>/`, or under `$XDG_CACHE_HOME`),
the key hashing the source, the TensorFlow version, the flags, the compiler and the CPU's
instruction-set flags (a cache shared between machines never hands one a library built for
another CPU). A build writes a temporary file and renames it into place, so concurrent
processes (pytest-xdist, two tools) never load a half-written library; a build takes ~10 s
once per machine, source and TF version.

Set `ZOO_NATIVE_OPS=0` to disable native ops. When g++ is missing or a build or load fails,
`load` logs one warning saying why (per library and process) and returns None.
"""

import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import threading

log = logging.getLogger("zoo")

COMPILER = "g++"
# Tried in order: the first flag set the compiler accepts builds the library.
ARCH_FLAGS = (["-march=native"], [])
# -fassociative-math and the flags it needs let the compiler reorder float sums (tree
# reductions of dot products over the head dimension); the op relies on nothing else.
OPT_FLAGS = ["-O3", "-fopenmp-simd", "-fno-math-errno", "-fassociative-math", "-fno-signed-zeros",
             "-fno-trapping-math", "-shared", "-fPIC", "-Wno-deprecated-declarations"]

_SOURCE_DIR = os.path.dirname(os.path.abspath(__file__))
_LOCK = threading.Lock()
_LIBRARIES = {}  # name -> loaded module, or None after a failure


def enabled() -> bool:
    """False when the environment disables native ops (ZOO_NATIVE_OPS=0)."""
    return os.environ.get("ZOO_NATIVE_OPS", "1").strip().lower() not in ("0", "false", "no",
                                                                         "off")


def load(name: str):
    """The op library compiled from `<name>.cc` (cached per process), or None."""
    if not enabled():
        return None
    with _LOCK:
        if name not in _LIBRARIES:
            try:
                _LIBRARIES[name] = _build_and_load(name)
            except _BuildError as e:
                log.warning("native op library %s is unavailable (%s); using the pure-TF "
                            "kernel instead", name, e)
                _LIBRARIES[name] = None
        return _LIBRARIES[name]


def usable_on(*tensors) -> bool:
    """Whether native ops can run on `tensors` here: not while tracing an XLA-compiled
    function (they have no XLA kernels), nor for a SavedModel (it must load without zoo's op
    libraries), nor on DTensors (no layout propagation rules)."""
    from tensorflow.python.saved_model import save_context
    if in_xla_context() or save_context.in_save_context():
        return False
    return not on_dtensor(*tensors)


def in_xla_context() -> bool:
    """Whether the ops made now are traced into an XLA-compiled function."""
    from tensorflow.python.framework import ops
    from tensorflow.python.ops import control_flow_util
    return control_flow_util.GraphOrParentsInXlaContext(ops.get_default_graph())


def on_dtensor(*tensors) -> bool:
    """Whether the ops made now run on DTensor: in a mesh scope, or on eager DTensors."""
    import tensorflow as tf
    from tensorflow.dtensor.python import api as dtensor_api
    if dtensor_api.get_default_mesh() is not None:  # in a mesh scope (tensors traced for it)
        return True
    # Eager DTensors outside a mesh scope; the DTensor device exists once one was made.
    device_made = dtensor_api._dtensor_singleton is not None  # noqa: SLF001
    return (tf.executing_eagerly() and device_made
            and any(dtensor_api.is_dtensor(t) for t in tensors))


def gradient_tape_recording() -> bool:
    """Whether a GradientTape may record the ops made now (eagerly or while tracing)."""
    from tensorflow.python.eager import record
    return record.could_possibly_record()


class _BuildError(Exception):
    pass


def cache_dir() -> str:
    """Where compiled op libraries are kept: $ZOO_CACHE_DIR/ops or ~/.cache/zoo/ops."""
    root = os.environ.get("ZOO_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
        "zoo")
    return os.path.join(root, "ops")


def _cpu_flags() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return next((line for line in f if line.startswith(("flags", "Features"))), "")
    except OSError:
        return platform.processor()


def _build_and_load(name):
    import tensorflow as tf
    compiler = shutil.which(COMPILER)
    if compiler is None:
        raise _BuildError(f"compiler {COMPILER!r} not found on PATH")
    source = os.path.join(_SOURCE_DIR, name + ".cc")
    try:
        with open(source, "rb") as f:
            code = f.read()
    except OSError as e:
        raise _BuildError(f"cannot read {source}: {e}") from None
    link_flags = tf.sysconfig.get_link_flags()
    error = None
    for arch in ARCH_FLAGS:
        flags = OPT_FLAGS + arch + tf.sysconfig.get_compile_flags()
        key = hashlib.sha256(repr((code, tf.__version__, compiler, flags, link_flags,
                                   _cpu_flags())).encode()).hexdigest()[:16]
        target = os.path.join(cache_dir(), key, name + ".so")
        if not os.path.exists(target):
            try:
                _compile(compiler, source, target, flags, link_flags)
            except _BuildError as e:
                error = e
                continue
        try:
            return tf.load_op_library(target)
        except Exception as e:  # noqa: BLE001  (any load failure means: use the TF kernel)
            raise _BuildError(f"loading {target} failed: {e}") from None
    raise error


def _compile(compiler, source, target, flags, link_flags):
    """Compiles `source` into `target` via a temporary file renamed into place."""
    directory = os.path.dirname(target)
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".build-", suffix=".so")
        os.close(fd)
    except OSError as e:
        raise _BuildError(f"cannot write to the cache directory {directory}: {e}") from None
    cmd = [compiler, *flags, source, "-o", tmp, *link_flags]
    try:
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        except OSError as e:
            raise _BuildError(f"running {compiler} failed: {e}") from None
        if done.returncode != 0:
            errors = [line for line in done.stderr.splitlines() if "error" in line]
            detail = "\n".join(errors[:5] or done.stderr.splitlines()[-5:])
            raise _BuildError(f"{compiler} {os.path.basename(source)} exited with "
                              f"{done.returncode}:\n{detail}")
        os.chmod(tmp, 0o755)  # mkstemp's 0600 would keep a shared cache from other users
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
