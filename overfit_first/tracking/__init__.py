"""MLflow, all of it: the train stage's live run, the evaluation, the model registry, `relog`, the UI links.

An observer: nothing here changes an output of a stage, so no stage lists this module among its dvc.yaml deps
(tests/test_dvc_deps.py) and editing it retrains nothing.

Live runs. The train stage hands `LiveRun.callback` to training.fit: the MLflow run opens when training starts
(its duration is the training's), its parameters, tags and dataset inputs are logged at once, each epoch's
metrics as the epoch ends (after the epoch's backup), and MLflow samples CPU, memory and, where pynvml finds
one, GPU use into it (`system/...` metrics, every MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL seconds, default 10).
Once the stage has written its outputs, the best epoch's metrics, the learning curve, the model summary and
the model (signature and input example: float32 images in 0..1, what the model's input layer receives) go
into the same run, which ends FINISHED. The run's id is kept beside the training backup
(.cache/train/<run>/mlflow_run.json), so a resumed training continues its MLflow run.

Best effort. Every MLflow call goes through `best_effort`: a failure is one warning on stderr, never a failed
stage. The live run's calls are made by one background thread, so training never waits for the store; a store
that is down fails that thread's first call (HTTP_DEFAULTS bound it) and the rest are skipped. At the end of
training the stage waits for the thread at most OVERFIT_FIRST_MLFLOW_WAIT seconds (default 30). Whatever was
not logged is logged later from the saved files with

    python -m overfit_first tracking relog <run-name>

once: a model file that a FINISHED run holds already (tags run and model_sha256) is not logged twice.

KILLED. A run cut short by Ctrl-C, SIGTERM or SIGHUP (overfit_first.errors turns them into Interrupted) ends
KILLED, and one ended by an error FAILED. One that its process could not end (SIGKILL, a power cut) is ended as
KILLED by the next logging of the same run name on the same machine, once its process is gone.

Registry. The plot stage calls `register_recommended`: each dataset's recommended model (`recommended`) becomes
a version of the registered model `overfit-first-<dataset>` with the alias `champion`.

Where runs go: MLFLOW_TRACKING_URI when set, else a SQLite store `mlflow.db` in the repository root, with
artifacts in `mlartifacts/` beside it, both absolute paths, so `dvc exp run --queue` or `--temp` (which run the
stage in a copy of the repository under .dvc/tmp/exps/) still logs to the original repository. Every MLflow call
goes to that one store, the registry's included, whatever the working directory (`store_client`).

Model-training view. Experiments are tagged `mlflow.experimentKind = custom_model_development`, what MLflow
3.0-3.x read to open an experiment on its runs rather than on the GenAI overview. MLflow 3.17 reads instead the
per-browser switch "GenAI | Model training" of its sidebar, or `?workflowType=machine_learning` in the URL:
every link this module prints carries that (`links` lists one per experiment; `make mlflow-ui` runs it). It has
no server option or experiment setting for it: its home page, and an experiment opened from its own list, open
the GenAI view until the switch is set once in the browser (`links` says so). Each logged model is named after
its run and carries its params, so the experiment's Models tab lists `fashion_mnist-cnn_simplified`, ...
"""

from __future__ import annotations

# One module per job; the names below are what the stages, the procedure, bench and the tests use, so that
# `from overfit_first import tracking; tracking.live_run(...)` reads as it did when this package was one module.
#   store           where runs go (tracking_uri, store_client, store_lock), best_effort, the experiments
#   ui              links into the UI's model-training view; `links`
#   run_info        a training run's tags and params
#   ownership       which process owns a RUNNING run: orphans ended KILLED, a kept run id resumed
#   datasets        the prepared splits as MLflow dataset inputs
#   artifacts       model summary, the logged model's flavor and requirements (the learning curve: overfit_first.plots)
#   run_log         RunLog: one training's MLflow calls (open, epoch, complete, end)
#   live            LiveRun and its Keras callback: the train stage's run, logged from a background thread
#   relog           a trained run logged afterwards from its files
#   evaluation_log  the evaluate stage's test metrics and charts, into the run that trained the model
#   registry        each dataset's recommended model, registered with the alias `champion`
#   sweeps          a sweep's parent and child runs (sweep_types: what they read of a sweep)
#   __main__        `python -m overfit_first tracking relog|links`
#
# keras (with TensorFlow, about 10 s of CPU to import) is imported only where a model is at hand: the train stage's
# live run and `relog`; so are overfit_first.training, .accelerate and .evaluation, which import it themselves.
# The plot stage, the sweeps and this CLI's `links` import this module without it (tests/test_entry_points.py).
from overfit_first.layout import repo_root
from overfit_first.tracking.datasets import data_origin, split_dataset
from overfit_first.tracking.evaluation_log import log_evaluation
from overfit_first.tracking.live import RUN_ID_FILE, LiveRun, live_run
from overfit_first.tracking.registry import ALIAS, recommended, register_recommended, registered_name
from overfit_first.tracking.relog import log_run, relog
from overfit_first.tracking.run_info import SWEEP_PARENTS, run_tags
from overfit_first.tracking.run_log import RunLog, logged_model_name
from overfit_first.tracking.store import (
    HTTP_DEFAULTS,
    NotTracked,
    best_effort,
    ensure_experiment,
    experiment_name,
    store_client,
    store_lock,
    tracking_uri,
)
from overfit_first.tracking.sweeps import (
    SweepGuard,
    SweepRuns,
    end_abandoned_sweep,
    find_sweep,
    finish_sweep,
    start_sweep,
)
from overfit_first.tracking.ui import UI_URL, links, ui_link

__all__ = [
    "ALIAS",
    "HTTP_DEFAULTS",
    "RUN_ID_FILE",
    "SWEEP_PARENTS",
    "UI_URL",
    "LiveRun",
    "NotTracked",
    "RunLog",
    "SweepGuard",
    "SweepRuns",
    "best_effort",
    "data_origin",
    "end_abandoned_sweep",
    "ensure_experiment",
    "experiment_name",
    "find_sweep",
    "finish_sweep",
    "links",
    "live_run",
    "log_evaluation",
    "log_run",
    "logged_model_name",
    "recommended",
    "register_recommended",
    "registered_name",
    "relog",
    "repo_root",
    "run_tags",
    "split_dataset",
    "start_sweep",
    "store_client",
    "store_lock",
    "tracking_uri",
    "ui_link",
]
