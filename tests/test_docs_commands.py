"""Every zoo command in README.md ("Training each stage", "Scaling out") and docs/scaling.md,
extracted from the files (not copied here), runs: with tiny stand-ins swapped in (2 steps, a
small batch, parti_micro, the shapes data instead of COCO, the tokenizer and SentencePiece
model the README's own commands made, virtual CPU devices) in a temporary working directory.

A command marked `# [... checked by zoo-layouts]` needs hardware one CPU cannot stand in for;
its gin files are parsed with its bindings, its batch must divide its mesh's batch axis, and
`zoo-layouts` plans its model on its mesh (no weight over 1M parameters left replicated). These
and the zoo-layouts commands are run by tests/test_docs_layouts.py (they need no `workdir`).
"""

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from helpers_tools import ROOT, tool_env

pytestmark = pytest.mark.slow

SECTIONS = [("README.md", "## Training each stage"), ("README.md", "## Scaling out"),
            ("docs/scaling.md", None)]
MARKER = re.compile(r"#\s*\[([^\]]*checked by zoo-layouts)\]")
TOOLS = {"zoo-train": "train", "zoo-train-spm": "train_spm", "zoo-encode": "encode",
         "zoo-sample": "sample", "zoo-layouts": "layouts"}
# What the README's "Training each stage" commands make, used by every later command.
TOKENIZER, SPM = "runs/tokenizer", "runs/spm/spm.model"


def _section(text, heading):
    if heading is None:
        return text
    start = text.index(heading)
    end = text.find("\n#", start + len(heading))  # up to the next heading of any level
    return text[start:end if end >= 0 else len(text)]


def extract(path, heading=None):
    """[(tool, args, marker or None, source line)] of the zoo commands in code blocks."""
    text = _section((ROOT / path).read_text(encoding="utf-8"), heading)
    commands, fenced, pending = [], False, ""
    for line in text.splitlines():
        if line.strip().startswith("```"):
            fenced = not fenced
            continue
        if not (fenced or line.startswith("    ")):
            pending = ""
            continue
        code = line.strip()
        if code.startswith("$ "):
            code = code[2:]
        if pending:
            code = pending + " " + code
        if code.endswith("\\"):
            pending = code[:-1].rstrip()
            continue
        pending = ""
        if not code.startswith("zoo-"):
            continue
        marker = MARKER.search(code)
        words = shlex.split(code, comments=True)
        if words[0] not in TOOLS:
            continue
        commands.append((words[0], words[1:], marker.group(1) if marker else None, code))
    return commands


ALL = [(f"{path}{'#' + heading[3:] if heading else ''}", c)
       for path, heading in SECTIONS for c in extract(path, heading)]
# The README's "Training each stage" commands run in order in the `workdir` fixture.
LATER = [(w, c) for w, c in ALL if not w.startswith("README.md#Training")]
IDS = [f"{w.split('#')[0]}:{i}" for i, (w, _) in enumerate(LATER)]
# zoo-layouts commands and the commands checked by zoo-layouts use nothing the README's
# training made: tests/test_docs_layouts.py runs them (a file of its own, so that the two
# pytest-xdist workers share this module's minutes).
PLANNED = [(i, w, c) for (w, c), i in zip(LATER, IDS) if c[2] or c[0] == "zoo-layouts"]
TRAINED = [(i, w, c) for (w, c), i in zip(LATER, IDS) if not (c[2] or c[0] == "zoo-layouts")]


def _flag(args, name):
    """The value of --name=value in args (the last one), else None."""
    value = None
    for a in args:
        if a.startswith(f"--{name}="):
            value = a.split("=", 1)[1]
    return value


def _replace(args, name, value):
    return [a for a in args if not a.startswith(f"--{name}=")] + [f"--{name}={value}"]


def _gin_files(args):
    return [a.split("=", 1)[1] for a in args if a.startswith("--gin_file=")]


def stand_in(tool, args):
    """The command with tiny stand-ins for what one CPU cannot do in seconds."""
    args = list(args)
    files = _gin_files(args)
    if tool == "zoo-train-spm":
        args += ["--max_sentences=2000"]
    elif tool == "zoo-encode":
        args += ["--num_examples=16"]
    elif tool == "zoo-train":
        args = _replace(args, "steps", 2)
        args = _replace(args, "batch_size", 8)
        args += ["--noprogress", f"--gin_bindings=TOKENIZER_DIR = '{TOKENIZER}'",
                 f"--gin_bindings=SPM_MODEL = '{SPM}'"]
        if any(Path(f).name.startswith("parti_") for f in files):
            args += ["--gin_bindings=parti.model = 'parti_micro'",
                     "--gin_bindings=parti_micro.heads = 4",
                     "--gin_bindings=parti.max_text_length = 16"]
        if any("coco" in f or "tpu" in f for f in files):
            args += ["--gin_bindings=COCO_DATA_DIR = 'unused'",
                     "--gin_bindings=parti.dataset = 'synthetic_shapes'"]
        if _flag(args, "strategy") == "mirrored" and not _flag(args, "virtual_devices"):
            args += ["--virtual_devices=2"]
    elif tool == "zoo-sample":
        args += ["--num_samples=1", "--output_dir=samples"]
    mesh = _flag(args, "mesh")
    if tool in ("zoo-train", "zoo-sample") and mesh and not _flag(args, "virtual_devices"):
        size = 1
        for part in mesh.split(","):
            size *= int(part.split(":")[1])
        args += [f"--virtual_devices={size}"]
    return args


def run(tool, args, cwd):
    """The installed console script (as a user types it; `python -m` would put the working
    directory, whose runs/ folder gin then takes for a Python package, on sys.path)."""
    script = Path(sys.executable).parent / tool
    command = [str(script)] if script.exists() else [sys.executable, "-m",
                                                      f"zoo.tools.{TOOLS[tool]}"]
    return subprocess.run([*command, *args], cwd=str(cwd),
                          env=tool_env(ZOO_DISABLE_PLUGIN_AUTOLOAD=1), capture_output=True,
                          text=True, timeout=900)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """The README's "Training each stage" commands, run in order (later commands use their
    tokenizer, SentencePiece model and Parti run)."""
    cwd = tmp_path_factory.mktemp("docs")
    for tool, args, marker, line in extract("README.md", "## Training each stage"):
        assert marker is None, line
        proc = run(tool, stand_in(tool, args), cwd)
        assert proc.returncode == 0, f"{line}\n{proc.stderr[-3000:]}"
    assert (cwd / SPM).is_file() and (cwd / TOKENIZER / "run.json").is_file()
    return cwd


def test_the_docs_hold_the_commands():
    tools = [c[0] for _, c in ALL]
    assert len(ALL) >= 15 and {"zoo-train", "zoo-layouts", "zoo-sample"} <= set(tools), ALL
    assert sum(1 for _, c in ALL if c[2]) >= 3  # the TPU / several-machine commands


def test_training_each_stage_commands_run(workdir):
    for run_dir in ("tokenizer", "parti", "contrastive", "mlm", "superres"):
        assert (workdir / "runs" / run_dir / "checkpoints" / "ckpt-2").is_dir(), run_dir
    assert (workdir / "runs" / "codes").is_dir()


def effective(tool, args):
    """What a command does once its stand-ins are in: the last value of each flag and of each
    gin binding (later ones override), with the gin files in order."""
    flags, bindings = {}, {}
    for a in args:
        name, _, value = a.partition("=")
        if name == "--gin_bindings":
            bindings[value.split("=", 1)[0].strip()] = value
        elif name != "--gin_file":
            flags[name] = value
    return (tool, tuple(_gin_files(args)), tuple(sorted(flags.items())),
            tuple(sorted(bindings.items())))


_DONE = {}  # effective command -> (returncode, stdout, stderr) of its first run


@pytest.mark.parametrize("where,command", [(w, c) for _, w, c in TRAINED],
                         ids=[i for i, _, _ in TRAINED])
def test_command_runs(workdir, where, command):
    tool, args, marker, line = command
    assert not marker and tool != "zoo-layouts", line  # tests/test_docs_layouts.py runs these
    args = stand_in(tool, args)
    if tool == "zoo-sample":
        model_dir = _flag(args, "model_dir")
        if not (workdir / model_dir / "run.json").is_file():  # e.g. zoo-demo's runs/demo/parti
            args = _replace(args, "model_dir", "runs/parti")
    # README.md and docs/scaling.md share some commands: one that does what an earlier one
    # did (once the stand-ins are in) is checked on that run's output.
    key = effective(tool, args)
    if key not in _DONE:
        proc = run(tool, args, workdir)
        _DONE[key] = (proc.returncode, proc.stdout, proc.stderr)
    returncode, stdout, stderr = _DONE[key]
    assert returncode == 0, f"{line}\n{' '.join(args)}\n{stderr[-3000:]}"
    if tool == "zoo-train":
        assert "zoo-train:" in stdout and "steps" in stdout, stdout


def check_by_layouts(args, line):
    """A command for a TPU or several machines: its gin files, batch and mesh hold together,
    and the planner of zoo-layouts plans it (in this process, with the command's gin files and
    bindings: the zoo-layouts command itself is run by the docs' own zoo-layouts commands)."""
    import gin

    from zoo import config
    from zoo.distribute import layouts
    from zoo.distribute.rules import gin_mesh_layout, parse_mesh
    files = _gin_files(args)
    bindings = [a.split("=", 1)[1] for a in args if a.startswith("--gin_bindings=")]
    gin.clear_config()
    try:
        import zoo.data  # noqa: F401  (registers the configurables the run files bind)
        import zoo.distribute  # noqa: F401
        import zoo.train  # noqa: F401
        config.parse(files, bindings, finalize=False)
        batch = _flag(args, "batch_size") or _resolve(gin, "train.batch_size")
        gin_mesh, rules, allow = gin_mesh_layout()
        mesh = _flag(args, "mesh") or gin_mesh
        model = _resolve(gin, "parti.model")
        assert model, line
        if mesh:
            axes = dict(parse_mesh(mesh))
            assert int(batch) % axes.get("batch", 1) == 0, f"batch {batch} on {mesh}: {line}"
        # As `zoo-layouts --model=<model> --mesh=<mesh or batch:8> --optimizer=none` with the
        # command's gin files and bindings.
        report = layouts.plan_model(model, mesh or "batch:8", rules, optimizer=None,
                                    allow_replicated=allow)
        text = layouts.format_report(report)
    finally:
        gin.clear_config()
    assert "WARNING" not in text, text[-2000:]


def _resolve(gin, name):
    """A gin parameter's value, following macros (`%BATCH_SIZE`)."""
    value = gin.query_parameter(name)
    while isinstance(value, gin.config.ConfigurableReference):
        value = gin.query_parameter(f"{value.scoped_selector.rsplit('/', 1)[0]}/macro.value")
    return value
