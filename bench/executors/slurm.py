"""The Slurm executor, through submitit (``pip install -e '.[slurm]'``).

Three job arrays (``map_array``), one stage after another: encode, fit (one task per fit key),
caption-and-score. Each job's logs go to ``RUN_DIR/slurm/``; results come back to this process,
which alone writes records, as with every executor. ``--slurm-cluster local`` runs the very same
arrays as local processes (submitit's local executor), to try a configuration before submitting
it. Where no Slurm exists (no ``sbatch``) and ``local`` was not asked for, the executor says so.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Iterator
from typing import Any

from bench.errors import BenchError
from bench.executors.base import CellProgress, Executor, store_cell
from bench.executors.tasks import describe_failure, encode_failure, input_failure, plan, run_task


class SlurmExecutor(Executor):
    def check(self) -> None:
        try:
            import submitit  # noqa: F401
        except ImportError:
            raise BenchError("--executor slurm needs submitit: pip install -e '.[slurm]' (or pip install submitit)") from None
        if self.config.slurm_cluster == "slurm" and shutil.which("sbatch") is None:
            raise BenchError("--executor slurm: no Slurm here (sbatch is not on PATH); "
                             "use --slurm-cluster local to run the same job arrays on this machine")

    def _executor(self, folder: Any) -> Any:
        import submitit

        cfg = self.config
        executor = submitit.AutoExecutor(folder=str(folder), cluster="local" if cfg.slurm_cluster == "local" else "slurm")
        params: dict[str, Any] = {"timeout_min": cfg.time, "cpus_per_task": cfg.cpus_per_task}
        if cfg.gpus_per_task:
            params["gpus_per_node"] = int(cfg.gpus_per_task)  # a whole number (checked with the flags)
        if cfg.slurm_cluster == "slurm":
            params.update(slurm_partition=cfg.partition, slurm_array_parallelism=cfg.array_parallelism)
        executor.update_parameters(**params)
        return executor

    def run(self, runner: Any, todo: list[tuple[Any, str]], report: Any) -> None:
        graph = plan(runner, todo, self.config.task_threads)
        # one folder per invocation: submitit names result files by job id, and a job id seen
        # before (a local "cluster" reuses process ids) must never find an earlier run's result
        executor = self._executor(runner.out / "slurm" / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}")
        bar = CellProgress(len(graph.cells))
        try:
            failed_inputs: dict[str, str] = {}
            for task, outcome in self._stage(executor, graph.encodes, bar):
                if isinstance(outcome, BaseException):
                    key, line = encode_failure(task, outcome)
                    failed_inputs[key] = line
            fits = []
            fit_failures: dict[str, tuple[str, str]] = {}
            for key, task in graph.fits.items():  # a fit needs its training captions (its cells, their test images: below)
                blocked = failed_inputs.get(f"{task.cell.split.train}/text")
                if blocked:
                    fit_failures[key] = (blocked, blocked)
                else:
                    fits.append((key, task))
            fit_done: dict[str, dict[str, Any]] = {}
            for (key, _), (_, outcome) in zip(fits, self._stage(executor, [t for _, t in fits], bar)):
                if isinstance(outcome, BaseException):
                    line, text = describe_failure(outcome)
                    fit_failures[key] = (f"its fit failed: {line}", text)
                else:
                    fit_done[key] = outcome
            cells = []
            for task, key, cell_id in graph.cells:
                unreadable = input_failure(failed_inputs, task.cell)
                if key in fit_failures or unreadable:
                    runner.record_failure(report, task.cell, cell_id, *(fit_failures.get(key) or (unreadable, unreadable)))
                    bar.update(failed=1)
                else:
                    cells.append((task, key, cell_id))
            # each cell is stored as its job ends, not after the whole array: a driver stopped
            # mid-stage keeps every cell that finished
            for index, outcome in self._stage_as_done(executor, [c[0] for c in cells], bar):
                task, key, cell_id = cells[index]
                if isinstance(outcome, BaseException):
                    runner.record_failure(report, task.cell, cell_id, *describe_failure(outcome))
                    bar.update(failed=1)
                else:
                    store_cell(runner, report, bar, task.cell, cell_id, outcome, fit_done, key)
        finally:
            bar.close()

    def _stage(self, executor: Any, tasks: list[Any], bar: CellProgress) -> list[tuple[Any, Any]]:
        """Run one job array; each task (in order) with its result or the exception it ended with."""
        outcomes = dict(self._stage_as_done(executor, tasks, bar))
        return [(task, outcomes[i]) for i, task in enumerate(tasks)]

    def _stage_as_done(self, executor: Any, tasks: list[Any], bar: CellProgress, poll: float = 1.0) -> Iterator[tuple[int, Any]]:
        """Run one job array; yield (task index, result or the exception it ended with) as each
        job ends. On Slurm the array's parallelism is Slurm's to keep; the local "cluster" has no
        such setting and would start every task at once (each loading the encoder), so there at
        most ``--array-parallelism`` jobs run, the next submitted as one ends."""
        if not tasks:
            return
        local = self.config.slurm_cluster != "slurm"
        queue = list(enumerate(tasks))
        waiting: dict[int, Any] = {}

        def top_up() -> None:
            if not local and queue:
                waiting.update(enumerate(executor.map_array(run_task, [t for _, t in queue])))
                queue.clear()
            while queue and len(waiting) < self.config.array_parallelism:
                i, task = queue.pop(0)
                waiting[i] = executor.submit(run_task, task)

        top_up()
        bar.update(running=len(waiting))
        while waiting:
            done = [i for i, job in waiting.items() if job.done()]
            if not done:
                time.sleep(poll)
                continue
            for i in done:
                job = waiting.pop(i)
                try:
                    outcome = job.result()
                except Exception as exc:  # the job raised, was killed, or timed out: that task failed
                    outcome = exc
                top_up()
                bar.update(running=len(waiting))
                yield i, outcome
