"""Helpers for the training and tracking tests: a tiny prepared dataset and a project around it.

The dataset follows the prepared-data contract (overfit_first.data.splits) exactly, so the train stage
reads it as it would read Fashion-MNIST. It is small (a few epochs of a tiny CNN take seconds) and noisy
(a quarter of the labels are wrong), so validation accuracy plateaus near 0.75 and wobbles while the
training accuracy keeps climbing: the best epoch is not simply the last one.
"""

from __future__ import annotations

import copy
import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from overfit_first import layout
from overfit_first.data.splits import Split, file_sha256, save_split

from conftest import default_stop_signals, stage_env, write_params

DATASET = "tiny"
MODEL = "tiny_cnn"
RUN = f"{DATASET}-{MODEL}"
NUM_CLASSES = 3
IMAGE_SHAPE = (32, 32, 1)

TINY_CNN: dict[str, Any] = {
    "role": "other",
    "layer_defaults": {"Conv2D": {"kernel_size": 3, "activation": "relu", "padding": "same"}},
    "layers": [
        {"Conv2D": {"filters": 4}},
        "BatchNormalization",
        "MaxPooling2D",
        {"Dropout": {"rate": "$dropout"}},
        "Flatten",
        {"Dense": {"units": "$num_classes", "activation": "softmax", "dtype": "float32"}},
    ],
    "fit": {"optimizer": "adam", "learning_rate": 0.01, "batch_size": 16, "epochs": 3, "early_stopping": False},
}


def make_images(count: int, seed: int, label_noise: float = 0.0) -> Split:
    """Noisy dark images with a bright 12x12 square at a place given by the class (top-left, top-right,
    bottom); then a fraction `label_noise` of the labels is changed to another class."""
    rng = np.random.default_rng(seed)
    y = np.arange(count, dtype=np.int64) % NUM_CLASSES
    rng.shuffle(y)
    x = rng.integers(0, 60, size=(count, *IMAGE_SHAPE), dtype=np.uint8)
    for index, label in enumerate(y):
        top, left = (2, 2) if label == 0 else (2, 18) if label == 1 else (18, 10)
        x[index, top : top + 12, left : left + 12] = 200
    if label_noise:
        wrong = rng.random(count) < label_noise
        y[wrong] = (y[wrong] + rng.integers(1, NUM_CLASSES, size=wrong.sum())) % NUM_CLASSES
    return Split(x=x, y=y)


def make_prepared(root: Path, counts: tuple[int, int, int] = (160, 64, 32)) -> Path:
    """data/prepared/tiny/{train,valid,test}.npz and summary.json under `root`, as `prepare` writes them."""
    directory = root / "data" / "prepared" / DATASET
    directory.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {
        "image_shape": list(IMAGE_SHAPE),
        "num_classes": NUM_CLASSES,
        "class_names": ["top-left", "top-right", "bottom"],
        "superclass_names": None,
        "splits": {},
    }
    for seed, (split, count) in enumerate(zip(("train", "valid", "test"), counts)):
        data = make_images(count, seed, label_noise=0.25)
        path = directory / f"{split}.npz"
        save_split(path, data)
        summary["splits"][split] = {
            "count": count,
            "class_counts": np.bincount(data.y, minlength=NUM_CLASSES).tolist(),
            "sha256": file_sha256(path),
        }
    (directory / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return directory


def project_params(**fit: Any) -> dict[str, Any]:
    """A params.yaml that passes the pipeline's validation, with one run of the tiny CNN."""
    model = copy.deepcopy(TINY_CNN)
    model["fit"].update(fit)
    model["layer_defaults"]["BatchNormalization"] = {"momentum": "$batchnorm_momentum"}
    return {
        "data": {"datasets": [DATASET], "mirror": None, "image_folders": {DATASET: "data/raw/tiny"}},
        "prepare": {"valid_size": 64, "sample_size": None, "sample_seed": 0, "pad_to": None},
        "model": {"dropout": 0.25},
        # Keras's default momentum (0.99) needs hundreds of steps before the moving statistics used at
        # validation mean anything; these runs take a few dozen.
        "train": {"seed": 0, "subset_size": None, "batchnorm_momentum": 0.5, "mixed_precision": "auto", "xla": "auto"},
        "evaluate": {
            "overfit_train_min": 0.95,
            "overfit_gap_min": 0.1,
            "underfit_train_max": 0.7,
            "still_learning_window": 5,
            "batch_size": 512,
        },
        "models": {MODEL: model},
        "runs": {RUN: {"dataset": DATASET, "model": MODEL, "tuned_by": "model.dropout"}},
    }


def make_project(directory: Path, params: dict[str, Any] | None = None) -> Path:
    """A scratch repository: params.yaml and the tiny prepared dataset."""
    directory.mkdir(parents=True, exist_ok=True)
    write_params(directory, params or project_params())
    make_prepared(directory)
    return directory


def train_env(tracking_uri: str | None = None, **extra: str) -> dict[str, str]:
    """The stage environment: unbuffered output (tests read it live), no inherited DVC or MLflow target."""
    env = stage_env(PYTHONUNBUFFERED="1")
    for key in ("DVC_ROOT", "DVC_EXP_NAME", "MLFLOW_TRACKING_URI"):
        env.pop(key, None)
    if tracking_uri:
        env["MLFLOW_TRACKING_URI"] = tracking_uri
    env.update(extra)
    return env


def start_train(project: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    """`python -m stages.train tiny-tiny_cnn` in `project`, stdout and stderr merged, read line by line."""
    return subprocess.Popen(
        [sys.executable, "-m", "stages.train", RUN],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=default_stop_signals,  # the signals the tests send, heard whatever shell started pytest
    )


def read_metrics(project: Path) -> dict[str, Any]:
    return json.loads((project / layout.train_metrics_file(DATASET, MODEL)).read_text(encoding="utf-8"))


def read_history(project: Path) -> list[dict[str, str]]:
    with (project / layout.history_file(DATASET, MODEL)).open(newline="", encoding="utf-8") as stream:
        return list(csv.DictReader(stream))


def output_paths(project: Path) -> list[Path]:
    """The train stage's outputs, where overfit_first.layout puts them."""
    return [
        project / layout.model_file(DATASET, MODEL),
        project / layout.train_metrics_file(DATASET, MODEL),
        project / layout.history_file(DATASET, MODEL),
    ]


def sqlite_uri(directory: Path) -> str:
    return f"sqlite:///{os.path.abspath(directory / 'mlflow.db')}"
