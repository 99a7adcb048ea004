"""Links into the MLflow UI's model-training view: a run's or an experiment's address (`ui_link`), and `links`, which
prints one per overfit-first experiment of a store (`python -m overfit_first tracking links`, `make mlflow-ui`)."""

from __future__ import annotations

from overfit_first.tracking.store import best_effort, store_client

ML_VIEW = "workflowType=machine_learning"
UI_URL = "http://127.0.0.1:5000"  # `make mlflow-ui`
# MLflow 3.17 has no server option or experiment setting for the view (`mlflow.experimentKind` is not read): an
# address without ML_VIEW (its home page, an experiment opened from its own list) opens the view last chosen with
# the sidebar's switch in this browser (localStorage `mlflow.workflowType_v1`), GenAI until it is switched once.
SWITCH_ONCE = (
    "MLflow's home and an experiment opened from its own list show the GenAI view until the sidebar's switch is "
    "set to 'Model training' once in this browser (it remembers); the links above open that view anyway"
)


def ui_link(uri: str, experiment_id: str, run_id: str | None = None) -> str:
    """The experiment's runs (or one run) in the UI's model-training view: the server's own address, or
    `make mlflow-ui`'s for a local store."""
    served = uri.split(":", 1)[0] in ("http", "https")
    page = f"runs/{run_id}" if run_id else "runs"
    link = f"{uri.rstrip('/') if served else UI_URL}/#/experiments/{experiment_id}/{page}?{ML_VIEW}"
    return link if served else f"{link} (`make mlflow-ui`)"


def links(store: str, url: str) -> None:
    """Print each overfit-first experiment of `store` as a link to its runs in the UI's model-training view."""

    def show() -> None:
        experiments = store_client(store).search_experiments(
            filter_string="name LIKE 'overfit-first/%'", order_by=["name"]
        )
        for experiment in experiments:
            print(
                f"{experiment.name}: {url.rstrip('/')}/#/experiments/{experiment.experiment_id}/runs?{ML_VIEW}",
                flush=True,
            )
        if not experiments:
            print(f"no overfit-first experiment in {store} yet: run `dvc repro`", flush=True)
        print(SWITCH_ONCE, flush=True)

    best_effort(show, f"no links to the experiments of {store}")
