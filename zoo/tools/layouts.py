"""zoo-layouts: how a model is sharded on a mesh, and the memory per device, without building it.

    zoo-layouts --model=parti_3b --mesh=batch:128,model:4 --gin_file=mesh/parti_megatron_rules.gin
    zoo-layouts --model=parti_20b --gin_file=mesh/parti_20b_model16.gin --device_memory=16GiB

Prints each weight's shape, layout (one entry per dimension: the mesh axis it is split on, or
'-') and MiB per device, then the totals per device: weights + optimizer state (Parti's
Adafactor by default, `--optimizer=none` for weights only; `--slots` lists every slot).
Weights of more than 1M parameters left replicated while the mesh has a 'model' axis are
flagged. No device of the mesh is needed and no weight is allocated (parti_20b plans in
seconds on a laptop). The mesh comes from --mesh or from `mesh_layout.mesh` in the gin files,
the rules from `mesh_layout.rules`.
"""

import sys

from absl import flags

from zoo.tools import common

FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_string("model", None, "Registered model name, e.g. parti_3b (zoo-list model).")
    flags.DEFINE_string("mesh", None, "Mesh, e.g. batch:128,model:4 (default: mesh_layout.mesh "
                        "from the gin files).")
    flags.DEFINE_string("optimizer", "adafactor", "Optimizer whose state is counted: a registered "
                        "optimizer (zoo-list optimizer), a Keras one (adam), or 'none'.")
    flags.DEFINE_bool("slots", False, "List every optimizer slot, not only the weights.")
    flags.DEFINE_string("device_memory", None, "Say whether weights + optimizer state fit in this "
                        "much memory per device, e.g. 16GiB.")
    common.define_gin_flags()


def main(argv):
    common.setup(argv)
    from zoo.distribute import layouts
    from zoo.distribute.rules import gin_mesh_layout
    from zoo.errors import ZooError
    from zoo.registry import MODELS
    if not FLAGS.model:
        raise ZooError("--model is required, e.g. --model=parti_3b (zoo-list model shows the "
                       "names)")
    MODELS.entry(FLAGS.model)  # unknown names: one line with suggestions
    gin_mesh, rules, allow = gin_mesh_layout()
    mesh = FLAGS.mesh or gin_mesh
    if not mesh:
        raise ZooError("no mesh: pass --mesh=batch:128,model:4 or a gin file that sets "
                       "mesh_layout.mesh (gin/mesh/*.gin)")
    if not rules:
        print("zoo-layouts: warning: no layout rules (mesh_layout.rules) given: every weight "
              "is replicated; add e.g. --gin_file=mesh/parti_megatron_rules.gin",
              file=sys.stderr)
    memory = layouts.parse_bytes(FLAGS.device_memory) if FLAGS.device_memory else None
    optimizer = None if str(FLAGS.optimizer).lower() in ("none", "") else FLAGS.optimizer
    report = layouts.plan_model(FLAGS.model, mesh, rules, optimizer=optimizer,
                                allow_replicated=allow)
    print(layouts.format_report(report, show_slots=FLAGS.slots, device_memory=memory))
    sys.stdout.flush()


def run():
    common.run(main, define_flags)


if __name__ == "__main__":
    run()
