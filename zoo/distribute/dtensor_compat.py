"""Workarounds for DTensor (TF 2.21) bugs, applied only where a mesh needs them.

- `dtensor_compat()`: while the model code of a mesh run traces (inside
  `MeshDistribution.scope()` and `.run()`, on that thread only), `x[None]`-style slices and
  `keras.ops.slice_update` are written in forms DTensor can lay out. Outside it, and on every
  other thread, `tf.Tensor.__getitem__`, TF's slice helper and Keras's `slice_update` are
  TensorFlow's and Keras's own (tests/test_distribute_mesh.py checks both).
- `default_mesh(mesh)`: `dtensor.default_mesh` that also restores the previous default mesh
  when its body raises (TF 2.21's leaves the mesh set for the rest of the process, and every
  later trace in it takes the DTensor paths).
- `laid_out_variable_class()`: the DVariable the mesh's variable creator makes, which keeps its
  layout on assignment and forwards in-function writes to later reads.
"""

import contextlib
import threading

_LOCAL = threading.local()    # .depth: how many dtensor_compat() this thread is inside
_LOCK = threading.Lock()
_ACTIVE = 0                   # threads inside dtensor_compat(): the forms are installed while > 0
_ORIGINALS = None


@contextlib.contextmanager
def default_mesh(mesh):
    """`tf.experimental.dtensor.default_mesh(mesh)`, restored on error too."""
    from tensorflow.experimental import dtensor
    error = None
    with dtensor.default_mesh(mesh):
        try:
            yield
        except BaseException as e:  # noqa: BLE001  (re-raised once the mesh is restored)
            error = e
    if error is not None:
        raise error


def _depth() -> int:
    return getattr(_LOCAL, "depth", 0)


@contextlib.contextmanager
def dtensor_compat():
    """Within (this thread only): model code traces into ops DTensor can lay out. Re-entrant.

    - `x[None]`, `x[:, None]`, ... become a slice without new axes + `tf.expand_dims`: DTensor's
      layout pass reads garbage sharding specs for a StridedSlice with a new axis whose spec
      does not name every dimension ("ComputeLayoutForward error: sharding spec (<bytes>",
      UTF-8 decode errors or a segmentation fault); `x[None, :, :]` and expand_dims work.
    - `keras.ops.slice_update` (KV caches) becomes pad + select: DTensor has no layout
      propagation for XlaDynamicUpdateSlice.
    Both give identical values; model code keeps its ordinary forms. The replacements are on
    the classes only while some thread is inside, and they defer to the originals on every
    thread that is not.
    """
    global _ACTIVE, _ORIGINALS
    from keras.src.backend.tensorflow import core as keras_tf_core
    from tensorflow.python.framework import tensor as tensor_lib
    from tensorflow.python.ops import tensor_getitem_override as getitem_lib
    outermost = _depth() == 0
    if outermost:
        with _LOCK:
            if _ACTIVE == 0:
                _ORIGINALS = (tensor_lib.Tensor.__getitem__, getitem_lib._slice_helper,
                              keras_tf_core.slice_update)
                fixed = _newaxis_free_getitem(_ORIGINALS[1])
                tensor_lib.Tensor.__getitem__ = _scoped(fixed, _ORIGINALS[0])
                getitem_lib._slice_helper = _scoped(fixed, _ORIGINALS[1])
                keras_tf_core.slice_update = _scoped(_slice_update_by_select, _ORIGINALS[2])
            _ACTIVE += 1
    _LOCAL.depth = _depth() + 1
    try:
        yield
    finally:
        _LOCAL.depth = _depth() - 1
        if outermost:
            with _LOCK:
                _ACTIVE -= 1
                if _ACTIVE == 0:
                    (tensor_lib.Tensor.__getitem__, getitem_lib._slice_helper,
                     keras_tf_core.slice_update) = _ORIGINALS


def _scoped(replacement, original):
    """`replacement` on threads inside dtensor_compat(), `original` on the others."""
    def call(*args, **kwargs):
        return (replacement if _depth() else original)(*args, **kwargs)
    call.__wrapped__ = original
    return call


def _slice_update_by_select(inputs, start_indices, updates):
    """`inputs` with `updates` written at `start_indices`, by padding and tf.where."""
    import tensorflow as tf
    inputs = tf.convert_to_tensor(inputs)
    updates = tf.cast(tf.convert_to_tensor(updates), inputs.dtype)
    start = tf.cast(tf.stack([tf.cast(i, tf.int32) for i in start_indices])
                    if isinstance(start_indices, (list, tuple)) else start_indices, tf.int32)
    paddings = tf.stack([start, tf.shape(inputs) - start - tf.shape(updates)], axis=1)
    written = tf.pad(tf.ones_like(updates, dtype=tf.bool), paddings)
    padded = tf.pad(updates, paddings)
    # Dynamic paddings lose the static shape, which DTensor needs to lay the result out.
    written.set_shape(inputs.shape)
    padded.set_shape(inputs.shape)
    return tf.where(written, padded, inputs)


def _newaxis_free_getitem(original):
    import tensorflow as tf

    def getitem(tensor, slice_spec, var=None):
        key = slice_spec if isinstance(slice_spec, tuple) else (slice_spec,)
        rank = tensor.shape.rank
        if rank is None or not any(k is None for k in key):
            return original(tensor, slice_spec, var)
        consumed = sum(1 for k in key if k is not None and k is not Ellipsis)
        fill = (slice(None),) * max(rank - consumed, 0)
        if any(k is Ellipsis for k in key):
            i = next(j for j, k in enumerate(key) if k is Ellipsis)
            key = key[:i] + fill + key[i + 1:]
        else:
            key = key + fill
        out = original(tensor, tuple(k for k in key if k is not None))
        axis, new_axes = 0, []
        for k in key:
            if k is None:
                new_axes.append(axis)
                axis += 1
            elif isinstance(k, slice):
                axis += 1
        for a in new_axes:
            out = tf.expand_dims(out, a)
        return out
    return getitem


_LAID_OUT = None


def laid_out_variable_class():
    """A DVariable that keeps its layout on assignment and forwards in-function writes.

    Checked with TF 2.21 on batch:2,model:4: inside one tf.function, reading a variable back
    after assigning it gave wrong values once two weights of different layouts were updated
    in that function (Keras's Adafactor updates its row/column moments, then reads them for
    the velocity: NaN). So every assigned value is first relaid to the variable's layout, and
    later reads in the same function graph return the value written (what sequential
    semantics promise) instead of a resource read. Eager reads and other functions read the
    variable as usual. tests/test_distribute_mesh.py fails without this.
    """
    global _LAID_OUT
    if _LAID_OUT is not None:
        return _LAID_OUT
    import tensorflow as tf
    from tensorflow.experimental import dtensor

    class LaidOutVariable(dtensor.DVariable):
        def __init__(self, initial_value, *args, layout=None, **kwargs):
            super().__init__(initial_value, *args, **kwargs)
            self._zoo_layout = layout
            self._zoo_written = None  # (graph, value) of the last assign in a tf.function

        def _fit(self, value):
            value = tf.convert_to_tensor(value, dtype=self.dtype)
            if tf.executing_eagerly() and not dtensor.is_dtensor(value):
                value = dtensor.copy_to_mesh(
                    value, dtensor.Layout.replicated(self._zoo_layout.mesh, value.shape.rank))
            return dtensor.relayout(value, self._zoo_layout)

        def _read_variable_op(self, no_copy=False):
            written = self._zoo_written
            if (written is not None and not tf.executing_eagerly()
                    and written[0] is tf.compat.v1.get_default_graph()):
                return written[1]
            return super()._read_variable_op(no_copy=no_copy)

        def _write(self, value, use_locking, name, read_value):
            result = super().assign(value, use_locking, name, read_value)
            if not tf.executing_eagerly():
                self._zoo_written = (tf.compat.v1.get_default_graph(), value)
            else:
                self._zoo_written = None
            return result

        def assign(self, value, use_locking=None, name=None, read_value=True):
            return self._write(self._fit(value), use_locking, name, read_value)

        def assign_add(self, delta, use_locking=None, name=None, read_value=True):
            if tf.executing_eagerly():
                self._zoo_written = None
                return super().assign_add(self._fit(delta), use_locking, name, read_value)
            return self._write(self._read_variable_op() + self._fit(delta), use_locking, name,
                               read_value)

        def assign_sub(self, delta, use_locking=None, name=None, read_value=True):
            if tf.executing_eagerly():
                self._zoo_written = None
                return super().assign_sub(self._fit(delta), use_locking, name, read_value)
            return self._write(self._read_variable_op() - self._fit(delta), use_locking, name,
                               read_value)

    _LAID_OUT = LaidOutVariable
    return _LAID_OUT
