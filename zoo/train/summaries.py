"""TensorBoard summaries for the training loop: scalars and image grids (`tf.summary`).

Event files go to `<model_dir>/train/`; view with `tensorboard --logdir <model_dir>`.
The `tensorboard` package is only needed for viewing, not for writing: `tf.summary.scalar`
and `tf.summary.image` need it installed, so this module writes the same records (same plugin
names and tensor formats as TensorBoard's scalar and image plugins) with `tf.summary.write`.
"""

import math
from typing import Any, Dict, Optional

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import summary_pb2
from tensorflow.core.util import event_pb2


def _metadata(plugin: str) -> summary_pb2.SummaryMetadata:
    meta = summary_pb2.SummaryMetadata()
    meta.plugin_data.plugin_name = plugin
    meta.plugin_data.content = b""
    return meta


def write_scalar(name: str, value, step: int) -> None:
    """A TensorBoard scalar (plugin 'scalars', float32 scalar tensor)."""
    tf.summary.write(name, tf.constant(float(value), tf.float32), step=step,
                     metadata=_metadata("scalars"))


def write_image(name: str, image, step: int) -> None:
    """A TensorBoard image (plugin 'images': [width, height, png] string tensor)."""
    img = np.asarray(image)
    if img.ndim == 4:
        img = img[0]
    png = tf.io.encode_png(tf.convert_to_tensor(np.round(img * 255.0).astype(np.uint8)))
    tensor = tf.stack([tf.as_string(img.shape[1]), tf.as_string(img.shape[0]), png])
    tf.summary.write(name, tensor, step=step, metadata=_metadata("images"))


def image_grid(images, max_images: int = 16, pad: int = 2) -> np.ndarray:
    """Tiles [N,H,W,C] images in [0, 1] into one [1, H', W', C] grid (about square)."""
    x = np.asarray(images, dtype=np.float32)
    if x.ndim == 3:  # one image, or [N,H,W] grey
        x = x[..., None] if x.shape[-1] not in (1, 3, 4) else x[None]
    if x.ndim != 4:
        raise ValueError(f"image summary needs [N,H,W,C], got shape {x.shape}")
    x = np.clip(np.nan_to_num(x[:max_images]), 0.0, 1.0)
    n, h, w, c = x.shape
    cols = int(math.ceil(math.sqrt(n)))
    rows = int(math.ceil(n / cols))
    grid = np.ones((rows * (h + pad) + pad, cols * (w + pad) + pad, c), np.float32)
    for i in range(n):
        r, q = divmod(i, cols)
        top, left = pad + r * (h + pad), pad + q * (w + pad)
        grid[top:top + h, left:left + w] = x[i]
    return grid[None]


class SummaryWriter:
    """Writes scalars and image grids; a no-op writer when `logdir` is None."""

    def __init__(self, logdir: Optional[str]):
        self.logdir = logdir
        self._writer = tf.summary.create_file_writer(logdir) if logdir else None

    def scalars(self, step: int, values: Dict[str, Any]) -> None:
        if self._writer is None:
            return
        with self._writer.as_default(step=int(step)):
            for name, value in values.items():
                write_scalar(name, value, int(step))

    def images(self, step: int, values: Dict[str, Any]) -> None:
        """Image batches become one grid each; scalars in the dict become scalars."""
        if self._writer is None:
            return
        with self._writer.as_default(step=int(step)):
            for name, value in values.items():
                arr = np.asarray(value)
                if arr.ndim == 0:
                    write_scalar(name, arr, int(step))
                else:
                    write_image(name, image_grid(arr), int(step))

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def read_scalars(logdir: str) -> Dict[str, Dict[int, float]]:
    """{tag: {step: value}} from the event files in `logdir` (for tests and tools)."""
    out: Dict[str, Dict[int, float]] = {}
    for event in _events(logdir):
        for v in event.summary.value:
            if v.HasField("tensor") and v.metadata.plugin_data.plugin_name == "scalars":
                out.setdefault(v.tag, {})[int(event.step)] = float(tf.make_ndarray(v.tensor))
            elif v.HasField("simple_value"):
                out.setdefault(v.tag, {})[int(event.step)] = float(v.simple_value)
    return out


def read_image_tags(logdir: str) -> Dict[str, list]:
    """{tag: [steps]} of image summaries in `logdir`."""
    out: Dict[str, list] = {}
    for event in _events(logdir):
        for v in event.summary.value:
            if v.metadata.plugin_data.plugin_name == "images":
                out.setdefault(v.tag, []).append(int(event.step))
    return out


def _events(logdir: str):
    for path in sorted(tf.io.gfile.glob(f"{logdir}/events.out.tfevents.*")):
        for record in tf.data.TFRecordDataset(path):
            event = event_pb2.Event()
            event.ParseFromString(record.numpy())
            yield event
