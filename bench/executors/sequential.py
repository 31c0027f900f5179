"""The sequential executor: this process runs the cells one after another (a ``Runner`` built
without an executor, ``--workers 1``, and a run on a GPU)."""

from __future__ import annotations

import traceback
from typing import Any

from bench.errors import BenchError, InputConflict
from bench.executors.base import CellProgress, Executor


class SequentialExecutor(Executor):
    def run(self, runner: Any, todo: list[tuple[Any, str]], report: Any) -> None:
        if self.config.threads:
            import torch

            torch.set_num_threads(self.config.threads)
        bar = CellProgress(len(todo))
        try:
            for cell, cell_id in todo:
                bar.update(running=1)
                try:
                    report_cell = runner.execute_cell(cell)
                except InputConflict:  # another run's inputs in this folder: no further cell can be stored
                    raise
                except BenchError as exc:
                    runner.record_failure(report, cell, cell_id, str(exc), str(exc))
                    bar.update(running=0, failed=1)
                    continue
                except Exception as exc:  # a bug in one method must not cost the other cells
                    runner.record_failure(report, cell, cell_id, f"{type(exc).__name__}: {exc}", traceback.format_exc())
                    bar.update(running=0, failed=1)
                    continue
                report.completed.append(report_cell)
                report.fits_reused += bool(report_cell.fit_reused)
                report.fits += not report_cell.fit_reused
                bar.update(running=0, finished=1)
        finally:
            bar.close()
