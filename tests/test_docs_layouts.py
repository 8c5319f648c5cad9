"""The zoo-layouts commands of README.md ("Scaling out") and docs/scaling.md, and the commands
marked `# [... checked by zoo-layouts]` (a TPU or several machines), extracted from the files by
tests/test_docs_commands.py, which runs the other commands. None of these needs what the
README's training commands make, so they run in a file of their own (the other pytest-xdist
worker can take them)."""

import pytest

from test_docs_commands import PLANNED, check_by_layouts, run

pytestmark = pytest.mark.slow


def test_the_docs_hold_layouts_commands():
    assert sum(1 for _, _, c in PLANNED if c[2]) >= 3  # the TPU / several-machine commands
    assert sum(1 for _, _, c in PLANNED if c[0] == "zoo-layouts") >= 2


@pytest.mark.parametrize("where,command", [(w, c) for _, w, c in PLANNED],
                         ids=[i for i, _, _ in PLANNED])
def test_layouts_command_runs(tmp_path, where, command):
    tool, args, marker, line = command
    if marker:
        return check_by_layouts(args, line)
    proc = run(tool, args, tmp_path)
    assert proc.returncode == 0, f"{line}\n{' '.join(args)}\n{proc.stderr[-3000:]}"
    if ",model:" in (proc.stdout.splitlines() or [""])[0]:
        assert "is sharded on 'model'" in proc.stdout, proc.stdout[-2000:]
