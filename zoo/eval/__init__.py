"""Metrics: FID, contrastive agreement, reconstruction, the shapes checker rate."""

from zoo.eval import fid  # noqa: F401  (registers fid, inception_v3)
