"""The one training loop, checkpoints and summaries, and the training stages (tasks)."""
