"""The train stage's live run: LiveRun, whose Keras callback (`callback`, for training.fit) hands every MLflow call
to one background thread so that training never waits for the store, and `live_run`, which ends the run KILLED or
FAILED when training is interrupted or fails."""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from overfit_first.config import Run
from overfit_first.layout import repo_root
from overfit_first.tracking.run_log import RunLog
from overfit_first.tracking.store import best_effort, experiment_name, store_client, store_lock, tracking_uri
from overfit_first.tracking.ui import ui_link

# keras is imported only where a model is at hand (overfit_first.tracking, tests/test_entry_points.py).
if TYPE_CHECKING:
    import keras

WAIT_VARIABLE = "OVERFIT_FIRST_MLFLOW_WAIT"  # seconds the end of a train stage waits for its MLflow logging
WAIT_DEFAULT = 30.0
STOP_WAIT = 5.0  # seconds an interrupted stage gives the logging thread to end the run itself
RUN_ID_FILE = "mlflow_run.json"  # in training.cache_dir(run), beside the backup


class LiveRun:
    """The observer of one training: `callback` for training.fit, and the MLflow run behind it.

    Every MLflow call runs in one background thread, in order, each through `best_effort`: the first failure
    prints the one warning and the later calls are skipped. Use it through `live_run`, which ends the run
    KILLED or FAILED when training is interrupted or fails; `finish` ends it FINISHED.
    """

    def __init__(self, run: Run, summary: dict[str, Any], example: np.ndarray) -> None:
        from overfit_first import training
        from overfit_first.accelerate import is_chief

        self.run = run
        root = repo_root()
        self.uri = tracking_uri(root)
        self.log = RunLog(run, summary, self.uri, root, example)
        self.enabled = is_chief()  # the other workers of TF_CONFIG train the same model: one run is enough
        self.id_file = training.cache_dir(run) / RUN_ID_FILE
        self.tasks: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self.done = threading.Event()  # the thread has left: every task it will ever run has run
        self.failed = False  # after the first failure, the thread skips every later call
        self.warned = threading.Event()  # one warning per run, whichever thread fails first
        self.closed = False
        self.thread: threading.Thread | None = None
        self.callback = live_callback_class()(self)
        self.consequence = (
            f"run {run.name} is missing or incomplete in {self.uri} (training is not affected). Once the tracking "
            f"store is back and the stage has written {run.model_path}, {run.train_metrics_path} and "
            f"{run.history_path}, log them with `python -m overfit_first tracking relog {run.name}`"
        )

    def start(self) -> None:
        """Open the run now (training starts): a new one, or the one of the backup this training resumes."""
        if not self.enabled or self.thread is not None:
            return
        start_ms = int(time.time() * 1000)
        resume = self.resume_id()
        self.submit(lambda: self.log.open(start_ms, resume, on_id=self.keep_id, system_metrics=True))
        self.thread = threading.Thread(target=self.work, name="mlflow-live-run", daemon=True)
        self.thread.start()

    def resume_id(self) -> str | None:
        """The run id kept beside the backup (training.fit has already discarded a backup that does not belong
        to this training, and the id with it). RunLog.open continues that run if the store holds it: a run id
        is unique across stores, and one store may have several addresses (a proxy, localhost or 127.0.0.1)."""
        try:
            kept = json.loads(self.id_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return kept.get("run_id") if isinstance(kept, dict) else None

    def keep_id(self, run_id: str) -> None:
        # The cache is gone once the stage has written its outputs (a very slow store): nothing to resume then.
        with contextlib.suppress(OSError):
            self.id_file.write_text(json.dumps({"run_id": run_id, "tracking_uri": self.uri}), encoding="utf-8")

    def epoch(self, number: int, logs: dict[str, Any]) -> None:
        row = {
            "epoch": number,
            "train_accuracy": logs.get("accuracy", math.nan),
            "val_accuracy": logs.get("val_accuracy", math.nan),
            "train_loss": logs.get("loss", math.nan),
            "val_loss": logs.get("val_loss", math.nan),
        }
        timestamp = int(time.time() * 1000)
        self.submit(lambda: self.log.epoch(row, timestamp))

    def submit(self, task: Callable[[], None]) -> None:
        if self.enabled:
            self.tasks.put(task)

    def work(self) -> None:
        while (task := self.tasks.get()) is not None:
            if self.failed:
                continue
            if not best_effort(lambda task=task: self.locked(task), self.consequence, self.warned):
                self.failed = True
                if self.log.run_id is not None:  # opened, then failed: it must not stay RUNNING
                    best_effort(lambda: self.log.end("FAILED"), None)
        self.done.set()

    def locked(self, task: Callable[[], None]) -> None:
        with store_lock(self.uri):  # per call, not per run: parallel trainings log side by side
            task()

    def finish(self, model: keras.Model) -> bool:
        """After the stage wrote its outputs: log them into the run, end it FINISHED; True when all was logged.

        Waits for the logging thread OVERFIT_FIRST_MLFLOW_WAIT seconds at most (default 30); past that, one
        warning, and the run is ended FAILED if the store answers.
        """
        if not self.enabled:
            print(f"{self.run.name}: not logged to MLflow: this is not the chief worker of TF_CONFIG", flush=True)
            return True
        self.start()  # no-op unless training never started (a backup of a finished training)
        self.submit(lambda: self.log.complete(model))
        self.submit(lambda: self.log.end("FINISHED"))
        self.close()
        wait = float(os.environ.get(WAIT_VARIABLE) or WAIT_DEFAULT)
        if not self.done.wait(wait):
            self.failed = True

            def timed_out() -> None:
                raise TimeoutError(f"no answer within {wait:g} s, {WAIT_VARIABLE}")

            best_effort(timed_out, self.consequence, self.warned)
            self.end_directly("FAILED")
            return False
        if self.failed:
            return False
        link = ui_link(self.uri, str(self.log.experiment_id), self.log.run_id)
        print(
            f"{self.run.name}: logged to MLflow run {self.log.run_id} in experiment {experiment_name(self.run)} "
            f"at {self.uri}; see {link}",
            flush=True,
        )
        return True

    def abort(self, status: str) -> None:
        """End the run as `status` (KILLED, FAILED) so that it never stays RUNNING: by the logging thread when it
        gets to it within STOP_WAIT seconds, else directly (the thread's call may be the one hanging)."""
        if self.thread is None or self.done.is_set():
            return
        if not self.closed:
            self.submit(lambda: self.log.end(status))
            self.close()
            if self.done.wait(STOP_WAIT):
                return
        self.failed = True  # the thread skips whatever is still queued (the end of `finish`, say)
        self.end_directly(status)

    def close(self) -> None:
        """No task after this: the thread leaves once it has run the queued ones."""
        self.tasks.put(None)
        self.closed = True

    def end_directly(self, status: str) -> None:
        run_id = self.log.run_id
        if run_id is not None:
            best_effort(lambda: store_client(self.uri).set_terminated(run_id, status), None)


@functools.cache
def live_callback_class() -> type[keras.callbacks.Callback]:
    """LiveCallback, defined at its first use: its base class is Keras', which this module imports only there."""
    import keras

    class LiveCallback(keras.callbacks.Callback):
        """Keras' side of LiveRun: epoch-level hooks only (a batch-level hook would slow every training step),
        each through `best_effort`, so that nothing here can stop training."""

        def __init__(self, live: LiveRun) -> None:
            super().__init__()
            self.live = live

        def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
            best_effort(self.live.start, self.live.consequence, self.live.warned)

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            best_effort(lambda: self.live.epoch(epoch + 1, logs or {}), self.live.consequence, self.live.warned)

    return LiveCallback


@contextlib.contextmanager
def live_run(run: Run, summary: dict[str, Any], example: np.ndarray) -> Iterator[LiveRun]:
    """A LiveRun for the train stage; its MLflow run ends KILLED when a stop signal (or Ctrl-C) interrupts the
    block, FAILED when an error does. `example`: one or more prepared images (uint8), the model's input example."""
    live = LiveRun(run, summary, example)
    try:
        yield live
    except KeyboardInterrupt:  # errors.Interrupted too: SIGTERM and SIGHUP
        live.abort("KILLED")
        backup = live.id_file.parent / "backup"
        if backup.is_dir():
            print(
                f"{run.name}: its last completed epoch is backed up in {backup.parent}: the same command "
                "(`dvc repro`) resumes from it",
                file=sys.stderr,
                flush=True,
            )
        raise
    except BaseException:
        live.abort("FAILED")
        raise
