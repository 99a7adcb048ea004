"""The entry points that never train nor load a model start without TensorFlow and Keras.

Importing them costs about 11 s of CPU per process on a 2-core machine: before, every one of these paid it,
because overfit_first.tracking imported keras and mlflow.keras at its top. It imports keras now only where a
model is at hand (the train stage's live run, `relog`).
"""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO, stage_env

# `python -m` modules that do not need Keras (stages.train, stages.evaluate, overfit_first.sanity and
# overfit_first.article_gpu do).
WITHOUT_KERAS = (
    "stages.plot",
    "stages.report",
    "overfit_first.tracking",
    "overfit_first.ladder",
    "overfit_first.data_curve",
    "overfit_first.seed_spread",
    "overfit_first.pr_comment",
    "overfit_first.plots_html",
    "overfit_first.profiles",
    "overfit_first.pipelines",
)


def test_entry_points_without_a_model_import_neither_tensorflow_nor_keras() -> None:
    code = (
        f"import {', '.join(WITHOUT_KERAS)}; import sys; "
        "print([name for name in ('tensorflow', 'keras') if name in sys.modules])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=stage_env(), capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", f"imported: {result.stdout.strip()}"
