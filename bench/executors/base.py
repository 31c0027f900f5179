"""What every executor shares: checking it can run, the driver's progress bar, and turning a
worker's result into a stored record (the driver is the only writer)."""

from __future__ import annotations

import dataclasses
import time
from abc import ABC, abstractmethod
from typing import Any

from bench.executors.config import ExecutorConfig
from bench.progress import progress


class Executor(ABC):
    def __init__(self, config: ExecutorConfig) -> None:
        self.config = config

    def check(self) -> None:  # noqa: B027 - an optional hook: the local executor can always run
        """Fail in one line (exit 2) when this executor cannot run here; called before any model loads."""

    @abstractmethod
    def run(self, runner: Any, todo: list[tuple[Any, str]], report: Any) -> None:
        """Complete the ``todo`` cells (with their ids), adding to ``report``."""


class CellProgress:
    """One bar over the cells, with how many run, finished and failed, and a time-left estimate."""

    def __init__(self, total: int) -> None:
        self.bar = progress(total=total, desc="cells", unit="cell")
        self.running = self.finished = self.failed = 0
        self.started = time.perf_counter()

    def update(self, running: int | None = None, finished: int = 0, failed: int = 0) -> None:
        if running is not None:
            self.running = running
        self.finished += finished
        self.failed += failed
        if finished or failed:
            self.bar.update(finished + failed)
        if hasattr(self.bar, "set_postfix_str"):
            self.bar.set_postfix_str(f"running {self.running}, finished {self.finished}, failed {self.failed}")

    def close(self) -> None:
        self.bar.close()


def accept(runner: Any, report: Any, cell: Any, result: dict[str, Any], fit: dict[str, Any] | None = None,
           cell_id: str = "") -> None:
    """Store a worker's result for ``cell``: its samples, then its record (the driver writes).

    ``fit`` is the result of the fit task the cell waited on, given with the first cell of that
    fit only: a fit trained now is said so, with its time, on that cell, as in one process; every
    other cell says what its own worker did (it reused the fit, unless it found it unusable and
    trained again). A result whose record is not of ``cell_id`` (a job's stale result file,
    another task's output) is refused (``StaleResult``), never stored as this cell's."""
    from bench.errors import StaleResult
    from bench.records import Record, Sample

    record = Record.from_dict(result["record"])
    if cell_id and record.cell_id != cell_id:
        raise StaleResult(f"the task for cell {cell_id} returned the result of cell {record.cell_id}; not stored")
    # the fit's first cell: what the fit task did; any other: what its own worker did (it reuses the
    # saved fit, unless that proved unusable and it trained again). A first cell whose worker
    # trained the fit again (the fit task reused one that its worker then found unusable) says so.
    if fit is None or (fit["reused"] and record.fit_reused is False):
        reused = record.fit_reused is not False
        timings = record.timings
    else:
        reused = bool(fit["reused"])
        timings = record.timings if reused else {**record.timings, "fit": round(float(fit["seconds"]), 3)}
    record = dataclasses.replace(record, fit_reused=reused, timings=timings)
    runner.store.add(record, [Sample.from_dict(s) for s in result["samples"]], same_inputs=True)
    report.completed.append(record)
    report.fits_reused += bool(record.fit_reused)
    report.fits += not record.fit_reused


def store_cell(runner: Any, report: Any, bar: CellProgress, cell: Any, cell_id: str, result: dict[str, Any],
               fit_done: dict[str, dict[str, Any]], key: str) -> None:
    """``accept`` a worker's result for ``cell`` (with its fit's result while no cell of that fit
    has been stored yet), or fail the cell when the result is another cell's (``StaleResult``)."""
    from bench.errors import StaleResult

    try:
        accept(runner, report, cell, result, fit=fit_done.get(key), cell_id=cell_id)
    except StaleResult as exc:
        runner.record_failure(report, cell, cell_id, str(exc), str(exc))
        bar.update(failed=1)
    else:
        fit_done.pop(key, None)
        bar.update(finished=1)
