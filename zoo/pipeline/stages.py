"""The stage runner behind zoo-demo: named stages into one model directory, one line each.

    pipeline = Pipeline("zoo-demo", "runs/demo", [Stage("spm", "text tokenizer", run_spm,
                                                        command="zoo-train-spm ...")])
    pipeline.run()

Each stage prints `[i/n] title ...`, the standalone command that does the same thing (a person
can rerun, change or scale any stage alone), then `[i/n] title: <result> (time)`. Every stage
resumes: a training stage continues from its last checkpoint, a finished one is skipped.
`pipeline.json` in the model directory records which data made it, and a second run refuses a
directory made from other data (naming both) before touching anything.
"""

import dataclasses
import datetime
import json
import os
import shlex
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence, Union

from zoo.errors import ZooError, suggest

RECORD_FILE = "pipeline.json"


@dataclasses.dataclass
class Stage:
    name: str
    title: str
    run: Callable[[], str]  # does the work; returns a one-line result
    # The standalone command doing the same, printed before the stage runs (a callable is
    # called then, when values from earlier stages are known).
    command: Union[str, Callable[[], str], None] = None


def fmt_time(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"


def quote(arg: str) -> str:
    """A shell word: bare when safe, else double quotes (bindings hold single quotes)."""
    if arg and all(c.isalnum() or c in "-_=./:,%+@" for c in arg):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$") + '"'


def command_line(tool: str, args: Sequence[str]) -> str:
    """`tool --a=b --gin_bindings="X = 'y'"`, each flag's value quoted as a shell needs."""
    words = [tool]
    for arg in args:
        if arg.startswith("--") and "=" in arg:
            name, value = arg.split("=", 1)
            words.append(f"{name}={quote(value)}")
        else:
            words.append(shlex.quote(arg))
    return " ".join(words)


def train_command(gin_files: Sequence[str], model_dir: str, bindings: Sequence[str]) -> str:
    args = [f"--gin_file={f}" for f in gin_files] + [f"--model_dir={model_dir}"]
    args += [f"--gin_bindings={b}" for b in bindings]
    return command_line("zoo-train", args)


def train_stage(gin_files: Sequence[str], model_dir: str, bindings: Sequence[str]) -> str:
    """One `zoo-train` run in this process (what `train_command` prints); the result line."""
    from zoo import config
    from zoo.train import loop
    config.parse(list(gin_files), list(bindings))
    result = loop.train(model_dir=model_dir)
    losses = ", ".join(f"{k} {v:.4g}" for k, v in result.losses.items())
    return f"step {result.step}" + (f", loss {losses}" if losses else "") + f" -> {model_dir}"


def eval_stage(title: str, root: str, prompts: str, describe: Callable[[Dict], str], *,
               num_prompts: int, num_samples: int, reference: Optional[str] = None,
               temperature: Optional[float] = None,
               guidance_scale: Optional[float] = None) -> Stage:
    """The `eval` stage: zoo-eval of root/parti with root/contrastive as the reranker, into
    root/eval; `describe(results)` makes its result line."""
    options = {"prompts": prompts, "num_prompts": num_prompts, "num_samples": num_samples,
               "reference_dir": reference, "temperature": temperature,
               "guidance_scale": guidance_scale}
    args = [f"--model_dir={os.path.join(root, 'parti')}"]
    args += [f"--{k}={v:g}" if isinstance(v, float) else f"--{k}={v}"
             for k, v in options.items() if v is not None]
    args += [f"--scorer_dir={os.path.join(root, 'contrastive')}",
             f"--output_dir={os.path.join(root, 'eval')}"]

    def run():
        from zoo.eval.runner import evaluate_run
        results = evaluate_run(
            os.path.join(root, "parti"), prompts, os.path.join(root, "eval"),
            num_prompts=num_prompts, num_samples=num_samples, reference=reference,
            scorer_dir=os.path.join(root, "contrastive"), temperature=temperature,
            guidance_scale=guidance_scale, tool="zoo-demo")
        return describe(results)
    return Stage("eval", title, run, command=command_line("zoo-eval", args))


QUICK_BINDINGS = ("train.steps = 3", "train.checkpoint_every = 3", "train.summary_every = 1",
                  "train.image_summary_every = 3")


def check_record(model_dir: str, record: Dict) -> None:
    """Refuses a model directory that pipeline.json says was made from other data."""
    path = os.path.join(model_dir, RECORD_FILE)
    if not os.path.isfile(path):
        return
    try:
        with open(path, encoding="utf-8") as f:
            saved = json.load(f)
    except (OSError, ValueError) as e:
        raise ZooError(f"{path} is unreadable ({e}); use another --model_dir (nothing was "
                       f"changed)") from None
    if saved.get("data") != record.get("data"):
        raise ZooError(f"--model_dir {model_dir} was made from {saved.get('data')}, not "
                       f"{record.get('data')}; use another --model_dir (nothing was changed)")


def write_record(model_dir: str, record: Dict) -> None:
    os.makedirs(model_dir, exist_ok=True)
    path = os.path.join(model_dir, RECORD_FILE)
    if os.path.isfile(path):
        return
    data = {**record, "created": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)


class Pipeline:
    """Runs stages in order into `model_dir`, printing what each does and how to redo it."""

    def __init__(self, tool: str, model_dir: str, stages: List[Stage],
                 record: Optional[Dict] = None, print_fn: Callable = print):
        self.tool = tool
        self.model_dir = model_dir
        self.stages = stages
        self.record = record or {}
        self.print_fn = print_fn

    def print(self, line: str) -> None:
        self.print_fn(line)
        sys.stdout.flush()

    def select(self, wanted: Optional[Sequence[str]]) -> List[Stage]:
        names = [s.name for s in self.stages]
        for w in wanted or ():
            if w not in names:
                raise ZooError(f"unknown stage {w!r}; {suggest(w, names, what='stage')}")
        return [s for s in self.stages if not wanted or s.name in wanted]

    def run(self, wanted: Optional[Sequence[str]] = None) -> Dict[str, str]:
        chosen = self.select(wanted)
        check_record(self.model_dir, self.record)
        write_record(self.model_dir, self.record)
        self.print(f"{self.tool}: {len(chosen)} stages into {self.model_dir}")
        t0 = time.time()
        results = {}
        for i, stage in enumerate(chosen, 1):
            ts = time.time()
            self.print(f"[{i}/{len(chosen)}] {stage.title} ...")
            if stage.command:
                command = stage.command() if callable(stage.command) else stage.command
                self.print(f"    $ {command}")
            results[stage.name] = stage.run()
            self.print(f"[{i}/{len(chosen)}] {stage.title}: {results[stage.name]} "
                       f"({fmt_time(time.time() - ts)})")
        self.elapsed = time.time() - t0
        return results
