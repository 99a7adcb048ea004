"""params.yaml is validated before any work: each bad value stops the stage with a message naming it."""

from __future__ import annotations

import copy
import os
import re
import shutil
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from overfit_first.config import load_params, read_yaml, validate
from overfit_first.errors import PipelineError
from overfit_first.tools import profiles

from conftest import REPO, run_stage, write_params

Mutation = Callable[[dict], None]

# (what is wrong, how to break params.yaml, text the error must contain)
BAD_INPUTS: list[tuple[str, Mutation, list[str]]] = [
    ("dropout above 1", lambda p: p["model"].update(dropout=1.5), ["model.dropout", "1.5", "less than 1"]),
    (
        "batch size 0",
        lambda p: p["models"]["mlp"]["fit"].update(batch_size=0),
        ["models.mlp.fit.batch_size", "0", "greater than or equal to 1"],
    ),
    (
        "unknown layer type",
        lambda p: p["models"]["mlp"]["layers"].insert(1, {"Conv3D": {"filters": 8}}),
        ["models.mlp.layers[1]", "Conv3D", "allowed: Activation"],
    ),
    (
        "unknown dataset",
        lambda p: p["data"]["datasets"].append("imagenet"),
        ["data.datasets", "imagenet", "known: cifar10"],
    ),
    (
        "missing key",
        lambda p: p["models"]["cnn_overfit"]["fit"].pop("learning_rate"),
        ["models.cnn_overfit.fit.learning_rate", "(missing)", "Field required"],
    ),
    ("wrong type", lambda p: p["prepare"].update(valid_size="many"), ["prepare.valid_size", "'many'", "valid integer"]),
    (
        "unknown model in a run",
        lambda p: p["runs"][next(iter(p["runs"]))].update(model="resnet"),
        ["runs.", ".model", "resnet", "unknown model"],
    ),
    (
        "run on a dataset not built",
        lambda p: p["runs"][next(iter(p["runs"]))].update(dataset="cifar10"),
        [".dataset", "cifar10", "not in data.datasets"],
    ),
    (
        "simplified model not tuned by dropout",
        lambda p: [run.update(tuned_by="train") for run in p["runs"].values() if run["model"] == "cnn_simplified"],
        ["tuned_by", "must be 'model.dropout'"],
    ),
    ("missing section", lambda p: p.pop("train"), ["train", "(missing)"]),
    ("misspelt key", lambda p: p["train"].update(max_epoch=3), ["train.max_epoch", "Extra inputs"]),
    (
        "unknown optimizer",
        lambda p: p["models"]["mlp"]["fit"].update(optimizer="adamw2"),
        ["models.mlp.fit.optimizer", "adamw2", "'adam', 'nadam'"],
    ),
    (
        "negative learning rate",
        lambda p: p["models"]["mlp"]["fit"].update(learning_rate=-0.1),
        ["models.mlp.fit.learning_rate", "-0.1", "greater than 0"],
    ),
    (
        "dataset listed twice",
        lambda p: p["data"]["datasets"].append(p["data"]["datasets"][0]),
        ["data.datasets", "twice"],
    ),
    (
        "mixed precision true: which 16-bit type is not said",
        lambda p: p["train"].update(mixed_precision=True),
        ["train.mixed_precision", "True", "must be auto, bf16, fp16 or false"],
    ),
    (
        "mixed precision as a dtype name",
        lambda p: p["train"].update(mixed_precision="bfloat16"),
        ["train.mixed_precision", "'bfloat16'", "must be auto, bf16, fp16 or false"],
    ),
    (
        "xla as a quoted 'true'",
        lambda p: p["train"].update(xla="true"),
        ["train.xla", "'true'", "must be auto, true or false"],
    ),
    (
        "unknown placeholder",
        lambda p: p["models"]["mlp"]["layers"][-1]["Dense"].update(units="$classes"),
        ["models.mlp", "unknown placeholder '$classes'", "$num_classes"],
    ),
    (
        "a renamed key of an older params.yaml",
        lambda p: p["train"].update(limit=1000),
        ["train.limit", "Extra inputs are not permitted"],
    ),
    (
        "image folder shadowing a built-in dataset",
        lambda p: p["data"]["image_folders"].update(mnist="x"),
        ["data.image_folders", "mnist", "shadow built-in"],
    ),
    (
        "image folder name unusable as a directory",
        lambda p: p["data"]["image_folders"].update({"a/b": "x"}),
        ["data.image_folders.a/b", "letters, digits"],
    ),
    ("prepare key misspelt", lambda p: p["prepare"].update(valid_szie=10), ["prepare.valid_szie", "Extra inputs"]),
    ("a negative seed", lambda p: p["train"].update(seed=-1), ["train.seed", "-1", "greater than or equal to 0"]),
    ("sample size as a boolean", lambda p: p["prepare"].update(sample_size=True), ["prepare.sample_size", "True"]),
    (
        "a deleted key that changes numbers has no silent default (subset_size null would mean every image)",
        lambda p: p["train"].pop("subset_size"),
        ["train.subset_size", "(missing)", "Field required"],
    ),
    (
        "misspelt section (a hand edit, or `dvc exp run -S +modle.dropout=0.4`)",
        lambda p: p.update(modle={"dropout": 0.4}),
        ["modle: unknown section", "did you mean 'model'?"],
    ),
    (
        "an unknown section and a bad value: both reported",
        lambda p: (p.update(mlflow={"uri": "x"}), p["model"].update(dropout=2)),
        ["mlflow: unknown section", "sections: data, prepare", "model.dropout", "less than 1"],
    ),
]


def test_repository_params_are_valid(default_params: dict) -> None:
    validated = validate(default_params)
    assert set(validated.runs) == set(default_params["runs"])


@pytest.mark.parametrize(
    ("mutate", "expected"), [case[1:] for case in BAD_INPUTS], ids=[case[0] for case in BAD_INPUTS]
)
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


YAML_1_2_SPELLINGS = """\
learning_rate: 1e-4
other_rate: 1.0e-4
flags: [no, off, on, yes, n, true, false]
empty: ~
octal_looking: 010
"""


def test_params_are_read_exactly_as_dvc_reads_them(tmp_path: Path) -> None:
    """YAML 1.2: `1e-4` is a float and `no`/`on` are strings, in our loader as in DVC's own parser."""
    from dvc.utils.serialize import load_yaml

    path = tmp_path / "params.yaml"
    path.write_text(YAML_1_2_SPELLINGS, encoding="utf-8")
    ours = read_yaml(path)
    assert ours == load_yaml(str(path))
    assert ours["learning_rate"] == 1e-4 and isinstance(ours["learning_rate"], float)
    assert ours["flags"] == ["no", "off", "on", "yes", "n", True, False]


def test_a_hand_written_learning_rate_is_accepted(tmp_path: Path) -> None:
    text = (REPO / "params.yaml").read_text(encoding="utf-8")
    edited = text.replace("learning_rate: 1.0e-4", "learning_rate: 1e-4")
    assert edited != text
    (tmp_path / "params.yaml").write_text(edited, encoding="utf-8")
    assert load_params(tmp_path / "params.yaml").models["mlp"].fit.learning_rate == 1e-4


def test_every_profile_gives_valid_params(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A profile is merged with the same loader and validated before params.yaml is replaced."""
    shutil.copytree(REPO / "profiles", tmp_path / "profiles")
    monkeypatch.chdir(tmp_path)
    for name in profiles.available():
        shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
        profiles.apply(name, tmp_path / "params.yaml")
        load_params(tmp_path / "params.yaml")
    (tmp_path / "profiles" / "broken.yaml").write_text("train: {subset_size: 0}\n", encoding="utf-8")
    before = (tmp_path / "params.yaml").read_text(encoding="utf-8")
    with pytest.raises(PipelineError, match=r"with profile broken is invalid:\n  train.subset_size = 0"):
        profiles.apply("broken", tmp_path / "params.yaml")
    assert (tmp_path / "params.yaml").read_text(encoding="utf-8") == before, "params.yaml left as it was"


def test_a_missing_params_file_says_how_to_get_it_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PipelineError, match=r"params\.yaml not found: run from the repository root"):
        load_params(Path("params.yaml"))  # no dvc.yaml here: not the repository's root
    (tmp_path / "dvc.yaml").write_text("stages: {}\n", encoding="utf-8")
    with pytest.raises(PipelineError, match=r"params\.yaml not found: restore it with `git checkout params\.yaml`"):
        load_params(Path("params.yaml"))


@pytest.mark.parametrize(
    ("setting", "named"),
    [("model.dropout=1.5", "model.dropout = 1.5: Input should be less than 1"), ("+model.dropot=0.3", "model.dropot")],
)
def test_the_preview_refuses_what_the_experiment_would_refuse(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, setting: str, named: str
) -> None:
    """`python -m overfit_first preview -S ...` checks the params as every stage would, before DVC's dry run, and
    leaves params.yaml as it was."""
    from dvc.repo import Repo

    from overfit_first.tools import preview

    shutil.copy2(REPO / "params.yaml", tmp_path / "params.yaml")
    (tmp_path / "dvc.yaml").write_text("stages: {}\n", encoding="utf-8")
    Repo.init(tmp_path, no_scm=True).close()
    monkeypatch.chdir(tmp_path)
    before = (tmp_path / "params.yaml").read_bytes()
    with pytest.raises(PipelineError, match=f"-S {re.escape(setting)}: `dvc exp run` would stop at it") as error:
        preview.preview([setting])
    assert named in str(error.value)
    assert (tmp_path / "params.yaml").read_bytes() == before


def test_the_preview_names_the_key_a_misspelled_setting_meant(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """DVC's own error for `-S model.dropot=0.3` says "To append to your config use +model.dropot=0.3": a key every
    stage refuses. The preview names the key params.yaml has instead."""
    from overfit_first.tools import preview

    shutil.copy2(REPO / "params.yaml", tmp_path / "params.yaml")
    (tmp_path / "dvc.yaml").write_text("stages: {}\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(
        PipelineError,
        match=r"-S model\.dropot=0\.3: params\.yaml has no key model\.dropot \(did you mean model\.dropout\?\)",
    ):
        preview.preview(["model.dropot=0.3"])
    with pytest.raises(PipelineError, match=r"has no key models\.mlp\.layers\.1\.Dense\.unit \(did you mean .*units"):
        preview.preview(["models.mlp.layers.1.Dense.unit=3"])  # a list index, as `dvc exp run -S` takes it
    with pytest.raises(PipelineError, match=r"has no key dropout \(did you mean model\.dropout\?\)"):
        preview.preview(["dropout=0.3"])


@pytest.mark.slow  # real git, dvc and a dvc repro that runs
def test_the_preview_says_another_dvc_command_is_running(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess
    import sys
    import time

    from overfit_first.tools import preview

    shutil.copy2(REPO / "params.yaml", tmp_path / "params.yaml")
    stage = {"cmd": "sleep 60 && echo done > out.txt", "params": ["train.seed"], "outs": ["out.txt"]}
    (tmp_path / "dvc.yaml").write_text(f"stages:\n  slow: {stage}\n", encoding="utf-8")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=tmp_path, check=True)
    running = subprocess.Popen(
        [sys.executable, "-m", "dvc", "repro"], cwd=tmp_path, stdout=subprocess.DEVNULL, start_new_session=True
    )
    try:
        lock = tmp_path / ".dvc" / "tmp" / "rwlock"
        deadline = time.monotonic() + 60
        while "out.txt" not in (lock.read_text(encoding="utf-8") if lock.is_file() else ""):
            assert time.monotonic() < deadline and running.poll() is None, "dvc repro never started its stage"
            time.sleep(0.2)
        monkeypatch.chdir(tmp_path)
        running_one = rf"another dvc command is running in this repository \(PID {running.pid}: .*dvc.* repro\)"
        before = (tmp_path / "params.yaml").stat().st_mtime_ns, (tmp_path / "params.yaml").read_bytes()
        for setting in ("train.seed=3", "model.dropout=1.5"):  # valid or not: refused before params.yaml is touched
            with pytest.raises(PipelineError, match=f"{running_one}: .*run the preview again when it has finished"):
                preview.preview([setting])
        assert ((tmp_path / "params.yaml").stat().st_mtime_ns, (tmp_path / "params.yaml").read_bytes()) == before
    finally:
        os.killpg(running.pid, signal.SIGKILL)  # dvc and the stage's sleep
        running.wait()
