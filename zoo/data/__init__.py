"""Datasets (TFDS builders) and the shared tf.data pipeline."""
