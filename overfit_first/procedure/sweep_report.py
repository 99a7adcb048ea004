"""A sweep's report (overfit_first.procedure.sweep): the Markdown table, the failed experiments' logs, the results json
and its inverse (what --rejudge reads back), the chart, and the report directory written whole.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from overfit_first import atomic, layout
from overfit_first.errors import PipelineError
from overfit_first.procedure.sweep import METRICS, SHORT, Stat, Step, StepResult, StepResults


def table(rows: StepResults, key: str, extra: dict[str, str] | None = None) -> str:
    """A Markdown table: per step train, validation, test accuracy, gap (mean and range), verdicts, `extra`."""
    head = f"| {key} | train | validation | test | gap | verdicts |" + (" |" if extra else "")
    lines = [
        head.replace(" | |", " | note |") if extra else head,
        "|---|--:|--:|--:|--:|---|" + ("---|" if extra else ""),
    ]
    for row in rows:
        note = f" {(extra or {}).get(row.step.label, '')} |" if extra is not None else ""
        if not row.ok:
            lines.append(f"| {row.step.label} | failed | | | | {', '.join(row.failed)} |{note}")
            continue
        cells = [row.stats[metric].text() for metric in METRICS]
        verdicts = ", ".join(row.verdicts) + (f"; failed: {', '.join(row.failed)}" if row.failed else "")
        lines.append(f"| {row.step.label} | {' | '.join(cells)} | {verdicts} |{note}")
    return "\n".join(lines)


def failures_markdown(failed: dict[str, str]) -> str:
    if not failed:
        return ""
    parts = ["## Failed experiments\n"]
    for name, tail in failed.items():
        parts.append(f"`{name}` failed; the last lines of `dvc queue logs {name}`:\n\n```\n{tail}\n```\n")
    return "\n".join(parts)


def results_json(results: dict[str, StepResults]) -> dict[str, Any]:
    return {
        run: [
            {
                "step": row.step.label,
                "value": row.step.value,
                "status": "failed" if not row.ok else "ok",
                "metrics": {SHORT[m]: stat.to_dict() for m, stat in row.stats.items()},
                "verdicts": row.verdicts,
                "failed_experiments": row.failed,
            }
            for row in rows
        ]
        for run, rows in results.items()
    }


def results_from_json(runs: Any, source: str = "the report's json") -> dict[str, StepResults]:
    """The inverse of results_json: {run: [StepResult per step]} from a report json's "runs". A Step gets the
    recorded label and value, and x = float(value) when every value of its run is a number, else None (categorical:
    augmentation off/on); as_is, how a step was queued, is not recorded (False). PipelineError naming `source` and
    the key when one is missing or odd (not a list, a string, a finite number where one is due)."""
    long_names = {short: metric for metric, short in SHORT.items()}
    kinds = {str: "string", list: "list", dict: "mapping"}

    def odd(where: str, what: str) -> PipelineError:
        return PipelineError(
            f"{source}: {where} {what}; restore the file (`git checkout -- {source}`) or write the report again "
            "(run the sweep, or --collect)"
        )

    def get(node: Any, key: str, kind: type, where: str) -> Any:
        if not isinstance(node, dict) or key not in node:
            raise odd(where, f"has no key {key!r}")
        if not isinstance(node[key], kind):
            raise odd(f"{where}.{key}", f"is {node[key]!r}, not a {kinds[kind]}")
        return node[key]

    def strings(node: Any, key: str, where: str) -> list[str]:
        for index, text in enumerate(texts := get(node, key, list, where)):
            if not isinstance(text, str):
                raise odd(f"{where}.{key}[{index}]", f"is {text!r}, not a string")
        return list(texts)

    def number(value: Any) -> bool:
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)

    if not isinstance(runs, dict) or not runs:
        raise odd("runs", f"is {runs!r}, not a mapping of run names to their steps")
    results: dict[str, StepResults] = {}
    for run, steps in runs.items():
        if not isinstance(steps, list) or not steps:
            raise odd(f"runs.{run}", f"is {steps!r}, not a list of steps")
        numeric = all(isinstance(step, dict) and number(step.get("value")) for step in steps)
        rows: StepResults = []
        for index, step in enumerate(steps):
            where = f"runs.{run}[{index}]"
            if not isinstance(step, dict) or "value" not in step:
                raise odd(where, "has no key 'value'")
            value = step["value"]
            row = StepResult(Step(get(step, "step", str, where), value, float(value) if numeric else None))
            for short, stat in get(step, "metrics", dict, where).items():
                if short not in long_names:
                    raise odd(f"{where}.metrics", f"has {short!r}, not one of {', '.join(long_names)}")
                values = get(stat, "values", list, f"{where}.metrics.{short}")
                for position, figure in enumerate(values):
                    if not number(figure):
                        raise odd(f"{where}.metrics.{short}.values[{position}]", f"is {figure!r}, not a number")
                if not values:
                    raise odd(f"{where}.metrics.{short}.values", "is empty")
                row.stats[long_names[short]] = Stat([float(figure) for figure in values])
            status = get(step, "status", str, where)
            if status != ("ok" if row.ok else "failed") or 0 < len(row.stats) < len(METRICS):
                raise odd(
                    f"{where}.metrics",
                    f"holds {', '.join(step['metrics']) or 'nothing'} with status {status!r}: an ok step holds "
                    f"{', '.join(long_names)}, a failed one nothing",
                )
            row.verdicts = strings(step, "verdicts", where)
            row.failed = strings(step, "failed_experiments", where)
            rows.append(row)
        results[run] = rows
    return results


def chart(results: dict[str, StepResults], key: str, path: Path, title: str) -> None:
    """Two panels: validation accuracy and gap against the key's value, one line per run, mean with the range
    over seeds as error bars; categorical steps (augmentation off/on) are evenly spaced."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4), layout="constrained")
    axes = figure.subplots(1, 2)
    for run, rows in results.items():
        done = [row for row in rows if row.ok]
        if not done:
            continue
        numeric = all(row.step.x is not None for row in rows)
        xs = [row.step.x if numeric else rows.index(row) for row in done]
        for ax, metric in zip(axes, ("val_accuracy_inference", "gap")):
            stats = [row.stats[metric] for row in done]
            means = [stat.mean for stat in stats]
            errors = [[m - s.low for m, s in zip(means, stats)], [s.high - m for m, s in zip(means, stats)]]
            ax.errorbar(xs, means, yerr=errors, marker="o", capsize=3, label=run)
            if not numeric:
                ax.set_xticks(range(len(rows)), [row.step.label for row in rows])
    for ax, label in zip(axes, ("validation accuracy", "gap (train - validation)")):
        ax.set_xlabel(key)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    figure.suptitle(title)
    figure.savefig(path, dpi=100)


def write_report(directory: Path, files: dict[str, str | dict[str, Any]], chart_file: str, draw: Any) -> None:
    """Write the report directory whole (atomic: the old one or the new one, never half): text files, JSON files
    (dict values) and the chart, drawn by `draw(path)`."""
    with atomic.atomic_path(directory) as tmp:
        tmp.mkdir(parents=True)
        for name, content in files.items():
            text = json.dumps(content, indent=2) + "\n" if isinstance(content, dict) else content
            (tmp / name).write_text(text, encoding="utf-8")
        draw(tmp / chart_file)


def report_dir(kind: str, name: str) -> Path:
    return layout.REPORTS / kind / name
