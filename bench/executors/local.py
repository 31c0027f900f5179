"""The local executor (the default): this machine, either one cell after another in this
process or, with several workers, the task graph of ``bench.executors.tasks`` on worker
processes (as the Ray executor runs it, and with the same numbers: each task computes with
``--threads`` torch threads, one by default, so a CPU run's numbers do not depend on how many
workers or cores it had)."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
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


LOST = ("its worker process died twice, the second time running it alone (killed by a signal, or out "
        "of memory?), or its result could not be read back")


class WorkerPools:
    """``drive``'s engine on local worker processes: ``submit``, ``first_done``, ``result``.

    When a worker dies (killed, out of memory), its pool breaks and every task in flight on it
    fails, the dead worker's and its neighbours' alike, with no word of which was which. Each of
    those runs again, one at a time, on a pool of one fresh worker, while fresh workers take the
    other tasks (the lost task keeps its place among ``drive``'s pending ones, so no more than
    ``workers`` processes compute at once): a neighbour completes, and a task that kills its worker
    again kills only its own and fails with ``WorkerDied``. ``new_pool(n)`` makes a pool of ``n``
    workers (``worker_pool``; tests pass their own)."""

    def __init__(self, workers: int, new_pool: Callable[[int], Any] = worker_pool) -> None:
        self.workers, self.new_pool = workers, new_pool
        self.pool = new_pool(workers)
        self.task_of: dict[Any, Any] = {}
        self.retries: dict[Any, tuple[Any, Any]] = {}  # a lost task's handle -> (its pool of one, its future there)
        self.queued: deque[Any] = deque()  # lost tasks' handles waiting for their turn

    def submit(self, task: Any) -> Any:
        from concurrent.futures.process import BrokenProcessPool

        from bench.executors.tasks import run_task

        try:
            future = self.pool.submit(run_task, task)
        except BrokenProcessPool:  # a worker died: go on with fresh workers
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = self.new_pool(self.workers)
            future = self.pool.submit(run_task, task)
        self.task_of[future] = task
        return future

    def first_done(self, pending: list[Any]) -> Any:
        """The first of ``pending`` to finish; a task lost with its pool is not finished until it
        has run again, alone."""
        from concurrent.futures import FIRST_COMPLETED, wait

        while True:
            watched = {self.retries[h][1] if h in self.retries else h: h for h in pending if h not in self.queued}
            lost = []
            for future in wait(list(watched), return_when=FIRST_COMPLETED)[0]:
                handle = watched[future]
                if handle in self.retries or not _lost(future):
                    return handle
                lost.append(handle)
            self.queued.extend(lost)
            self._next_retry()

    def result(self, handle: Any) -> Any:
        from concurrent.futures.process import BrokenProcessPool

        task = self.task_of.pop(handle)
        if handle in self.retries:
            pool, future = self.retries.pop(handle)
        else:
            try:
                return handle.result()
            except BrokenProcessPool:  # waited on directly (drive's encode tasks, in turn): run it again alone now
                pool, future = self._alone(task)
        try:
            return future.result()
        except BrokenProcessPool as exc:
            raise WorkerDied(LOST) from exc
        finally:  # done, failed or interrupted: end its worker, and start the next lost task's turn
            stop_pool(pool)
            self._next_retry()

    def _next_retry(self) -> None:
        if self.queued and not self.retries:
            handle = self.queued.popleft()
            self.retries[handle] = self._alone(self.task_of[handle])

    def _alone(self, task: Any) -> tuple[Any, Any]:
        """(a pool of one fresh worker, ``task``'s future on it)."""
        from bench.executors.tasks import run_task

        pool = self.new_pool(1)
        return pool, pool.submit(run_task, task)

    def stop(self) -> None:
        """End every worker now (an interruption)."""
        for pool, _ in list(self.retries.values()):
            stop_pool(pool)
        stop_pool(self.pool)

    def close(self) -> None:
        self.pool.shutdown(wait=True)


def _lost(future: Any) -> bool:
    from concurrent.futures.process import BrokenProcessPool

    return not future.cancelled() and isinstance(future.exception(), BrokenProcessPool)


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
        from bench.executors.tasks import drive

        pools = WorkerPools(workers)
        try:
            drive(runner, todo, report, self.config.threads or 1, pools.submit, pools.first_done, pools.result,
                  capacity=workers)
        except BaseException:  # interrupted: what finished is stored; end the workers, do not wait for them
            pools.stop()
            raise
        pools.close()
