"""The local executor (the default): this machine, either one cell after another in this
process or, with several workers, the task graph of ``bench.executors.tasks`` on worker
processes (as the Ray executor runs it, and with the same numbers: each task computes with
``--threads`` torch threads, one by default, so a CPU run's numbers do not depend on how many
workers or cores it had)."""

from __future__ import annotations

import os
from typing import Any

from bench.errors import BenchError
from bench.executors.sequential import SequentialExecutor

#: Worker processes chosen on the CPU when ``--workers`` is not given (each loads the encoder).
MAX_AUTO_WORKERS = 4


def auto_workers(device: str, cpus: int | None = None) -> int:
    """One worker per core on the CPU, at most ``MAX_AUTO_WORKERS``; one on a GPU."""
    if device != "cpu":
        return 1
    return max(1, min(MAX_AUTO_WORKERS, cpus if cpus is not None else (os.cpu_count() or 1)))


def worker_pool(workers: int) -> Any:
    """A pool of ``workers`` spawned processes (a fresh interpreter each: a forked torch with
    threads can deadlock), each started by :func:`_worker_start`."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_worker_start, initargs=(os.getpid(),))


def stop_pool(pool: Any) -> None:
    """End a pool now: cancel what has not started and terminate the workers, whose running
    tasks are abandoned (their files are written atomically, so none is left half-written).
    Without this an interrupted run would wait for every running fit to finish."""
    import time

    processes = list((getattr(pool, "_processes", None) or {}).values())  # shutdown() forgets them
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.terminate()
    deadline = time.monotonic() + 10
    for process in processes:
        process.join(timeout=max(0.0, deadline - time.monotonic()))
        # join returns at once when the pool's own thread reaped the process first (waitpid then
        # fails here, and is_alive() stays True): wait on the pid itself
        while process.pid is not None and not exited(process.pid) and time.monotonic() < deadline:
            time.sleep(0.02)


def exited(pid: int) -> bool:
    """The process ``pid`` has ended: gone, or a zombie nobody has reaped yet."""
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8") as fh:
            return "\nState:\tZ" in fh.read()
    except FileNotFoundError:
        return True
    except OSError:  # no /proc here: ask the kernel whether the pid exists
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _worker_start(parent: int) -> None:
    """A worker leaves Ctrl-C to the driver (which ends the workers: no traceback from each), and
    exits within a second of its driver's death (``kill -9``), rather than computing on for
    nobody and holding its memory."""
    import signal
    import threading
    import time

    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="bench-driver-watch", daemon=True).start()


class WorkerDied(BenchError):
    """A task's worker process died under it twice, the second time running it alone."""


def run_alone(task: Any) -> Any:
    """Run ``task`` once more on a pool of one fresh worker, and return its value.

    When a worker dies (killed, out of memory), its pool breaks and every task in flight on it
    fails, the dead worker's and its neighbours' alike, with no word of which was which. Each is
    run again here, one at a time: a neighbour completes, and a task that kills its worker again
    kills only its own, and fails with ``WorkerDied``."""
    from concurrent.futures.process import BrokenProcessPool

    from bench.executors.tasks import run_task

    pool = worker_pool(1)
    try:
        value = pool.submit(run_task, task).result()
    except BrokenProcessPool:
        stop_pool(pool)
        raise WorkerDied("its worker process died twice, the second time running it alone (killed by a "
                         "signal, or out of memory?)") from None
    except BaseException:  # its own error, or an interruption: end the worker, do not wait for it
        stop_pool(pool)
        raise
    pool.shutdown(wait=True)
    return value


class LocalExecutor(SequentialExecutor):
    def workers(self, device: str) -> int:
        return self.config.workers or auto_workers(device)

    def run(self, runner: Any, todo: list[tuple[Any, str]], report: Any) -> None:
        workers = self.workers(runner.run.device)
        if workers > 1:
            self._run_workers(runner, todo, report, workers)
        else:
            super().run(runner, todo, report)

    def _run_workers(self, runner: Any, todo: list[tuple[Any, str]], report: Any, workers: int) -> None:
        from concurrent.futures import FIRST_COMPLETED, wait
        from concurrent.futures.process import BrokenProcessPool

        from bench.executors.tasks import drive, run_task

        def new_pool() -> Any:
            return worker_pool(workers)

        pools = [new_pool()]
        task_of: dict[Any, Any] = {}

        def submit(task: Any) -> Any:
            try:
                future = pools[-1].submit(run_task, task)
            except BrokenProcessPool:  # a worker died: its tasks run again (result); go on with fresh workers
                pools[-1].shutdown(wait=False, cancel_futures=True)
                pools.append(new_pool())
                future = pools[-1].submit(run_task, task)
            task_of[future] = task
            return future

        def first_done(pending: list[Any]) -> Any:
            return next(iter(wait(pending, return_when=FIRST_COMPLETED)[0]))

        def result(future: Any) -> Any:
            task = task_of.pop(future)
            try:
                return future.result()
            except BrokenProcessPool:  # its worker died, or a neighbour's took the pool down with it
                return run_alone(task)

        try:
            drive(runner, todo, report, self.config.threads or 1, submit, first_done, result, capacity=workers)
        except BaseException:  # interrupted: what finished is stored; end the workers, do not wait for them
            stop_pool(pools[-1])
            raise
        pools[-1].shutdown(wait=True)
