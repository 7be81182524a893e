"""Training: the loop, its settings, checkpoints, run folders and the task plug-ins.

A :class:`Trainer` trains any model for any :class:`Task` (the loss and the metrics) and
keeps a run folder; :class:`ClassificationTask` is the classification task. Transfer
strategies, LoRA and distillation live in their own modules of this package.

Example:
    >>> from visionkit.train import ClassificationTask, TrainConfig, Trainer, new_run_dir
    >>> config = TrainConfig(epochs=5, batch=64, lr=3e-4)
    >>> run = new_run_dir("runs", "classify", "exp")  # doctest: +SKIP
    >>> result = Trainer(model, ClassificationTask(10), train, val, config, run).fit()
    ... # doctest: +SKIP
"""

from visionkit.train._task import Task
from visionkit.train.checkpoint import load_checkpoint, save_checkpoint
from visionkit.train.classify import ClassificationTask
from visionkit.train.config import TrainConfig
from visionkit.train.run_dir import new_run_dir
from visionkit.train.trainer import Callback, Trainer, TrainResult, evaluate, train_one_epoch

__all__ = [
    "Callback",
    "ClassificationTask",
    "Task",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "evaluate",
    "load_checkpoint",
    "new_run_dir",
    "save_checkpoint",
    "train_one_epoch",
]
