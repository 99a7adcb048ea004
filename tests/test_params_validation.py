"""params.yaml is validated before any work: each bad value stops the stage with a message naming it."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import run_stage, write_params
from overfit_first.errors import PipelineError
from overfit_first.validation import validate

Mutation = Callable[[dict], None]

# (what is wrong, how to break params.yaml, text the error must contain)
BAD_INPUTS: list[tuple[str, Mutation, list[str]]] = [
    ("dropout above 1", lambda p: p["model"].update(dropout=1.5), ["model.dropout", "1.5", "less than 1"]),
    ("batch size 0", lambda p: p["models"]["mlp"]["training"].update(batch_size=0),
     ["models.mlp.training.batch_size", "0", "greater than or equal to 1"]),
    ("unknown layer type", lambda p: p["models"]["mlp"]["layers"].insert(1, {"Conv3D": {"filters": 8}}),
     ["models.mlp.layers[1]", "Conv3D", "allowed: Activation"]),
    ("unknown dataset", lambda p: p["data"]["datasets"].append("imagenet"),
     ["data.datasets", "imagenet", "known: cifar10"]),
    ("missing key", lambda p: p["models"]["cnn_overfit"]["training"].pop("learning_rate"),
     ["models.cnn_overfit.training.learning_rate", "(missing)", "Field required"]),
    ("wrong type", lambda p: p["prepare"].update(valid_size="many"),
     ["prepare.valid_size", "'many'", "valid integer"]),
    ("unknown model in a run", lambda p: p["runs"][next(iter(p["runs"]))].update(model="resnet"),
     ["runs.", ".model", "resnet", "unknown model"]),
    ("run on a dataset not built", lambda p: p["runs"][next(iter(p["runs"]))].update(dataset="cifar10"),
     [".dataset", "cifar10", "not in data.datasets"]),
    ("simplified model not tuned by dropout",
     lambda p: [run.update(tuned_by="train") for run in p["runs"].values() if run["model"] == "cnn_simplified"],
     ["tuned_by", "must be 'model.dropout'"]),
    ("missing section", lambda p: p.pop("train"), ["train", "(missing)"]),
    ("misspelt key", lambda p: p["train"].update(max_epoch=3), ["train.max_epoch", "Extra inputs"]),
    ("unknown optimizer", lambda p: p["models"]["mlp"]["training"].update(optimizer="adamw2"),
     ["models.mlp.training.optimizer", "adamw2", "'adam', 'nadam'"]),
    ("negative learning rate", lambda p: p["models"]["mlp"]["training"].update(learning_rate=-0.1),
     ["models.mlp.training.learning_rate", "-0.1", "greater than 0"]),
    ("dataset listed twice", lambda p: p["data"]["datasets"].append(p["data"]["datasets"][0]),
     ["data.datasets", "twice"]),
    ("mixed precision neither auto nor a boolean", lambda p: p["train"].update(mixed_precision="fp16"),
     ["train.mixed_precision", "'fp16'", "must be auto, true or false"]),
    ("xla as a quoted 'true'", lambda p: p["train"].update(xla="true"),
     ["train.xla", "'true'", "must be auto, true or false"]),
]


def test_repository_params_are_valid(default_params: dict) -> None:
    validated = validate(default_params)
    assert set(validated.runs) == set(default_params["runs"])


@pytest.mark.parametrize(("mutate", "expected"), [case[1:] for case in BAD_INPUTS],
                         ids=[case[0] for case in BAD_INPUTS])
def test_bad_value_is_named(default_params: dict, mutate: Mutation, expected: list[str]) -> None:
    params = copy.deepcopy(default_params)
    mutate(params)
    with pytest.raises(PipelineError) as error:
        validate(params)
    for text in expected:
        assert text in str(error.value)


def test_stage_stops_before_work(tmp_path: Path, default_params: dict) -> None:
    """A real stage process exits non-zero with the message, and writes nothing."""
    params = copy.deepcopy(default_params)
    params["model"]["dropout"] = 1.5
    params["prepare"]["valid_size"] = 0
    write_params(tmp_path, params)
    result = run_stage("stages.prepare", params["data"]["datasets"][0], cwd=tmp_path)
    assert result.returncode == 1
    assert "model.dropout = 1.5" in result.stderr and "prepare.valid_size = 0" in result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == ["params.yaml"]
