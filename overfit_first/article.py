"""The article's reported numbers (../shared/ARTICLE.md), for the results pages' "article vs ours" tables.

The article reports the training log's accuracies at its best epoch (train measured with dropout on, during
the epoch), not inference-mode accuracies; where it gives no number the field is None.
"""

from __future__ import annotations

from dataclasses import dataclass

# Our dataset names -> the article's dataset: the official archives and their image-folder copies.
ARTICLE_DATASETS = {
    "cifar10": "CIFAR-10",
    "cifar10_jpeg": "CIFAR-10",
    "cifar100": "CIFAR-100",
    "cifar100_jpeg": "CIFAR-100",
}


@dataclass(frozen=True)
class Reported:
    """One run as the article reports it: accuracies are fractions (0..1), `epoch` its best (1-based)."""

    train: float | None
    val: float | None
    test: float | None
    epoch: int | None
    total_epochs: int  # the epochs it was allowed (150, or 300 for the augmented run)


REPORTED: dict[tuple[str, str], Reported] = {
    ("CIFAR-10", "mlp"): Reported(train=0.540, val=0.512, test=0.506, epoch=50, total_epochs=150),
    ("CIFAR-10", "cnn_overfit"): Reported(train=0.984, val=0.696, test=None, epoch=31, total_epochs=150),
    ("CIFAR-10", "cnn_simplified"): Reported(train=0.865, val=0.850, test=None, epoch=52, total_epochs=150),
    ("CIFAR-100", "mlp_256"): Reported(train=0.401, val=0.243, test=0.241, epoch=24, total_epochs=150),
    ("CIFAR-100", "mlp_512"): Reported(train=0.451, val=0.253, test=None, epoch=24, total_epochs=150),
    ("CIFAR-100", "cnn_overfit_c100"): Reported(train=0.957, val=0.446, test=None, epoch=42, total_epochs=150),
    ("CIFAR-100", "cnn_simplified_c100"): Reported(train=0.637, val=0.547, test=None, epoch=48, total_epochs=150),
    ("CIFAR-100", "cnn_augmented"): Reported(train=None, val=None, test=None, epoch=None, total_epochs=300),
}


def reported(dataset: str, model: str) -> Reported | None:
    """What the article reports for `model` trained on `dataset` (one of our dataset names); None if nothing."""
    article_dataset = ARTICLE_DATASETS.get(dataset)
    return REPORTED.get((article_dataset, model)) if article_dataset else None
