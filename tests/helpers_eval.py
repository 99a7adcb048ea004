"""Helpers for the evaluation, plot, report and browser tests: a tiny dataset with superclasses, two tiny
models trained on it for real (an overfitting one and a simplified one, with dropout), and a git + DVC
project that runs the repository's own evaluate, plot and report stages on them with `dvc repro`.

Training is done once per test session (tiny_trained) and copied by each test that changes files.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from overfit_first import training
from overfit_first.config import validate
from overfit_first.data.splits import Split, file_sha256, load_split, save_split

from conftest import REPO, built_once, stage_env, write_params
from helpers_train import DATASET, IMAGE_SHAPE, NUM_CLASSES, TINY_CNN, make_images

CLASS_NAMES = ["top-left", "top-right", "bottom"]
SUPERCLASS_NAMES = ["top", "bottom"]
SUPERCLASS_OF = np.array([0, 0, 1])  # class id -> superclass id
MODELS = {"tiny_overfit": "overfit", "tiny_simplified": "simplified"}
RUNS = {f"{DATASET}-{model}": model for model in MODELS}
OVERFIT_RUN, SIMPLIFIED_RUN = RUNS
COUNTS = (150, 60, 45)  # train, valid, test
LABEL_NOISE = 0.2  # fraction of validation and test labels moved to the next class
PIPELINE_STAGES = ("evaluate", "plot", "report")


def make_prepared(root: Path) -> Path:
    """data/prepared/tiny/ with coarse labels (top: classes 0 and 1, bottom: class 2), as `prepare` writes it,
    and noisy validation and test labels."""
    directory = root / "data" / "prepared" / DATASET
    directory.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {
        "image_shape": list(IMAGE_SHAPE),
        "num_classes": NUM_CLASSES,
        "class_names": CLASS_NAMES,
        "superclass_names": SUPERCLASS_NAMES,
        "splits": {},
    }
    for seed, (split, count) in enumerate(zip(("train", "valid", "test"), COUNTS)):
        images = make_images(count, seed)
        labels = images.y.copy()
        if split != "train":  # label noise no model can learn: accuracies below 1 and a real gap to judge
            flip = np.random.default_rng(seed + 10).random(count) < LABEL_NOISE
            labels[flip] = (labels[flip] + 1) % NUM_CLASSES
        path = directory / f"{split}.npz"
        save_split(path, Split(images.x, labels, SUPERCLASS_OF[labels]))
        summary["splits"][split] = {"count": count, "sha256": file_sha256(path)}
    (directory / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return directory


def repo_evaluate_section() -> dict[str, Any]:
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    if "evaluate" not in params:
        pytest.fail(
            "params.yaml has no `evaluate` section: add it (docs/pipeline.md, 'Evaluation, comparison and report')"
        )
    return params["evaluate"]


def project_params() -> dict[str, Any]:
    """Valid params.yaml: the two tiny models, one run each, and the repository's `evaluate` section."""
    models = {}
    for model, role in MODELS.items():
        spec = copy.deepcopy(TINY_CNN)
        spec["role"] = role
        if role == "overfit":  # the same net without its dropout layer
            spec["layers"] = [layer for layer in spec["layers"] if not (isinstance(layer, dict) and "Dropout" in layer)]
        spec["fit"].update(epochs=4, learning_rate=0.02)
        models[model] = spec
    return {
        "data": {"datasets": [DATASET], "mirror": None, "image_folders": {DATASET: "data/raw/tiny"}},
        "prepare": {"valid_size": COUNTS[1], "sample_size": None, "sample_seed": 0, "pad_to": None},
        "model": {"dropout": 0.25},
        "train": {"seed": 0, "subset_size": None, "batchnorm_momentum": None, "mixed_precision": "auto", "xla": "auto"},
        "models": models,
        "runs": {run: {"dataset": DATASET, "model": model, "tuned_by": "model.dropout"} for run, model in RUNS.items()},
        "evaluate": repo_evaluate_section(),
    }


def train_into(project: Path, params: dict[str, Any]) -> None:
    """Train every run of `params` for real and write what the train stage writes (overfit_first.layout)."""
    directory = project / "data" / "prepared" / DATASET
    train, valid = load_split(directory, "train"), load_split(directory, "valid")
    with contextlib.chdir(project):  # the training cache and the outputs are relative to the project
        for name in params["runs"]:
            run = validate(params).run(name)
            training.write_outputs(run, training.fit(run, train, valid, NUM_CLASSES))


def tiny_trained(factory: pytest.TempPathFactory) -> Path:
    """A project with the tiny data and both models trained: built once per test run (conftest.built_once),
    never modified."""

    def build(project: Path) -> str:
        params = project_params()
        write_params(project, params)
        make_prepared(project)
        train_into(project, params)
        return str(project)

    return Path(built_once(factory, "tiny-trained", build))


def copy_project(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def stage_env_for(tracking_uri: str) -> dict[str, str]:
    env = stage_env(PYTHONUNBUFFERED="1", MLFLOW_TRACKING_URI=tracking_uri)
    for key in ("DVC_ROOT", "DVC_EXP_NAME"):
        env.pop(key, None)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def git(project: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", "-c", "user.name=test", "-c", "user.email=test@example.com", *args],
        cwd=project,
        check=True,
        capture_output=True,
        text=True,
    )
    return result.stdout


def dvc(project: Path, *args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).parent / "dvc"), *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def pipeline_yaml() -> dict[str, Any]:
    """The repository's own evaluate, plot and report stages (train is replaced by the files train_into wrote)."""
    definition = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))
    missing = [name for name in PIPELINE_STAGES if name not in definition.get("stages", {})]
    if missing:
        pytest.fail(
            f"dvc.yaml has no stage {', '.join(missing)}: add them "
            "(docs/pipeline.md, 'Evaluation, comparison and report')"
        )
    return {"stages": {name: definition["stages"][name] for name in PIPELINE_STAGES}}


def dvc_project(source: Path, target: Path) -> Path:
    """A git + DVC repository around a copy of `source`, with the code and the pipeline stages of this repository."""
    project = copy_project(source, target)
    for name in ("stages", "overfit_first"):
        shutil.copytree(REPO / name, project / name, ignore=shutil.ignore_patterns("__pycache__"))
    (project / "dvc.yaml").write_text(yaml.safe_dump(pipeline_yaml(), sort_keys=False), encoding="utf-8")
    git(project, "init", "-q")
    subprocess.run([str(Path(sys.executable).parent / "dvc"), "init", "-q"], cwd=project, check=True)
    if (REPO / ".dvc" / "plots").is_dir():  # custom plot templates
        shutil.copytree(REPO / ".dvc" / "plots", project / ".dvc" / "plots")
    return project


def tiny_reproduced(factory: pytest.TempPathFactory) -> Path:
    """tiny_trained after a real `dvc repro` of evaluate, plot and report: built once per session."""

    def build(directory: Path) -> str:
        shutil.rmtree(directory)  # dvc_project copies into a directory of its own
        project = dvc_project(tiny_trained(factory), directory)
        result = dvc(project, "repro", env=stage_env_for(unreachable_tracking_uri()))
        assert result.returncode == 0, result.stdout + result.stderr
        (project / "repro.log").write_text(result.stdout + result.stderr, encoding="utf-8")
        return str(project)

    return Path(built_once(factory, "tiny-reproduced", build))


def unreachable_tracking_uri() -> str:
    """A tracking server address where nothing listens: tracking must warn and let the stages pass."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
