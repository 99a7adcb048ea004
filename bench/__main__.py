"""Run every benchmark and write BENCHMARKS.md: `python -m bench` from the repository root (about 20 minutes
on 2 otherwise idle CPU cores; `--only train,profile` alone took about 40 minutes on 2 cores shared with a
load average of 10). Each run also appends its headline ratios to bench/history.csv, which BENCHMARKS.md shows
in full: on a shared machine one run is a sample.

    python -m bench [--only train,profile,tracking,eval,dvc] [--prepared DIR] [--keep] [--output BENCHMARKS.md]

First the data stages build CIFAR-10 from ../shared/datasets/cifar10-jpeg.tar.gz (read in place) in a
scratch project under the system's temporary directory, measuring their peak memory (bench.prepare_memory);
the other benchmarks read that prepared dataset. --prepared DIR skips that step and reuses DIR (e.g. one
kept with --keep). Each benchmark runs in its own process and prints its figures and its RATIO as it goes.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import REPO, machine, stage_env
from overfit_first import layout
from overfit_first.errors import run_stage

BENCHES = ("train", "profile", "tracking", "eval", "dvc", "startup")
SPEEDUP_TARGET = 1.3  # issue 12: the train stage against the article's code, median wall time, native bf16
PEAK_TARGET = 50.0  # issue 12: % of the bf16 matmul peak, native bf16
COMMAND = "python -m bench"
HISTORY = REPO / "bench" / "history.csv"


def run(module: str, *args: str, out: Path) -> dict[str, Any]:
    print(f"\n== {module} {' '.join(args)}", flush=True)
    subprocess.run([sys.executable, "-m", module, *args, "--out", str(out)], cwd=REPO, env=stage_env(), check=True)
    return json.loads(out.read_text(encoding="utf-8"))


def mib(value: float) -> str:
    return f"{value / 2**20:.0f} MiB"


def verdict(met: bool) -> str:
    return "yes" if met else "**no**"


def onednn_conclusion(train: dict[str, Any]) -> str:
    """What project vs article-with-oneDNN says: a difference counts only if the best and the median rounds,
    and the CPU time per step, all point the same way by more than 10 %."""
    best, median = train["best"], train["median_ms_per_step"]
    ratios = (
        train["ratio_onednn"],
        median["article_onednn"] / median["project"],
        best["article_onednn"]["cpu_ms_per_step"] / best["project"]["cpu_ms_per_step"],
    )
    if all(ratio > 1.1 for ratio in ratios):
        return (
            "Beyond oneDNN, the project's own pipeline (uint8 batches scaled inside tf.data rather than a float64 "
            "array eight times larger) is faster too."
        )
    if all(ratio < 0.9 for ratio in ratios):
        return (
            "With oneDNN on both sides the project is slower: deterministic ops (the price of same params, same "
            "metrics) cost more than its pipeline saves."
        )
    return (
        f"best {ratios[0]:.2f}, median {ratios[1]:.2f}, CPU time {ratios[2]:.2f}: they do not agree beyond this "
        "machine's round-to-round noise, so this run shows no difference between the two. The gain over the "
        "article's code as installed is TensorFlow's oneDNN kernels, which TensorFlow turns on by itself only on "
        "CPUs with AVX-512 or AMX, and which the project turns on everywhere (overfit_first/__init__.py)."
    )


def headline(info: dict[str, Any], results: dict[str, Any]) -> dict[str, str]:
    """One row of bench/history.csv: the run's date, load and ratios (blank where a benchmark did not run)."""
    train, tracking = results.get("train"), results.get("tracking")
    project = train and train["summary"]["project"]
    overfit = train and train["models"].get("cnn_overfit")
    values = {
        "date": info["date"],
        "cpu": info["cpu_model"],
        "isa": " ".join(info["isa_flags"]),
        "load_1min": info["load_average"][0],
        "train_ratio_best": train and train["ratio"],
        "train_ratio_median": train and train["median_ms_per_step"]["article"] / train["median_ms_per_step"]["project"],
        "train_ratio_cpu_time": train and train["cpu_ratio"],
        "train_policy": project and project["policy"],
        "train_percent_of_peak": project and project["percent_of_peak"],
        "overfit_ratio_median": overfit and overfit["ratio_median"],
        "overfit_percent_of_peak": overfit and overfit["summary"]["project"]["percent_of_peak"],
        "tracking_percent_15_epochs": tracking and tracking["percent_per_epoch"]["15"],
        "noop_repro_seconds": results.get("dvc") and results["dvc"]["noop_median"],
        "prepare_memory_ratio": results.get("data") and results["data"]["prepare"]["ratio"],
        "eval_ratio": results.get("eval") and results["eval"]["ratio"],
    }
    return {
        key: "" if value is None else value if isinstance(value, str) else f"{value:.3g}"
        for key, value in values.items()
    }


def append_history(row: dict[str, str]) -> list[dict[str, str]]:
    """Add this run to bench/history.csv (committed with BENCHMARKS.md) and return every run so far."""
    rows = list(csv.DictReader(HISTORY.open(encoding="utf-8"))) if HISTORY.is_file() else []
    rows.append(row)
    with HISTORY.open("w", encoding="utf-8", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(row))
        writer.writeheader()
        writer.writerows(rows)
    return rows


def history_section(rows: list[dict[str, str]]) -> list[str]:
    """Every recorded run: on a shared machine one run is a sample, not the answer."""
    columns = list(rows[-1])  # this run's columns: earlier runs may lack the newer ones
    return [
        "## Every run (bench/history.csv)",
        "",
        "The same benchmarks at other times on this machine. The spread is the machine's: when other work",
        "shares its cores, wall-clock ratios swing, while CPU time per step (what the process itself spent)",
        "varies far less.",
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
        *("| " + " | ".join(row.get(column, "") for column in columns) + " |" for row in rows),
        "",
    ]


def native_bf16(train: dict[str, Any]) -> bool:
    """Whether the project side trained in bf16 here, i.e. the CPU computes bf16 natively."""
    return train["project_policy"] == "mixed_bfloat16"


def train_rows(train: dict[str, Any]) -> list[str]:
    """The summary table's rows of bench.train_throughput: per model, speed against the article's code
    (target >= 1.3x with native bf16) and compute efficiency (target >= 50 % of the bf16 peak)."""
    flags = " ".join(train["flags"])
    native = native_bf16(train)
    rows = []
    for name, figures in train["models"].items():
        project, article = figures["summary"]["project"], figures["summary"]["article"]
        speed_target = f">= {SPEEDUP_TARGET}" if native else "open: no native bf16"
        peak_target = f">= {PEAK_TARGET:.0f} %" if native else "open: no native bf16"
        rows += [
            f"| training, {name}, {project['policy']}, against the article's code ({flags}) | "
            f"{project['median_images_per_s']:.0f} images/s, {project['median_ms_per_step']:.1f} ms/step (median) | "
            f"article {article['median_images_per_s']:.0f} images/s, {article['median_ms_per_step']:.1f} ms/step | "
            f"{figures['ratio_median']:.2f} (CPU time {figures['cpu_ratio_median']:.2f}) | {speed_target} | "
            f"{verdict(figures['ratio_median'] >= SPEEDUP_TARGET) if native else 'open'} |",
            f"| training compute, {name}, {project['policy']} ({flags}) | {project['gflops']:.0f} GFLOP/s "
            f"({project['gflops_per_cpu_s']:.0f} per CPU second) | {project['peak_dtype']} matmul peak "
            f"{train['peaks'][project['peak_dtype']]['gflops']:.0f} GFLOP/s "
            f"({train['peaks'][project['peak_dtype']]['gflops_per_cpu_s']:.0f}) | {project['percent_of_peak']:.0f} % "
            f"({project['percent_of_peak_cpu']:.0f} % per CPU second) | {peak_target} | "
            f"{verdict(project['percent_of_peak'] >= PEAK_TARGET) if native else 'open'} |",
        ]
    return rows


def train_details(train: dict[str, Any]) -> list[str]:
    """bench.train_throughput in full: the machine's peaks and settings, every side of every model."""
    best, median = train["best"], train["median_ms_per_step"]
    settings = train["settings"]
    peaks = train["peaks"]
    env = ", ".join(f"{key}={value}" for key, value in settings["env"].items()) or "none"
    lines = [
        f"**Training throughput** (`bench/train_throughput.py`): {', '.join(train['models'])} on "
        f"{train['images']:,} CIFAR-10 training images at the model's batch size (64), one warm-up epoch then "
        f"{train['epochs']} timed epoch(s), every side in its own process, the sides alternating for "
        f"{len(train['rounds']['project'])} rounds; figures are each side's median round. *project* = what the "
        "train stage does (overfit_first's TensorFlow setting `TF_ENABLE_ONEDNN_OPTS=1`, `accelerate.configure` "
        "with `mixed_precision: bf16` on a CPU that computes bf16 natively, else `auto` (which keeps float32 on "
        f"CPUs: bench/precision_parity.md), here {train['project_policy']}, deterministic ops, "
        "`inputs.make_dataset`, `model.fit` on the tf.data pipeline); *project_float32* = the same with "
        "`mixed_precision: false`; *project_interop1* = *project* with `TF_NUM_INTEROP_THREADS=1` (a speed-only "
        "setting); *article* = `model.fit(x / 255.0, y, batch_size=64)` on float64 NumPy arrays, TensorFlow as "
        "installed (which turns oneDNN on by itself on CPUs with AVX-512 or AMX); *article_onednn* (with "
        "`--article-onednn`) = the same with `TF_ENABLE_ONEDNN_OPTS=1`.",
        "",
        f"Compute: {train['cpu_model']}, {settings['cores']} cores, instruction sets {' '.join(train['flags'])}; "
        f"TensorFlow {settings['tensorflow']}, intra-op threads {settings['intra_op_threads']} and inter-op threads "
        f"{settings['inter_op_threads']} (0 = TensorFlow's default: one per core), environment: {env}. Matrix-multiply "
        f"peaks (`bench/matmul_peak.py`, 2048 x 2048 `tf.matmul`, best of 10, once per round, best round): "
        f"float32 {peaks['float32']['gflops']:.0f} GFLOP/s ({peaks['float32']['gflops_per_cpu_s']:.0f} per CPU "
        f"second), bfloat16 {peaks['bfloat16']['gflops']:.0f} GFLOP/s ({peaks['bfloat16']['gflops_per_cpu_s']:.0f} "
        "per CPU second); per round: "
        + "; ".join(
            ", ".join(f"{dtype} {row['gflops']:.0f}" for dtype, row in round_["peaks"].items())
            for round_ in train["peak_rounds"]
        )
        + ". Training FLOPs per image from the architecture (`overfit_first/flops.py`: Conv2D and Dense "
        "multiply-adds, forward x 3; batch norm, activations, pooling and dropout not counted): "
        + ", ".join(
            f"{name} {figures['summary']['project']['training_flops_per_image'] / 1e6:.0f} MFLOP"
            for name, figures in train["models"].items()
        )
        + ". GFLOP/s = that x images/s; the percentage is of the peak of the side's compute precision "
        "(bfloat16 under mixed_bfloat16, else float32). Per CPU second = the same from the process's CPU time "
        "(all threads) against the matmul's: what the other load on this shared machine disturbs least.",
        "",
    ]
    for name, figures in train["models"].items():
        lines += [
            f"*{name}*",
            "",
            "| side | policy | ms/step (median) | ms/step (best) | CPU ms/step (median) | images/s | GFLOP/s | "
            "% of peak | % of peak per CPU second |",
            "|---|---|---|---|---|---|---|---|---|",
            *(
                f"| {side} | {row['policy']} | {row['median_ms_per_step']:.1f} | {row['best_ms_per_step']:.1f} | "
                f"{row['median_cpu_ms_per_step']:.0f} | {row['median_images_per_s']:.0f} | {row['gflops']:.0f} | "
                f"{row['percent_of_peak']:.0f} % {row['peak_dtype']} | {row['percent_of_peak_cpu']:.0f} % |"
                for side, row in figures["summary"].items()
            ),
            "",
            "Per round (ms/step): "
            + "; ".join(
                f"{side} " + ", ".join(f"{row['ms_per_step']:.1f}" for row in rows)
                for side, rows in figures["rounds"].items()
            )
            + f". Project / article, medians {figures['ratio_median']:.2f}, best rounds {figures['ratio']:.2f}, "
            f"CPU time {figures['cpu_ratio_median']:.2f}; project / project_float32 (what the policy gains) "
            f"{figures['ratio_float32_median']:.2f}"
            + "".join(
                f"; {key[len('ratio_') : -len('_median')]} / project {value:.2f}"
                for key, value in figures.items()
                if key.startswith("ratio_project_")
            )
            + ".",
            "",
        ]
    if "ratio_onednn" in train:
        lines += ["Project / article with oneDNN (cnn_simplified): " + onednn_conclusion(train), ""]
    lines += [
        f"The project's input pipeline alone delivers {best['project']['pipeline_images_per_s']:,.0f} images/s "
        f"(cnn_simplified), far more than training consumes (article {median['article']:.0f} ms/step).",
        "",
        conclusion(train),
        "",
    ]
    return lines


def conclusion(train: dict[str, Any]) -> str:
    """Whether issue 12's targets are met in this run, in words."""
    figures = train["models"]
    if not native_bf16(train):
        return (
            "**Targets**: this CPU has no native bf16 (neither avx512_bf16 nor amx_bf16), so the project trains "
            "in float32; the figures above are float32 ones and the >= 1.3x / >= 50 % targets are left open."
        )
    speed = [name for name, row in figures.items() if row["ratio_median"] >= SPEEDUP_TARGET]
    peak = [name for name, row in figures.items() if row["summary"]["project"]["percent_of_peak"] >= PEAK_TARGET]
    return (
        f"**Targets** (native bf16 here): >= {SPEEDUP_TARGET}x the article's code, median wall time: met by "
        f"{', '.join(speed) or 'no model'} of {', '.join(figures)}; >= {PEAK_TARGET:.0f} % of the bf16 matmul "
        f"peak: met by {', '.join(peak) or 'no model'}. Where they are not met, the profile below says where the "
        "time goes."
    )


def profile_details(profile: dict[str, Any]) -> list[str]:
    """bench.train_profile: per policy, time per part of training, per op type and per oneDNN kernel."""
    lines = [
        f"**Where the time goes** (`bench/train_profile.py`): {profile['model']}, the project's pipeline, "
        f"{profile['steps']} steps after a warm-up, under TensorFlow's profiler (op time per step on the host, "
        "summed over threads: it exceeds the wall time where two ops run at once) and, in another process, "
        f"under `ONEDNN_VERBOSE=1` ({profile['onednn']}: kernel time per step as oneDNN measures it; "
        "`avx10_1_512_amx` = AMX tiles, `avx512_core` = AVX-512 float32).",
        "",
    ]
    for policy in ("project", "float32"):
        traced, kernels = profile[policy]["trace"], profile[policy]["kernels"]
        total = sum(row["ms_per_step"] for row in traced["by_component"])
        lines += [
            f"*{traced['policy']}* ({traced['ms_per_step']:.0f} ms/step while traced, "
            f"{kernels['ms_per_step']:.0f} under the verbose log)",
            "",
            "| part of training | op ms/step | share of op time |",
            "|---|---|---|",
            *(
                f"| {row['component']} | {row['ms_per_step']:.1f} | {100 * row['ms_per_step'] / total:.0f} % |"
                for row in traced["by_component"]
                if row["ms_per_step"] >= 0.005 * total
            ),
            "",
            "Largest op types (ms/step, calls/step): "
            + ", ".join(
                f"{row['op']} {row['ms_per_step']:.1f} ({row['calls_per_step']:.0f})" for row in traced["by_type"]
            )
            + ".",
            "",
            "oneDNN kernels (ms/step): "
            + "; ".join(
                f"{row['primitive']} `{row['implementation'] or '-'}` {row['types']} {row['ms_per_step']:.1f}"
                for row in kernels["kernels"]
            )
            + ".",
            "",
        ]
    return lines


def startup_row(startup: dict[str, Any]) -> str:
    return (
        f"| stage start-up (`import keras`, unused libraries skipped) | {startup['skipped_median']:.2f} s | "
        f"as is {startup['baseline_median']:.2f} s | {startup['ratio']:.2f} | > 1 | {verdict(startup['ratio'] > 1)} |"
    )


def startup_details(startup: dict[str, Any]) -> list[str]:
    def listed(values: list[float]) -> str:
        return ", ".join(f"{value:.2f}" for value in values)

    return [
        "**Stage start-up** (`bench/startup.py`): `import keras` in a fresh interpreter after "
        "`overfit_first.unused_imports.skip()` (what every stage does first: scikit-learn, and JAX unless Keras "
        f"runs on it, are not imported), against `import keras` as is, alternately, {startup['rounds']} rounds: "
        f"{listed(startup['seconds']['skipped'])} s against {listed(startup['seconds']['baseline'])} s.",
        "",
    ]


def render(
    info: dict[str, Any], results: dict[str, Any], minutes: float, history: list[dict[str, str]] | None = None
) -> str:
    """BENCHMARKS.md: the command, the machine, and one section per benchmark run."""
    packages = ", ".join(f"{name} {value}" for name, value in info["packages"].items())
    lines = [
        "# Benchmarks",
        "",
        f"Written by `{COMMAND}` (from the repository root, in `.venv`; {minutes:.0f} minutes here). Every figure",
        "comes with a ratio to a baseline measured in the same run, because the machine is shared and noisy;",
        "the tests assert no timing. Rerun the command to refresh this file.",
        "",
        "| machine | |",
        "|---|---|",
        f"| date | {info['date']} |",
        f"| CPU | {info['cpu_model']}, {info['nproc']} cores (nproc) |",
        f"| instruction sets (every figure here ran on them) | {' '.join(info['isa_flags']) or 'unknown'} |",
        f"| RAM | {info['ram_gib']} GiB |",
        f"| load average at start | {' / '.join(map(str, info['load_average']))} (1 / 5 / 15 min) |",
        f"| software | Python {info['python']}, {packages} |",
        "",
        "| benchmark | figure | baseline | ratio | target | met |",
        "|---|---|---|---|---|---|",
    ]
    if "train" in results:
        lines += train_rows(results["train"])
    if "tracking" in results:
        tracking = results["tracking"]
        lines.append(
            f"| tracking cost (live MLflow run) | {tracking['per_run_seconds']:.2f} s per run, "
            f"{1000 * tracking['per_epoch_seconds']:.1f} ms per epoch | epoch {tracking['epoch_seconds']:.1f} s | "
            f"{tracking['percent_per_epoch']['15']:.2f} % per epoch over 15 epochs | <= 3 % | "
            f"{verdict(tracking['percent_per_epoch']['15'] <= 3.0)} |"
        )
    if "dvc" in results:
        dvc = results["dvc"]
        lines.append(
            f"| `dvc repro`, nothing to do | {dvc['noop_median']:.2f} s | "
            f"`dvc --version` {dvc['version_median']:.2f} s | "
            f"{dvc['ratio']:.2f} | <= 5 s | {verdict(dvc['noop_median'] <= 5.0)} |"
        )
    if "startup" in results:
        lines.append(startup_row(results["startup"]))
    if "data" in results:
        data = results["data"]
        lines.append(
            f"| `prepare` peak memory | {mib(data['prepare']['peak_rss_bytes'])} | "
            f"raw dataset {mib(data['raw_bytes'])} | "
            f"{data['prepare']['ratio']:.2f} | <= 2.0 | {verdict(data['prepare']['ratio'] <= 2.0)} |"
        )
    if "eval" in results:
        evaluation = results["eval"]
        rate = evaluation["images_per_s"]
        lines.append(
            f"| evaluation throughput | {rate['project']:.0f} images/s | plain `model.predict` {rate['plain']:.0f} "
            f"images/s | {evaluation['ratio']:.2f} | >= 1.0 | {verdict(evaluation['ratio'] >= 1.0)} |"
        )
    lines += ["", "## Details", ""]
    if "train" in results:
        lines += train_details(results["train"])
    if "profile" in results:
        lines += profile_details(results["profile"])
    if "tracking" in results:
        tracking = results["tracking"]
        spread = tracking["percent_per_epoch"]
        threads = 1000 * tracking["tracking_threads_cpu_seconds_per_epoch"]
        lines += [
            f"**Tracking cost** (`bench/tracking_cost.py`): `training.fit` with the live MLflow run on "
            f"{tracking['train_images']:,} images with {tracking['valid_images']:,} validation images, "
            f"{tracking['epochs']} epochs: {tracking['epoch_seconds']:.1f} s per epoch. Every epoch: the MLflow "
            f"callback {1000 * tracking['callback_seconds_per_epoch']:.2f} ms on the training thread, the tracking "
            f"threads (logging, MLflow's system metrics) {threads:.1f} ms of CPU, the resumable history "
            f"{1000 * tracking['history_json_seconds']:.1f} ms. Once per run: "
            f"opening the run {tracking['open_seconds']:.2f} s (in the logging thread; this first run creates "
            f"mlflow.db), importing MLflow {tracking['import_mlflow_seconds']:.2f} s, the DVC metrics and plots "
            f"files {1000 * tracking['dvc_files_seconds']:.1f} ms, finishing the run (model, charts) "
            f"{tracking['finish_seconds']:.2f} s. Spread over a run: "
            f"{spread['15']:.2f} % per epoch over 15 epochs (the cifar10_jpeg profile), {spread['52']:.2f} % over 52 "
            f"(the article's early stop), {spread['150']:.2f} % over 150. Writing the model file "
            f"({tracking['model_file_seconds']:.2f} s) is the stage's output, not tracking.",
            "",
        ]
    if "dvc" in results:
        dvc = results["dvc"]
        lines += [
            f"**No-op `dvc repro`** (`bench/dvc_noop.py`): a scratch git + DVC repository with the project's code "
            f"and dvc.yaml, a tiny image-folder dataset and two one-epoch runs ({dvc['stages']} stages, reproduced "
            f"in {dvc['full_repro_seconds']:.0f} s), then `dvc repro` with nothing to do: "
            + ", ".join(f"{value:.2f}" for value in dvc["noop_seconds"])
            + " s; `dvc --version`: "
            + ", ".join(f"{value:.2f}" for value in dvc["version_seconds"])
            + " s.",
            "",
        ]
    if "startup" in results:
        lines += startup_details(results["startup"])
    if "data" in results:
        data = results["data"]
        lines += [
            "**Data stages' memory** (`bench/prepare_memory.py`): `download` then `prepare` of cifar10_jpeg "
            f"(the {mib(data['archive_bytes'])} archive of 60,000 JPEGs, read in place), peak RSS from the kernel "
            f"(wait4). Raw dataset = the decoded arrays of data/raw/cifar10_jpeg, {mib(data['raw_bytes'])}. "
            f"`prepare`: {mib(data['prepare']['peak_rss_bytes'])} peak in {data['prepare']['seconds']:.1f} s; "
            f"`download` (decodes the JPEGs): {mib(data['download']['peak_rss_bytes'])} peak "
            f"({data['download']['ratio']:.2f} x raw) in {data['download']['seconds']:.1f} s; the interpreter "
            f"with the stage's imports and no data: {mib(data['imports_only_peak_rss_bytes'])}.",
            "",
        ]
    if "eval" in results:
        evaluation = results["eval"]
        lines += [
            "**Evaluation throughput** (`bench/eval_throughput.py`): cnn_simplified predicts the "
            f"{evaluation['images']:,} "
            f"test images at batch {evaluation['batch_size']}, through `evaluation.predict` (uint8 into tf.data, "
            "scaled there) and through `model.predict` on a float32 array scaled beforehand (the scaling counted), "
            f"best of {len(evaluation['seconds']['project'])} rounds each; the predictions agree on "
            f"{100 * evaluation['same_predictions']:.2f} % of the images.",
            "",
        ]
    if history:
        lines += history_section(history)
    lines += GPU_SECTION
    return "\n".join(lines) + "\n"


GPU_SECTION = [
    "## Not measured here: GPUs and the article's full-scale table",
    "",
    "The article's eight runs at full scale on one GPU are one script, `python -m overfit_first article_gpu`",
    "(Keras 3 on JAX, no TensorFlow or DVC: the pipeline's own data readers, models, metrics files and verdicts;",
    "mixed_bfloat16 with XLA; the eight runs as concurrent processes within a wall-clock budget; wheels to carry",
    "in `scripts/gpu-wheels.txt`, fetched by `scripts/gpu_wheels.sh`; `scripts/article_gpu_device.sh` is the",
    "whole command on the GPU machine). A test runs it end to end on a CPU with tiny settings. It has not run on",
    "a GPU yet: none was lent to the sessions that built it (2026-11-29: the GPU pool was paused), so the",
    "article's table has no full-scale counterpart here. The CPU-scale counterpart is the CIFAR pipeline's",
    "results page, cifar/reports/README.md.",
    "",
    "The TensorFlow path on NVIDIA GPUs, exercised only by the CPU tests (`tests/test_accelerate.py`: the same",
    "code under a MirroredStrategy of two logical CPU devices):",
    "",
    "```bash",
    "OVERFIT_FIRST_TF=gpu bash scripts/setup.sh && . .venv/bin/activate   # tensorflow[and-cuda]",
    "python -m overfit_first profiles article && dvc repro                  # the article's eight runs",
    "python -m bench                                                        # these benchmarks, on that machine",
    "```",
    "",
    "With the defaults (`train.mixed_precision: auto`, `train.xla: auto`) a GPU run uses mixed precision",
    "(bf16 on compute capability 8.0 or later, fp16 before; the softmax in float32) and XLA; several GPUs are",
    "used through `tf.distribute.MirroredStrategy` (the batch size stays the article's global batch), several",
    "machines through `MultiWorkerMirroredStrategy` when `TF_CONFIG` is set. An XLA run is seeded but not",
    "bit-for-bit reproducible (Keras disables XLA under TensorFlow's op determinism): set `train.xla: false`",
    'for that. The JAX backend runs the same pipeline: `pip install -e ".[jax]"` (or `jax[cuda12]` on a GPU),',
    "then `KERAS_BACKEND=jax dvc repro`; it trains on a single device (the strategies are TensorFlow's).",
]


def main() -> None:
    parser = argparse.ArgumentParser(
        prog=COMMAND, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", default=",".join(BENCHES), help=f"comma-separated subset of {', '.join(BENCHES)}")
    parser.add_argument("--prepared", type=Path, help="reuse this prepared CIFAR-10 instead of building it")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory (its path is printed)")
    parser.add_argument("--output", type=Path, default=REPO / "BENCHMARKS.md", help="the report to write")
    args = parser.parse_args()
    only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(only) - set(BENCHES))
    if unknown:
        parser.error(f"--only: unknown benchmarks {unknown}; choose from {', '.join(BENCHES)}")
    layout.require_repo_root()  # the benchmarks run from the root, where a relative --prepared DIR is resolved

    started = time.perf_counter()
    info = machine()
    scratch = Path(tempfile.mkdtemp(prefix="overfit-first-bench-"))
    print(
        f"scratch directory: {scratch}; machine: {info['nproc']} x {info['cpu_model']}, {info['ram_gib']} GiB",
        flush=True,
    )
    results: dict[str, Any] = {}
    try:
        prepared = args.prepared
        if prepared is None:
            results["data"] = run(
                "bench.prepare_memory", "--project", str(scratch / "cifar10"), out=scratch / "data.json"
            )
            prepared = scratch / "cifar10" / "data" / "prepared" / "cifar10_jpeg"
        if "train" in only:
            results["train"] = run("bench.train_throughput", "--prepared", str(prepared), out=scratch / "train.json")
        if "profile" in only:
            results["profile"] = run("bench.train_profile", "--prepared", str(prepared), out=scratch / "profile.json")
        if "tracking" in only:
            results["tracking"] = run("bench.tracking_cost", "--prepared", str(prepared), out=scratch / "tracking.json")
        if "eval" in only:
            results["eval"] = run("bench.eval_throughput", "--prepared", str(prepared), out=scratch / "eval.json")
        if "dvc" in only:
            results["dvc"] = run("bench.dvc_noop", "--scratch", str(scratch / "dvc"), out=scratch / "dvc.json")
        if "startup" in only:
            results["startup"] = run("bench.startup", out=scratch / "startup.json")
    finally:
        if args.keep:
            print(f"kept {scratch}", flush=True)
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    history = append_history(headline(info, results))
    args.output.write_text(render(info, results, (time.perf_counter() - started) / 60, history), encoding="utf-8")
    print(f"\nwrote {args.output}", flush=True)


if __name__ == "__main__":
    run_stage(main)
