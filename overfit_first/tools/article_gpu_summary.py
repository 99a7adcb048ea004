"""The summary of the article's GPU script (overfit_first.tools.article_gpu): out/summary.json and out/summary.md, one
row per run beside the article's reported numbers (overfit_first.article, the one table of them).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from overfit_first import article, atomic, layout, metrics

# The article reports cnn_augmented at its last epoch (300 of 300, no early stopping), not at a best epoch, so
# overfit_first.article, which holds best-epoch numbers only, has none for it; the summary shows the epoch the
# article reports each run at, so this run's are added here (../shared/ARTICLE.md: "epoch 300: train 0.690, val 0.553").
AT_LAST_EPOCH = {
    ("CIFAR-100", "cnn_augmented"): article.Reported(train=0.690, val=0.553, test=None, epoch=300, total_epochs=300)
}


def reported(dataset: str, model: str) -> dict[str, Any] | None:
    """What the article reports for `model` on `dataset` (one of our dataset names): the epoch it reports at, and its
    train, validation and test accuracy (None where it gives none); None for a run the article did not make."""
    paper = AT_LAST_EPOCH.get((article.ARTICLE_DATASETS.get(dataset, ""), model)) or article.reported(dataset, model)
    if paper is None:
        return None
    return {"epoch": paper.epoch, "train_accuracy": paper.train, "val_accuracy": paper.val, "test_accuracy": paper.test}


def summarize(
    out: Path,
    params: dict[str, Any],
    outcomes: dict[str, str],
    prepared: dict[str, dict[str, Any]],
    seconds: float,
) -> list[dict[str, Any]]:
    """out/summary.json and out/summary.md: one row per run (its status file and evaluated metrics) beside
    the article's numbers. `outcomes` says why a run may lack its files (killed, failed, not started).
    Returns the rows; `status` is 'ok' for a run with its files, else its outcome."""
    rows = []
    for name, entry in params["runs"].items():
        dataset, model = entry["dataset"], entry["model"]
        status_path = out / "runs" / f"{name}.json"
        status = json.loads(status_path.read_text()) if status_path.is_file() else {}
        article_epochs = params["models"][model]["fit"]["epochs"]
        row: dict[str, Any] = {
            "run": name,
            "dataset": dataset,
            "model": model,
            "epochs_article": article_epochs,
            "epochs_planned": min(article_epochs, entry.get("epochs") or article_epochs),
            **status,
        }
        eval_path = out / layout.eval_metrics_file(dataset, model)
        if status and eval_path.is_file():
            row["status"] = "ok"
            row["metrics"] = metrics.read(
                eval_path, metrics.EvalMetrics, "python -m overfit_first article_gpu"
            ).model_dump()
        else:
            row["status"] = outcomes.get(name, "not run")
        paper = reported(dataset, model)
        if paper:
            row["article"] = paper
        rows.append(row)
    environment = next(({k: row[k] for k in ("device", "jax", "keras", "policy")} for row in rows if "jax" in row), {})
    document = {
        "seconds": round(seconds, 1),
        "environment": environment,
        "data": {
            name: {k: v for k, v in summary.items() if k in ("source", "splits", "seconds")}
            for name, summary in prepared.items()
        },
        "runs": rows,
    }
    atomic.write_json(out / "summary.json", document)
    atomic.write_text(out / "summary.md", _markdown(document))
    return rows


def _number(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _markdown(document: dict[str, Any]) -> str:
    env = document["environment"]
    lines = [
        "# The article's runs on one GPU (python -m overfit_first article_gpu)",
        "",
        f"{env.get('device', 'device unknown')}; jax {env.get('jax', '?')}, keras {env.get('keras', '?')}, policy "
        f"{env.get('policy', '?')}, XLA. Wall clock {document['seconds']:.0f} s in all.",
        "",
        "Accuracies: train/val of the training log at the best epoch (train with dropout on, as the article "
        "reports it); test and the gap (train - val, both in inference mode) from the saved best epoch. "
        "Epoch seconds include validation; the first epoch also includes XLA compilation.",
        "",
        "| run | epochs done / planned (article) | stopped by | best epoch | s/epoch (first) | ms/step | train | val "
        "| test | gap | verdict | article: epoch, train, val, test |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in document["runs"]:
        found = row.get("metrics") or {}
        article = row.get("article") or {}
        reported = ", ".join(
            _number(article.get(key)) for key in ("epoch", "train_accuracy", "val_accuracy", "test_accuracy")
        )
        superclass = found.get("superclass_test_accuracy")
        test = _number(found.get("test_accuracy")) + (f" (superclass {superclass:.3f})" if superclass else "")
        lines.append(
            f"| {row['run']} | {_number(row.get('epochs_done'))} / {_number(row.get('epochs_planned'))} "
            f"({_number(row.get('epochs_article'))}) "
            f"| {row.get('stopped_by', row['status'])} | {_number(found.get('best_epoch'))} "
            f"| {_number(row.get('median_epoch_seconds'), 2)} ({_number(row.get('first_epoch_seconds'), 1)}) "
            f"| {_number(row.get('ms_per_step'), 1)} | {_number(found.get('train_accuracy'))} "
            f"| {_number(found.get('val_accuracy'))} | {test} | {_number(found.get('gap'))} "
            f"| {found.get('verdict', row['status'])} | {reported or '-'} |"
        )
    data = document["data"]
    if data:
        lines += ["", "Data: " + "; ".join(f"{name} from {d['source']} ({d['seconds']} s)" for name, d in data.items())]
    return "\n".join(lines) + "\n"
