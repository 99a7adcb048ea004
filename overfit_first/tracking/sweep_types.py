"""What the sweeps' MLflow runs (overfit_first.tracking.sweeps) read of a sweep: the Sweep, Point and StepResult of
overfit_first.procedure.sweep, as Protocols that its classes match as they are. Not an import of that module: the
procedure imports this package (overfit_first.procedure.sweep_run), not the other way round."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from overfit_first.config import Run


class SweepStep(Protocol):
    """One value of the swept key (overfit_first.procedure.sweep.Step)."""

    @property
    def label(self) -> str: ...


class SweepPoint(Protocol):
    """One DVC experiment of a sweep (overfit_first.procedure.sweep.Point)."""

    @property
    def step(self) -> SweepStep: ...

    @property
    def name(self) -> str: ...


class Sweep(Protocol):
    """What is swept, over which runs (overfit_first.procedure.sweep.Sweep)."""

    @property
    def name(self) -> str: ...

    @property
    def key(self) -> str: ...

    @property
    def steps(self) -> Sequence[SweepStep]: ...

    @property
    def seeds(self) -> Sequence[int] | None: ...

    @property
    def runs(self) -> Sequence[Run]: ...

    @property
    def kind(self) -> str: ...

    @property
    def dataset(self) -> str: ...


class SweepStat(Protocol):
    """One metric over seeds (overfit_first.procedure.sweep.Stat)."""

    @property
    def mean(self) -> float: ...

    @property
    def std(self) -> float: ...


class SweepResult(Protocol):
    """One step of one run over its seeds (overfit_first.procedure.sweep.StepResult)."""

    @property
    def step(self) -> SweepStep: ...

    @property
    def stats(self) -> Mapping[str, SweepStat]: ...

    @property
    def ok(self) -> bool: ...
