"""What every tool shares: gin flags, plugin loading, and one-line errors with exit code 1.

A tool is absl flags plus a short `main(argv)` that makes one call into the library:

    from zoo.tools import common
    def define_flags():               # called once, when the tool runs (not on import)
        common.define_gin_flags()
        flags.DEFINE_string("output", None, "...")
    def main(argv):
        common.setup(argv)            # plugins + gin files/bindings, errors as one line
        ...
    def run():
        common.run(main, define_flags)

Flags are defined when the tool runs, not when its module is imported, so that tests and other
tools can import any tool module (several tools take flags of the same name, e.g. --seed).
"""

import logging
import os
import sys
from typing import Callable, Optional

from absl import app, flags

from zoo.errors import ZooError

FLAGS = flags.FLAGS


def define_gin_flags(model_dir_required: bool = False) -> None:
    """--gin_file (repeatable), --gin_bindings (repeatable), --model_dir."""
    if "gin_file" in FLAGS:
        return
    flags.DEFINE_multi_string(
        "gin_file", [],
        "Gin file to parse (repeatable); found relative to the working directory or to the "
        "project's gin/ folder, e.g. --gin_file=runs/demo_tokenizer.gin.")
    flags.DEFINE_multi_string(
        "gin_bindings", [],
        "Gin binding applied after the files (repeatable), e.g. "
        "--gin_bindings=\"conv_shaped.kernel_size = 7\".")
    flags.DEFINE_string("model_dir", None, "Directory for checkpoints, summaries and "
                        "operative_config.gin.")
    if model_dir_required:
        flags.mark_flag_as_required("model_dir")


# The weight precisions of decode steps (zoo.layers.packed.WEIGHT_MODES; not imported here:
# tools define their flags before TensorFlow loads; tests/test_tool_flags.py checks they agree).
WEIGHT_MODES = ("auto", "float32", "bfloat16", "int8")


def define_sampling_flags(decoding: bool = True) -> None:
    """The sampling settings of every tool that samples (zoo-sample, zoo-eval, zoo-export).

    --temperature, --top_k, --top_p, --guidance_scale: None takes the run's recorded setting
    (sampling.json, written by zoo-demo), else the default. decoding: also --xla, --weights and
    --jacobi_window, which change how the decode loop runs, not what it samples from.
    """
    flags.DEFINE_float("temperature", None, "Sampling temperature; 0 = greedy (default: the "
                       "run's recorded setting in sampling.json, else 1.0).")
    flags.DEFINE_integer("top_k", None, "Keep the k most likely codes at each step, 0 = all "
                         "(default: the run's recorded setting, else 0).")
    flags.DEFINE_float("top_p", None, "Nucleus sampling mass, 1 = off (default: the run's "
                       "recorded setting, else 1).")
    flags.DEFINE_float("guidance_scale", None, "Classifier-free guidance scale, 1 = off "
                       "(default: the run's recorded setting, else Parti's 1.2).")
    if not decoding:
        return
    flags.DEFINE_bool("xla", False, "XLA-compile the decode loop: a slower start (compiling); "
                      "see bench/RESULTS.md for when its steps are faster.")
    flags.DEFINE_enum("weights", None, list(WEIGHT_MODES),
                      "Precision decode steps read the weights in: default bfloat16 where "
                      "decoding is KV-cached (measured fastest), auto where it is not (a mesh "
                      "with a model axis); auto: the model's own; int8: weight-only, "
                      "per-column scales. See bench/RESULTS.md.")
    flags.DEFINE_integer("jacobi_window", 0, "0: one token per model call; L >= 2: "
                         "speculative Jacobi decoding with L draft tokens per call (same "
                         "distribution, fewer calls).")


_TF_NOISE = ("WARNING: All log messages before absl::InitializeLog()", "I0000 ", "W0000 ",
             "E0000 ", "To enable the following instructions", "oneDNN custom operations")


def quiet_tensorflow() -> None:
    """Keeps TF's C++ start-up chatter out of the tools' output.

    TF prints info lines from C++ before its logging is initialised, which
    TF_CPP_MIN_LOG_LEVEL does not silence; so TF is imported with file descriptor 2 redirected
    and only the lines that are not start-up noise are written back.
    """
    # 3: also hides the CUDA probe's error line on machines without a GPU (real failures
    # still surface as Python exceptions). Set TF_CPP_MIN_LOG_LEVEL yourself to see more.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "tensorflow" in sys.modules or os.environ.get("ZOO_VERBOSE_TF"):
        return
    import tempfile
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            text = tmp.read().decode("utf-8", "replace")
    kept = [line for line in text.splitlines() if line and not line.startswith(_TF_NOISE)]
    if kept:
        print("\n".join(kept), file=sys.stderr)


def prefer_onednn() -> None:
    """Turns TensorFlow's oneDNN CPU kernels on for this process, unless the environment sets
    TF_ENABLE_ONEDNN_OPTS itself (0 keeps them off). zoo-train and zoo-demo call it first thing.

    TensorFlow turns them on by default only on CPUs with AVX-512 VNNI / BF16 or AMX; elsewhere
    its Eigen kernels run, whose float32 matmuls are up to 2x slower on wide outputs (79 against
    168 GFLOP/s for the logits' [2048, 512] x [512, 8192] product). Measured on a 2-core AMD
    EPYC with AVX2 (parti-pytorch's benchmark configuration, 32x32 grid, batch 2, forward +
    backward, the step of bench/peer_parti_pytorch.py): 3.71 s with Eigen, 2.78 s with oneDNN
    (bench/RESULTS.md, "Training step, AMD EPYC with AVX2"). TensorFlow reads the variable
    once, when it is imported: this does nothing in a process that imported it already.
    """
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")


def setup(argv=None, *, parse_gin: bool = True, finalize: bool = True) -> None:
    """Loads plugins and built-ins, then parses --gin_file/--gin_bindings."""
    if argv is not None and len(argv) > 1 and not getattr(setup, "allow_args", False):
        raise ZooError(f"unexpected arguments: {' '.join(argv[1:])} (flags start with --)")
    from zoo import config, plugins
    for f in FLAGS.gin_file:  # a missing gin file fails at once, before TensorFlow loads
        config.resolve_gin_file(f)
    quiet_tensorflow()
    plugins.ensure_loaded()  # a failing plugin is reported by name through the zoo logger
    if parse_gin:
        config.parse(FLAGS.gin_file, FLAGS.gin_bindings, finalize=finalize)


_TOOL = {"name": None}


def tool_name() -> str:
    if _TOOL["name"]:
        return _TOOL["name"]
    base = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "zoo"
    if base in ("__main__.py", "-c", "") or base.endswith(".py"):
        return "zoo"
    return base


def _plain_logging() -> None:
    """zoo's INFO lines as plain text on stderr; TF's INFO chatter (checkpoint saves) off."""
    from absl import logging as absl_logging
    absl_logging.set_verbosity(absl_logging.WARNING)
    logging.getLogger("tensorflow").setLevel(logging.WARNING)
    zoo_log = logging.getLogger("zoo")
    zoo_log.setLevel(logging.INFO)
    if not any(getattr(h, "_zoo_plain", False) for h in zoo_log.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler._zoo_plain = True  # noqa: SLF001
        zoo_log.addHandler(handler)
    zoo_log.propagate = False


def _print_help(main: Callable) -> None:
    """The tool's docstring and every zoo flag it takes (absl's --help shows only the flags
    of `__main__`, which for a console script or `python -m tools.X` wrapper is none)."""
    module = sys.modules.get(getattr(main, "__module__", ""), None)
    doc = (getattr(module, "__doc__", None) or "").strip()
    print(doc + "\n" if doc else "", end="")
    by_module = FLAGS.flags_by_module_dict()
    order = [m for m in by_module if m.startswith(("zoo", "tools", "__main__"))]
    order.sort(key=lambda m: (m != getattr(module, "__name__", ""), m))
    for name in order:
        print(f"\nflags from {name}:")
        for flag in sorted(by_module[name], key=lambda f: f.name):
            default = "" if flag.default in (None, [], "") else f" (default: {flag.default!r})"
            help_text = " ".join((flag.help or "").split())
            print(f"  --{flag.name}: {help_text}{default}")
    print("\nabsl flags (e.g. --verbosity): --helpfull")


def zoo_error_in(error: BaseException) -> Optional[str]:
    """The message of a ZooError raised inside a TensorFlow function (e.g. by the input
    pipeline's py_function), which TF re-raises as an OpError carrying the Python traceback."""
    text = getattr(error, "message", None) or str(error)
    marker = "ZooError: "
    if marker not in text:
        return None
    message = text.split(marker, 1)[1].split("\n", 1)[0].strip()
    if f"[{marker}" in text and message.endswith("]"):  # an in-graph assertion's [message]
        message = message[:-1]
    return message


_DEFINED = set()


def define_once(define_flags: Optional[Callable]) -> None:
    """Calls a tool's `define_flags()` unless it already ran in this process."""
    if define_flags is not None and define_flags not in _DEFINED:
        define_flags()
        _DEFINED.add(define_flags)


def run(main: Callable, define_flags: Optional[Callable] = None,
        argv: Optional[list] = None) -> None:
    """absl's app.run with the tool's flags defined (`define_flags`, once; default: the
    `define_flags` of `main`'s module), user errors printed as one line and exit code 1."""
    if define_flags is None:
        define_flags = getattr(sys.modules.get(getattr(main, "__module__", "")), "define_flags",
                               None)
    define_once(define_flags)
    args = sys.argv if argv is None else argv
    module = getattr(main, "__module__", "") or ""
    if module.startswith("zoo.tools."):
        _TOOL["name"] = "zoo-" + module.rsplit(".", 1)[1].replace("_", "-")
    if any(a in ("--help", "-h", "--helpshort", "-?") for a in args[1:]):
        _print_help(main)
        sys.exit(0)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TF itself loads in setup()

    def wrapped(args):
        _plain_logging()
        try:
            return main(args)
        except ZooError as e:
            print(f"{tool_name()}: error: {e}", file=sys.stderr)
            sys.exit(1)
        except KeyboardInterrupt:
            print(f"{tool_name()}: interrupted", file=sys.stderr)
            sys.exit(130)
        except Exception as e:  # noqa: BLE001 -- only a ZooError wrapped by TF is one line
            message = zoo_error_in(e) if type(e).__module__.startswith("tensorflow") else None
            if message is None:
                raise
            print(f"{tool_name()}: error: {message}", file=sys.stderr)
            sys.exit(1)

    app.run(wrapped, argv=argv)
