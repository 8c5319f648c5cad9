"""zoo-train: trains any stage (a registered task) with the one training loop.

    zoo-train --gin_file=runs/demo_tokenizer.gin --model_dir=runs/tok
    zoo-train --gin_file=runs/demo_tokenizer.gin --model_dir=runs/tok --steps=2000 --seed=1

The same command resumes a run killed at any point (from its newest valid checkpoint).
`--steps`, `--seed` and `--batch_size` override `train.steps`, `train.seed` and
`train.batch_size` from the gin files. `--model_dir` overrides `train.model_dir`.
"""

import sys

from absl import flags

# --strategy, --mesh, --virtual_devices, ... (shared with zoo-sample); importing zoo.distribute
# (no TF) also registers `mesh_layout` with gin before the gin files are parsed.
from zoo.distribute import flags as distribute_flags
from zoo.tools import common

FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_integer("steps", None, "Total training steps (overrides train.steps).")
    flags.DEFINE_integer("seed", None, "Random seed of initial weights and data order "
                         "(overrides train.seed).")
    flags.DEFINE_integer("batch_size", None, "Global batch size (overrides "
                         "train.batch_size).")
    flags.DEFINE_bool("deterministic", None, "Enable TF op determinism (overrides "
                      "train.deterministic).")
    flags.DEFINE_bool("progress", True, "Show a progress bar.")
    common.define_gin_flags()
    distribute_flags.define()


def main(argv):
    common.prefer_onednn()  # before TensorFlow is imported: it reads the setting once
    distribute_flags.set_virtual_devices_from_flags()  # before anything runs a TF op
    common.setup(argv)
    from zoo.errors import ZooError
    from zoo.train.loop import train
    kwargs = {"progress": FLAGS.progress}
    if FLAGS.model_dir:
        kwargs["model_dir"] = FLAGS.model_dir
    for name in ("steps", "seed", "batch_size", "deterministic"):
        value = getattr(FLAGS, name)
        if value is not None:
            kwargs[name] = value
    kwargs["distribution"] = distribute_flags.from_flags()
    try:
        result = train(**kwargs)
    except ZooError as e:
        # gin appends "In call to configurable 'train' (...)" to errors raised inside `train`.
        raise ZooError(str(e).splitlines()[0]) from None
    if result.interrupted:  # saved and stopped by SIGTERM / Ctrl-C: exit like the signal
        sys.exit(143 if result.interrupted == "SIGTERM" else 130)


def run():
    common.run(main, define_flags)


if __name__ == "__main__":
    run()
