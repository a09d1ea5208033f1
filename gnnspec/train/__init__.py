"""Training: typed config, objective and losses, augmentation, loop (DDP), checkpoints,
TensorBoard output, evaluation and the train/evaluate/predict/infer commands."""

from gnnspec.scoring import auroc
from gnnspec.train.metrics import evaluate, write_metrics

__all__ = ["auroc", "evaluate", "write_metrics"]
