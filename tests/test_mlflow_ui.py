"""The MLflow UI as a user opens it, in a real headless Chromium (Debian's `chromium`, driven by Playwright)
against a real `mlflow server`: a trained run's experiment opens on its runs in the model-training view (not
on the GenAI overview), the runs list shows the run, its datasets and its metrics, and the run's page draws
the per-epoch validation-accuracy curve. The screenshots are kept under the test's tmp_path."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from conftest import run_stage
from helpers_train import DATASET, RUN, make_project, project_params, train_env

pytestmark = pytest.mark.slow  # a real MLflow server, training and a browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ML_VIEW = "workflowType=machine_learning"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).is_file():
        pytest.fail("chromium not found: install Debian's package (scripts/setup.sh --dev does)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


def shot(page: Page, path: Path) -> str:
    """The page's text, once its screenshot is saved to `path`."""
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000, f"{path} looks blank"
    return page.inner_text("body")


def test_a_trained_run_in_the_ui(tmp_path: Path, mlflow_server: str, browser: Browser) -> None:
    project = make_project(tmp_path / "project", project_params(epochs=5))
    trained = run_stage("stages.train", RUN, cwd=project, env=train_env(mlflow_server))
    assert trained.returncode == 0, trained.stderr
    links = run_stage(
        "overfit_first.tracking", "links", "--url", mlflow_server, cwd=project, env=train_env(mlflow_server)
    )
    assert links.returncode == 0, links.stderr
    # What the user is given to open: the experiment's link (`make mlflow-ui`) and the run's (the train stage).
    experiment_link = re.search(rf"overfit-first/{DATASET}: (\S+)", links.stdout).group(1)
    run_link = re.search(r"logged to MLflow run .*; see (\S+)", trained.stdout).group(1)
    assert experiment_link.endswith(f"/runs?{ML_VIEW}") and run_link.endswith(f"?{ML_VIEW}")
    summary = json.loads((project / "data" / "prepared" / DATASET / "summary.json").read_text())
    digest = summary["splits"]["train"]["sha256"][:10]

    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    page.goto(experiment_link)
    page.get_by_text(f"{DATASET}-train ({digest})").first.wait_for(timeout=60_000)
    text = shot(page, tmp_path / "runs.png")
    assert "/runs" in page.url and "/overview" not in page.url, page.url
    assert "Token Usage" not in text and "Detect Issues" not in text, "the GenAI overview, not the runs"
    for expected in (RUN, "Duration", "Dataset", f"{DATASET}-valid", "Training", f"python -m stages.train {RUN}"):
        assert expected in text, expected

    page.goto(f"{experiment_link}&compareRunsMode=CHART")  # the same list with a chart per metric
    page.get_by_text("best_val_accuracy", exact=True).first.wait_for(timeout=60_000)
    text = shot(page, tmp_path / "runs_charts.png")
    for expected in ("Model metrics", "best_val_accuracy", "epochs_run", "System metrics", RUN):
        assert expected in text, expected

    page.goto(run_link.replace(f"?{ML_VIEW}", f"/model-metrics?{ML_VIEW}"))
    page.get_by_placeholder("Search metric charts").fill("val_accuracy")
    page.get_by_text(f"{RUN} (val_accuracy)").first.wait_for(timeout=60_000)  # the legend of a per-step curve
    text = shot(page, tmp_path / "run_metrics.png")
    assert "Step" in text and "val_accuracy" in text
    assert page.locator(".js-plotly-plot path.js-line").count() >= 1, "a drawn line"
    page.close()
