"""The article's fit taxonomy as rules on train and validation accuracy, thresholds from params.yaml `evaluate`.

The rules apply in this order (gap = train - validation accuracy):

    train >= overfit_train_min and gap >= overfit_gap_min  -> true overfit: the architecture has the capacity
    gap >= overfit_gap_min                                 -> partial overfit: memorizes, yet cannot fit
    train < underfit_train_max                             -> underfit: cannot fit even its training set
    otherwise                                              -> good fit

With the defaults (0.95, 0.1, 0.7) the article's reported numbers get the article's words: the MLP on
CIFAR-10 (0.540/0.512) underfits, the MLP on CIFAR-100 (0.401/0.243) partially overfits, the CIFAR-10 CNN
(0.984/0.696) truly overfits and its simplified version (0.865/0.850) fits well.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from overfit_first.errors import PipelineError

Fraction = Annotated[float, Field(gt=0.0, le=1.0)]

RECOMMENDATIONS = {
    "true overfit": "capacity confirmed: simplify it (dropout, batch norm, fewer or smaller layers) or add data "
                    "(augmentation)",
    "partial overfit": "memorizes without fitting its training set: change the architecture or get more data; "
                       "more regularization will not close this gap",
    "underfit": "cannot fit its training set: change the architecture (more capacity, e.g. a CNN instead of an "
                "MLP); simplifying will not help",
    "good fit": "train and validation agree: keep it; add capacity only if its accuracy is still too low",
}


class EvaluateSettings(BaseModel):
    """params.yaml `evaluate`: the verdict thresholds and the batch size of the inference passes."""

    model_config = ConfigDict(extra="forbid", strict=True)

    overfit_train_min: Fraction = 0.95
    overfit_gap_min: Fraction = 0.1
    underfit_train_max: Fraction = 0.7
    # Inference keeps no gradients: a batch much larger than training's is fast and fits in memory.
    batch_size: Annotated[int, Field(ge=1, le=65536)] = 512

    @model_validator(mode="after")
    def _ordered(self) -> EvaluateSettings:
        if self.underfit_train_max > self.overfit_train_min:
            raise ValueError(
                f"underfit_train_max ({self.underfit_train_max}) must not exceed overfit_train_min "
                f"({self.overfit_train_min}): a model cannot underfit at a train accuracy that counts as overfitting"
            )
        return self


def settings(params: dict[str, Any], source: str = "params.yaml") -> EvaluateSettings:
    """The validated `evaluate` section of params.yaml."""
    if not isinstance(params.get("evaluate"), dict):
        raise PipelineError(
            f"{source}: missing section 'evaluate' (overfit_train_min, overfit_gap_min, underfit_train_max, "
            "batch_size); see README 'Evaluation, comparison and report'"
        )
    try:
        return EvaluateSettings.model_validate(params["evaluate"])
    except ValidationError as error:
        lines = []
        for detail in error.errors():
            key = ".".join(str(part) for part in ("evaluate", *detail["loc"]))
            shown = "(missing)" if detail["type"] == "missing" else repr(detail.get("input"))
            lines.append(f"  {key} = {shown}: {detail['msg']}")
        raise PipelineError(f"{source} is invalid:\n" + "\n".join(lines)) from None


def verdict(train_accuracy: float, val_accuracy: float, rules: EvaluateSettings) -> str:
    """'true overfit', 'partial overfit', 'underfit' or 'good fit' (the rules of the module docstring)."""
    gap = train_accuracy - val_accuracy
    if train_accuracy >= rules.overfit_train_min and gap >= rules.overfit_gap_min:
        return "true overfit"
    if gap >= rules.overfit_gap_min:
        return "partial overfit"
    if train_accuracy < rules.underfit_train_max:
        return "underfit"
    return "good fit"


def describe(rules: EvaluateSettings) -> str:
    """The rules with their thresholds, in words, for the report."""
    return (
        f"**true overfit**: train ≥ {rules.overfit_train_min:g} and gap ≥ {rules.overfit_gap_min:g}; "
        f"**partial overfit**: gap ≥ {rules.overfit_gap_min:g} otherwise; "
        f"**underfit**: train < {rules.underfit_train_max:g}; **good fit**: the rest"
    )
