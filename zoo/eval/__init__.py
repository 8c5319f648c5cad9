"""Metrics: FID, contrastive agreement, reconstruction, the shapes checker rate."""

from zoo.eval import fid  # noqa: F401  (registers fid, inception_v3)
from zoo.eval import shapes_eval  # noqa: F401  (registers shapes_acceptance)
from zoo.eval import clip_score  # noqa: F401,E402  (registers clip_score)
