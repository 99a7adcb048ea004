"""The article's one-GPU script (overfit_first.tools.article_gpu) end to end on this CPU, with tiny settings.

It runs as on the GPU machine: KERAS_BACKEND=jax, with TensorFlow, DVC and MLflow made unimportable in every
process it starts (a sitecustomize.py on PYTHONPATH installs an import hook that refuses them and records each
attempt), on tiny image-folder archives of CIFAR-10 and CIFAR-100's layout (with hierarchy.csv).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from overfit_first import layout, metrics
from overfit_first.errors import Interrupted, PipelineError
from overfit_first.tools.article_gpu import article_params, orchestrate, parser, work_folder
from overfit_first.tools.article_gpu_worker import BudgetStop

from conftest import REPO, stage_env
from data_fixtures import image_folder, tar_gz

BLOCKED = ("tensorflow", "dvc", "mlflow")
# Probes that ask whether TensorFlow is installed and carry on without it are allowed: Keras' own
# (keras.src.utils.module_utils.LazyModule.available, e.g. when it saves a model) and overfit_first.inputs'
# (_tensorflow: tf.data or NumPy batches). Any other attempt is a failure.
PROBES = (("keras/src/utils/module_utils.py", "available"), ("overfit_first/inputs.py", "_tensorflow"))
BLOCKER = f"""
import importlib.abc, os, sys, traceback

BLOCKED = {BLOCKED!r}


class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            stack = traceback.extract_stack()[:-1]
            probe = any((frame.filename.endswith(file) and frame.name == function) for frame in stack
                        for file, function in {PROBES!r})
            if not probe:
                with open(os.environ["IMPORT_ATTEMPTS"], "a") as stream:
                    stream.write(f"{{os.getpid()}} {{name}}\\n" + "".join(traceback.format_list(stack)) + "\\n")
            raise ModuleNotFoundError(f"blocked by the test: {{name}}", name=name)
        return None


sys.meta_path.insert(0, Block())
"""


# Half of the article's eight runs, one per kind of architecture, on both datasets (each XLA-compiles its own
# model: the other four add only their compile time): the MLP, the overfitting CNN, the simplified CNN of CIFAR-100
# (its 100-class head) and the augmented CNN (its augmentation layers).
TINY_RUNS = ("cifar10-mlp", "cifar10-cnn_overfit", "cifar100-cnn_simplified_c100", "cifar100-cnn_augmented")


def archives(root: Path) -> Path:
    """cifar10-jpeg.tar.gz (10 classes) and cifar100-jpeg.tar.gz (4 classes in 3 superclasses), 32x32 PNGs."""
    folder = root / "archives"
    folder.mkdir()
    image_folder(root / "c10", tuple(f"class{index}" for index in range(10)), 12, 3, (32, 32), top="cifar10")
    tar_gz(root / "c10", folder / "cifar10-jpeg.tar.gz")
    hierarchy = {"apple": "fruit", "bee": "insects", "maple": "trees", "oak": "trees"}
    image_folder(root / "c100", tuple(hierarchy), 30, 3, (32, 32), top="cifar100", hierarchy=hierarchy)
    tar_gz(root / "c100", folder / "cifar100-jpeg.tar.gz")
    return folder


def test_article_params_are_the_article_profile() -> None:
    params = article_params()
    assert len(params["runs"]) == 8
    assert params["train"]["subset_size"] is None and params["prepare"]["valid_size"] == 5000
    assert params["models"]["cnn_augmented"]["fit"]["epochs"] == 300
    tiny = article_params(runs=["cifar10-mlp"], train_images=60, valid_images=20, epochs=2)
    assert list(tiny["runs"]) == ["cifar10-mlp"] and tiny["data"]["datasets"] == ["cifar10"]
    assert tiny["runs"]["cifar10-mlp"]["epochs"] == 2 and tiny["train"]["subset_size"] == 60


@pytest.mark.slow
@pytest.mark.timeout(2200)
def test_tiny_article_on_jax_without_tensorflow(tmp_path: Path) -> None:
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(BLOCKER)
    attempts = tmp_path / "import_attempts.txt"
    out = tmp_path / "out"
    env = stage_env(KERAS_BACKEND="jax", IMPORT_ATTEMPTS=str(attempts))
    env["PYTHONPATH"] = f"{hook}:{env['PYTHONPATH']}"
    command = [sys.executable, "-m", "overfit_first", "article_gpu", "--archives", str(archives(tmp_path))]
    command += ["--out", str(out), "--work", str(tmp_path / "work"), "--minutes", "30", "--parallel", "2"]
    command += ["--train-images", "60", "--valid-images", "20", "--epochs", "2", "--runs", *TINY_RUNS]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=2100)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]

    assert not attempts.exists(), attempts.read_text()[:4000]
    params = article_params(runs=list(TINY_RUNS))
    summary = json.loads((out / "summary.json").read_text())
    assert [row["run"] for row in summary["runs"]] == list(TINY_RUNS)
    table = (out / "summary.md").read_text()
    log = (out / "article.log").read_text()
    for name, entry in params["runs"].items():
        dataset, model = entry["dataset"], entry["model"]
        assert f"| {name} |" in table
        assert f"[{name}] epoch 2/2" in log
        trained = metrics.read(out / layout.published_train_metrics_file(dataset, model), metrics.TrainMetrics, "rerun")
        assert trained.epochs_run == 2 and trained.train_images == 60
        evaluated = metrics.read(out / layout.eval_metrics_file(dataset, model), metrics.EvalMetrics, "rerun")
        assert evaluated.test_images == (30 if dataset == "cifar10" else 12)
        assert len(metrics.read_history(out / layout.published_history_file(dataset, model), "rerun")) == 2
        per_class = json.loads((out / layout.per_class_file(dataset, model)).read_text())
        assert ("superclasses" in per_class) == (dataset == "cifar100")
        assert (evaluated.superclass_test_accuracy is not None) == (dataset == "cifar100")
        status = json.loads((out / "runs" / f"{name}.json").read_text())
        assert status["epochs_done"] == 2 and status["stopped_by"] == "epochs"
        assert status["policy"] == "float32" and status["jit_compile"] is True and status["keras"]
    assert summary["environment"]["device"].startswith("cpu")


def test_budget_stop_ends_training_only_when_the_next_epoch_would_overrun() -> None:
    import keras

    for deadline, stops in ((time.time() - 1, True), (time.time() + 3600, False)):
        model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
        model.stop_training = False
        callback = BudgetStop(deadline)
        callback.set_model(model)
        callback.on_epoch_begin(0)
        callback.on_epoch_end(0)
        assert model.stop_training is stops and callback.stopped is stops
    # After the first epoch (XLA compilation included) only a passed deadline stops; later, the last epoch's length
    # is the forecast of the next one's.
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.stop_training = False
    callback = BudgetStop(time.time() + 1.0)
    callback.set_model(model)
    callback.on_epoch_begin(0)
    time.sleep(0.6)
    callback.on_epoch_end(0)
    assert not model.stop_training
    callback.on_epoch_begin(1)
    time.sleep(0.3)
    callback.on_epoch_end(1)
    assert model.stop_training and callback.stopped
    model.stop_training = True  # early stopping ended it first: not the budget's doing
    callback = BudgetStop(time.time() - 1)
    callback.set_model(model)
    callback.on_epoch_begin(0)
    callback.on_epoch_end(0)
    assert not callback.stopped


# ------------------------------------------------------------------------------------------- the work folder


@pytest.fixture
def system_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The system's temporary directory (TMPDIR, which tempfile reads once and keeps), here an empty folder."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def test_the_temporary_work_folder_is_removed_on_every_way_out(tmp_path: Path, system_tmp: Path) -> None:
    out = tmp_path / "out"
    (out / "metrics").mkdir(parents=True)

    def use(work: Path) -> None:
        (work / "data" / "prepared").mkdir(parents=True)
        (work / "data" / "prepared" / "train.npz").write_bytes(b"images" * 1000)
        (work / "metrics").symlink_to(out / "metrics", target_is_directory=True)  # as orchestrate links it
        (out / "metrics" / "result.json").write_text("{}")

    with work_folder(None) as work:
        assert work.parent == system_tmp
        use(work)
    assert list(system_tmp.iterdir()) == [] and (out / "metrics" / "result.json").is_file()
    for stop in (PipelineError("a run failed"), Interrupted(signal.SIGTERM), KeyboardInterrupt()):
        with pytest.raises(type(stop)), work_folder(None) as work:
            use(work)
            raise stop
        assert list(system_tmp.iterdir()) == [], f"left behind after {type(stop).__name__}"
    with work_folder(str(tmp_path / "kept")) as work:  # --work: the user's folder, kept
        use(work)
    assert (tmp_path / "kept" / "data" / "prepared" / "train.npz").is_file()


def test_a_failed_tiny_run_leaves_nothing_in_the_temporary_directory(tmp_path: Path, system_tmp: Path) -> None:
    """`--tiny` stopped by an error once its work folder exists (params.json written, metrics linked)."""
    (tmp_path / "archives").mkdir()
    args = parser().parse_args(["--tiny", "--archives", str(tmp_path / "archives"), "--out", str(tmp_path / "out")])
    with pytest.raises(PipelineError, match="no archive of cifar10"):
        orchestrate(args)
    assert list(system_tmp.iterdir()) == []
    assert "(removed at the end)" in (tmp_path / "out" / "article.log").read_text()
