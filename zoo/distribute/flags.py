"""Flags every training and sampling tool shares: --strategy, --mesh, --virtual_devices, ...

A tool defines them at import and builds its distribution after gin is parsed:

    from zoo.distribute import flags as distribute_flags
    distribute_flags.define()
    def main(argv):
        common.setup(argv)
        dist = distribute_flags.from_flags()     # or zoo.distribute.from_flags()

--mesh defaults to `mesh_layout.mesh` from the gin files (gin/mesh/*.gin set it), so
`--gin_file=gin/mesh/parti_3b_model4.gin` alone asks for that mesh; --mesh overrides it, and
--mesh=none turns it off.
"""

from absl import flags

from zoo.distribute.base import STRATEGIES

FLAGS = flags.FLAGS


def define() -> None:
    """Defines the distribution flags (once per process)."""
    if "strategy" in FLAGS:
        return
    flags.DEFINE_enum(
        "strategy", "default", list(STRATEGIES),
        "tf.distribute strategy (data parallel): default (one device), mirrored (all GPUs of "
        "this machine, else its CPU devices), multi_worker (several machines: TF_CONFIG or "
        "--workers), tpu (a TPU VM, or --tpu=NAME).")
    flags.DEFINE_string(
        "mesh", None,
        "DTensor mesh for data + model parallelism, e.g. batch:128,model:4 (axis:size, the "
        "product must equal the device count). Weights are sharded by the layout rules "
        "(mesh_layout.rules in gin, e.g. --gin_file=gin/mesh/parti_3b_model4.gin). Defaults "
        "to mesh_layout.mesh from gin; 'none' disables.")
    flags.DEFINE_integer(
        "virtual_devices", None,
        "Split the host CPU into N logical devices (to try a mesh or mirrored strategy on one "
        "machine, and in tests).", lower_bound=1)
    flags.DEFINE_string("tpu", None, "--strategy=tpu: TPU name or grpc:// address (default: "
                        "TPU_NAME, else the local TPU VM).")
    flags.DEFINE_list("workers", None, "--strategy=multi_worker: host:port of every worker, "
                      "the chief first (instead of TF_CONFIG).")
    flags.DEFINE_integer("worker_index", None, "--strategy=multi_worker with --workers: this "
                         "machine's index in --workers.")


def mesh_from_gin_or_flag():
    """--mesh, else `mesh_layout.mesh` from gin, else None ('none' means None)."""
    value = FLAGS.mesh if "mesh" in FLAGS else None
    if value is None:
        from zoo.distribute.rules import gin_mesh_layout
        value = gin_mesh_layout().mesh
    if value is not None and str(value).strip().lower() in ("", "none", "off"):
        return None
    return value


def set_virtual_devices_from_flags() -> None:
    """Applies --virtual_devices now (call before anything runs a TF op)."""
    if "virtual_devices" in FLAGS and FLAGS.virtual_devices:
        from zoo.distribute.devices import set_virtual_devices
        set_virtual_devices(FLAGS.virtual_devices)


def from_flags():
    """The `Distribution` the flags (and gin's mesh_layout) ask for."""
    from zoo.distribute.factory import get
    define()
    set_virtual_devices_from_flags()
    return get(strategy=FLAGS.strategy, mesh=mesh_from_gin_or_flag(), tpu=FLAGS.tpu,
               workers=FLAGS.workers, worker_index=FLAGS.worker_index)
