"""Logical devices: N virtual CPU devices for tests and trying meshes on one host."""

from zoo.errors import ZooError


def set_virtual_devices(n: int) -> None:
    """Splits the first physical CPU into `n` logical devices.

    Must run before TensorFlow initialises its devices (before the first op, tf.function or
    device listing). Asking again for the same number is a no-op.
    """
    import tensorflow as tf
    if n < 1:
        raise ZooError(f"--virtual_devices={n}: need at least 1 device")
    cpus = tf.config.list_physical_devices("CPU")
    current = tf.config.get_logical_device_configuration(cpus[0])
    if current is not None and len(current) == n:
        return
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration()] * n)
    except RuntimeError:
        have = len(tf.config.list_logical_devices("CPU"))
        if have == n:
            return
        raise ZooError(
            f"--virtual_devices={n}: TensorFlow already initialised {have} CPU device(s); "
            f"virtual devices must be set before the first TensorFlow op (set them at the "
            f"start of the program)") from None


def accelerator_type() -> str:
    """'TPU' if TPUs are visible, else 'GPU' if GPUs are, else 'CPU'."""
    import tensorflow as tf
    for kind in ("TPU", "GPU"):
        if tf.config.list_logical_devices(kind):
            return kind
    return "CPU"


def local_devices(kind: str):
    import tensorflow as tf
    return tf.config.list_logical_devices(kind)
