"""A small stand-in for `synthetic_shapes` (coloured squares and discs), for tokenizer tests.

Deterministic in (seed, step), like `Task.dataset`; used so these tests do not depend on the
data pipeline's speed or details.
"""

import numpy as np
import tensorflow as tf

COLOURS = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, 0, 1], [0, 1, 1]],
                   np.float32)


def shapes_images(n, size, seed):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    out = np.zeros((n, size, size, 3), np.float32)
    for i in range(n):
        for _ in range(rng.integers(1, 3)):
            r = rng.integers(size // 6, size // 3)
            cy, cx = rng.integers(r, size - r, size=2)
            colour = COLOURS[rng.integers(len(COLOURS))]
            if rng.random() < 0.5:
                mask = (np.abs(yy - cy) <= r) & (np.abs(xx - cx) <= r)
            else:
                mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
            out[i][mask] = colour
    return out


def shapes_dataset(batch_size, size, seed, start_step=0):
    def gen():
        step = start_step
        while True:
            yield {"image": shapes_images(batch_size, size, seed * 100003 + step)}
            step += 1
    spec = {"image": tf.TensorSpec((batch_size, size, size, 3), tf.float32)}
    return tf.data.Dataset.from_generator(gen, output_signature=spec)
