"""Metrics: FID, contrastive agreement, reconstruction, the shapes checker rate."""
