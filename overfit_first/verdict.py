"""The article's fit taxonomy as rules on train and validation accuracy, thresholds from params.yaml `evaluate`
(overfit_first.config.EvaluateConfig).

The rules apply in this order (gap = train - validation accuracy):

    still improving at its last epochs (`still_learning`)  -> still learning: train longer before judging
    train >= overfit_train_min and gap >= overfit_gap_min  -> true overfit: the architecture has the capacity
    gap >= overfit_gap_min                                 -> partial overfit: memorizes, yet cannot fit
    train < underfit_train_max                             -> underfit: cannot fit even its training set
    otherwise                                              -> good fit

With the defaults (0.95, 0.1, 0.7) the article's reported numbers get the article's words: the MLP on
CIFAR-10 (0.540/0.512) underfits, the MLP on CIFAR-100 (0.401/0.243) partially overfits, the CIFAR-10 CNN
(0.984/0.696) truly overfits and its simplified version (0.865/0.850) fits well.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from overfit_first.config import EvaluateConfig

RECOMMENDATIONS = {
    "still learning": "validation accuracy was still rising when its epochs ran out: train longer (raise "
    "runs.<run>.epochs) before judging its fit",
    "true overfit": "capacity confirmed: simplify it (dropout, batch norm, fewer or smaller layers) or add data "
    "(augmentation)",
    "partial overfit": "a gap without fitting its training set: if a less regularized version of this architecture "
    "truly overfits (the ladder), regularize or add data until the gap closes (the data-size curve says which); "
    "if none does, change the architecture",
    "underfit": "cannot fit its training set: change the architecture (more capacity, e.g. a CNN instead of an "
    "MLP); simplifying will not help",
    "good fit": "train and validation agree: keep it; add capacity only if its accuracy is still too low",
}


def still_learning(val_accuracy: Sequence[float], valid_images: int, rules: EvaluateConfig) -> bool:
    """Whether validation accuracy per epoch (first to last) was still improving when training stopped.

    True when the best accuracy of the last `rules.still_learning_window` epochs beats the best of all the
    epochs before them by more than the validation set's own noise: one standard error of an accuracy p
    measured on `valid_images` images, sqrt(p (1 - p) / n) (0.011 at p = 0.85 on 1,000 images). A run ended
    by early stopping never counts (its best epoch is `patience` = 10 epochs back), nor does a plateau whose
    last epochs only wobble. A run shorter than the window compares its last epoch with the ones before.
    """
    values = np.asarray(val_accuracy, dtype=float)
    split = max(1, len(values) - rules.still_learning_window)
    recent, earlier = values[split:], values[:split]
    if not len(recent):
        return False
    best = recent.max()
    noise = np.sqrt(best * (1 - best) / max(valid_images, 1))
    return bool(best - earlier.max() > noise)


def verdict(train_accuracy: float, val_accuracy: float, rules: EvaluateConfig, learning: bool = False) -> str:
    """'still learning', 'true overfit', 'partial overfit', 'underfit' or 'good fit' (the module's rules).

    `learning`: `still_learning` of the run's validation curve; the article's reported numbers have none.
    """
    if learning:
        return "still learning"
    gap = train_accuracy - val_accuracy
    if train_accuracy >= rules.overfit_train_min and gap >= rules.overfit_gap_min:
        return "true overfit"
    if gap >= rules.overfit_gap_min:
        return "partial overfit"
    if train_accuracy < rules.underfit_train_max:
        return "underfit"
    return "good fit"


def describe(rules: EvaluateConfig) -> str:
    """The rules with their thresholds, in words, for the report."""
    return (
        f"**still learning**: the best validation accuracy of the last {rules.still_learning_window} epochs above "
        "the best before them by more than one standard error of the validation set (train longer before "
        "judging); "
        f"**true overfit**: train ≥ {rules.overfit_train_min:g} and gap ≥ {rules.overfit_gap_min:g}; "
        f"**partial overfit**: gap ≥ {rules.overfit_gap_min:g} otherwise; "
        f"**underfit**: train < {rules.underfit_train_max:g}; **good fit**: the rest"
    )
