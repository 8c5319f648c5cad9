"""The one training loop, checkpoints and summaries, and the training stages (tasks).

Importing this package registers the built-in tasks (each stage's module is imported below).
"""

from zoo.train.task import Task, UpdateGroup  # noqa: F401
from zoo.train.loop import TrainResult, load_task, train  # noqa: F401

# Training stages (tasks), registered under TASKS when imported. Engineers append their lines.
from zoo.train import tokenizer_task, superres_task  # noqa: F401,E402
from zoo.train import optimizers, parti_task  # noqa: F401,E402  (Parti, issue 5)
