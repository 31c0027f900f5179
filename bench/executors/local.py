"""The local executor (the default): this machine, either one cell after another in this
process or, with several workers, the task graph of ``bench.executors.tasks`` on worker
processes (as the Ray executor runs it, and with the same numbers: each task computes with
``--threads`` torch threads, one by default, so a CPU run's numbers do not depend on how many
workers or cores it had)."""

from __future__ import annotations

import os
import traceback
from typing import Any

from bench.errors import BenchError
from bench.executors.base import CellProgress, Executor

#: Worker processes chosen on the CPU when ``--workers`` is not given (each loads the encoder).
MAX_AUTO_WORKERS = 4


def auto_workers(device: str, cpus: int | None = None) -> int:
    """One worker per core on the CPU, at most ``MAX_AUTO_WORKERS``; one on a GPU."""
    if device != "cpu":
        return 1
    return max(1, min(MAX_AUTO_WORKERS, cpus if cpus is not None else (os.cpu_count() or 1)))


class LocalExecutor(Executor):
    def workers(self, device: str) -> int:
        return self.config.workers or auto_workers(device)

    def run(self, runner: Any, todo: list[tuple[Any, str]], report: Any) -> None:
        workers = self.workers(runner.run.device)
        if workers > 1:
            self._run_workers(runner, todo, report, workers)
            return
        if self.config.threads:
            import torch

            torch.set_num_threads(self.config.threads)
        bar = CellProgress(len(todo))
        try:
            for cell, cell_id in todo:
                bar.update(running=1)
                try:
                    report_cell = runner.execute_cell(cell)
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

    def _run_workers(self, runner: Any, todo: list[tuple[Any, str]], report: Any, workers: int) -> None:
        import multiprocessing
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
        from concurrent.futures.process import BrokenProcessPool

        from bench.executors.tasks import drive, run_task

        def new_pool() -> Any:  # spawn: a fresh interpreter per worker (a forked torch with threads can deadlock)
            return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))

        pools = [new_pool()]

        def submit(task: Any) -> Any:
            try:
                return pools[-1].submit(run_task, task)
            except BrokenProcessPool:  # a worker died: its tasks failed (recorded); go on with fresh workers
                pools[-1].shutdown(wait=False, cancel_futures=True)
                pools.append(new_pool())
                return pools[-1].submit(run_task, task)

        def first_done(pending: list[Any]) -> Any:
            return next(iter(wait(pending, return_when=FIRST_COMPLETED)[0]))

        try:
            drive(runner, todo, report, self.config.threads or 1, submit, first_done, lambda future: future.result(),
                  capacity=workers)
        except BaseException:  # interrupted: what finished is stored; do not wait for the rest
            pools[-1].shutdown(wait=False, cancel_futures=True)
            raise
        pools[-1].shutdown(wait=True)
