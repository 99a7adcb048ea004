"""The `dvc plots` page in a real headless Chromium (Debian's `chromium`, driven by Playwright): every chart
renders with the network cut off, and no console error. DVC's own page, which loads its libraries from a
CDN, stays blank in the same browser: the reason for overfit_first.tools.plots_html."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from overfit_first import plots

from conftest import REPO, run_stage
from helpers_eval import dvc, stage_env_for, tiny_reproduced, unreachable_tracking_uri

pytestmark = pytest.mark.slow  # real dvc, git, MLflow or a browser in every test

CHROMIUM = shutil.which("chromium")
DATA_PLOTS = 5  # per evaluated run its confusion matrix and validation accuracy per epoch; the runs' overlay
IMAGE_PLOTS = len(plots.PNG_FILES)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if CHROMIUM is None:
        pytest.fail("chromium not found: install Debian's package (scripts/setup.sh --dev does)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


def open_offline(browser: Browser, page_file: Path) -> tuple[Page, list[str], list[str]]:
    """Open a local page with every non-file request refused; returns the page, its errors and the refused URLs."""
    page = browser.new_page()
    errors: list[str] = []
    refused: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))

    def only_local(route) -> None:  # noqa: ANN001 - playwright's Route
        if route.request.url.startswith("file://"):
            route.continue_()
        else:
            refused.append(route.request.url)
            route.abort()

    page.route("**/*", only_local)
    page.goto(page_file.as_uri(), wait_until="load")
    return page, errors, refused


def test_offline_page_renders_every_chart(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, browser: Browser
) -> None:
    project = tiny_reproduced(tmp_path_factory)
    out = tmp_path / "page"
    result = run_stage(
        "overfit_first",
        "plots_html",
        "show",
        "-o",
        str(out),
        "--node-modules",
        str(REPO / "js" / "node_modules"),
        cwd=project,
        env=stage_env_for(unreachable_tracking_uri()),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    page, errors, refused = open_offline(browser, out / "index.html")

    page.wait_for_function(
        f"document.querySelectorAll('.vega-embed canvas, .vega-embed svg').length >= {DATA_PLOTS}", timeout=20_000
    )
    assert page.locator(".vega-embed").count() == DATA_PLOTS
    # A drawn chart has ink: count the canvas pixels that are not transparent.
    inked = page.evaluate("""() => [...document.querySelectorAll('.vega-embed canvas')].map(canvas => {
        const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
        let ink = 0;
        for (let i = 3; i < pixels.length; i += 4) if (pixels[i] > 0) ink++;
        return ink; })""")
    assert len(inked) == DATA_PLOTS and min(inked) > 1000, inked
    widths = page.evaluate("() => [...document.images].map(image => image.naturalWidth)")
    assert len(widths) == IMAGE_PLOTS and min(widths) > 0, widths
    assert errors == [] and refused == [], (errors, refused)


def test_dvc_own_page_is_blank_offline(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, browser: Browser
) -> None:
    project = tiny_reproduced(tmp_path_factory)
    result = dvc(project, "plots", "show", "-o", str(tmp_path / "page"), env=stage_env_for(unreachable_tracking_uri()))
    assert result.returncode == 0, result.stderr
    page, errors, refused = open_offline(browser, tmp_path / "page" / "index.html")
    page.wait_for_load_state("networkidle")
    assert any("cdn.jsdelivr.net" in url for url in refused)
    assert any("vegaEmbed is not defined" in error for error in errors), errors
    assert page.locator(".vega-embed canvas, .vega-embed svg").count() == 0
