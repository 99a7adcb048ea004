"""Run-to-run noise: how far each metric of the default profile moves when only the seed changes, and the rule
that says whether a difference exceeds it.

The spread lives in metrics/seed_spread.json (layout.SEED_SPREAD), written by `python -m overfit_first.seed_spread
--seeds 0 1 2` and committed. Per metrics file and metric (the paths and names `dvc metrics diff` prints) it holds
the values over the seeds with their mean, sample standard deviation, minimum and maximum, plus the seeds, the
date, the commit and the machine (CPU model and the vector-instruction flags that change TensorFlow's kernels,
library versions). Until it is measured the file says "not measured" and the pull-request comment says so
instead of judging any difference.

The rule: a difference is beyond noise when |difference| > max(NOISE_SIGMAS x std, max - min) of the metric's
seed values. Two standard deviations is the usual yardstick; with the few seeds a refresh can afford the
standard deviation is itself uncertain, so the observed range also counts.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from overfit_first import layout
from overfit_first.errors import PipelineError

NOISE_SIGMAS = 2.0
MEASURED, NOT_MEASURED = "measured", "not measured"
WITHIN, BEYOND = "within noise", "beyond noise"
REFRESH = "python -m overfit_first.seed_spread --seeds 0 1 2"


class MetricSpread(BaseModel):
    """One metric over the seeds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    values: list[float]
    mean: float
    std: float  # sample standard deviation (n - 1); 0 with a single seed
    min: float
    max: float

    @property
    def threshold(self) -> float:
        """The largest difference that is still noise (the module's rule)."""
        return max(NOISE_SIGMAS * self.std, self.max - self.min)


class Machine(BaseModel):
    """Where the spread was measured: run-to-run noise depends on the kernels the CPU gets."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cpu: str
    cores: int
    cpu_flags: list[str]
    python: str
    packages: dict[str, str]  # TensorFlow, Keras, ... as installed


class SeedSpread(BaseModel):
    """metrics/seed_spread.json."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    status: str  # MEASURED or NOT_MEASURED
    command: str = REFRESH
    seeds: list[int] = []
    measured_at: str | None = None  # UTC, ISO 8601
    commit: str | None = None  # the git commit whose default profile was measured
    experiments: list[str] = []  # the `dvc exp` names that hold each seed's results
    machine: Machine | None = None
    metrics: dict[str, dict[str, MetricSpread]] = {}  # metrics file -> metric -> spread

    @property
    def measured(self) -> bool:
        return self.status == MEASURED

    def spread(self, path: str, metric: str) -> MetricSpread | None:
        return self.metrics.get(path, {}).get(metric)

    def judge(self, path: str, metric: str, difference: float) -> str:
        """WITHIN or BEYOND noise; NOT_MEASURED while the file holds no measurement; 'no spread' for a metric
        the measurement did not see (a new run or metric)."""
        if not self.measured:
            return NOT_MEASURED
        spread = self.spread(path, metric)
        if spread is None:
            return "no spread"
        return BEYOND if abs(difference) > spread.threshold else WITHIN

    def summary(self) -> str:
        """One sentence for the comment: what the noise marks are based on."""
        if not self.measured:
            return (
                f"Noise: not measured yet ({layout.SEED_SPREAD} holds no seed spread), so no difference is "
                f"judged; `{self.command}` measures it on the default profile."
            )
        return (
            f"Noise: a difference is *beyond noise* when it exceeds max({NOISE_SIGMAS:g} x standard deviation, "
            f"max - min) of the metric over seeds {', '.join(map(str, self.seeds))} of the default profile "
            f"({layout.SEED_SPREAD}, measured {self.measured_at} at commit {(self.commit or '?')[:10]} on "
            f"{self.machine.cpu if self.machine else 'an unrecorded machine'})."
        )


def not_measured() -> SeedSpread:
    return SeedSpread(status=NOT_MEASURED)


def load(path: Path = layout.SEED_SPREAD) -> SeedSpread:
    """The committed spread; a missing file counts as not measured, a malformed one is an error naming it."""
    if not path.is_file():
        return not_measured()
    try:
        return SeedSpread.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, ValidationError) as error:
        raise PipelineError(
            f"{path} is not a seed-spread file ({str(error).splitlines()[0]}): "
            f"rewrite it with `{REFRESH}` or `git checkout {path}`"
        ) from error
