"""The Ray executor: tasks on a Ray cluster (``pip install -e '.[ray]'``).

Encode tasks run first; then one fit task per fit key, each declaring ``--cpus-per-task`` and
``--gpus-per-task`` so that Ray places them (one GPU each, say); as each fit finishes, the
caption-and-score tasks of its cells are submitted. Results return to this process, which
alone writes records. A task that raises, or whose worker dies, fails its cells (and a failed
fit fails the cells that need it) in ``failures.jsonl``; the other cells complete, and running
the command again finishes the failed ones. Tasks are not retried by Ray: a failure is
recorded, not hidden.
"""

from __future__ import annotations

import os
from typing import Any

from bench.errors import BenchError
from bench.executors.base import Executor
from bench.executors.tasks import drive, run_task

#: Environment a worker needs to find the same plugins, caches and settings as the driver.
FORWARDED_ENV = ("TEXTCAP_BENCH_PLUGINS", "TEXTCAP_BENCH_CACHE", "TEXTCAP_BENCH_DATA", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE",
                 "BENCH_PROGRESS", "PYTHONPATH")


class RayExecutor(Executor):
    def check(self) -> None:
        try:
            import ray  # noqa: F401
        except ImportError:
            raise BenchError("--executor ray needs Ray: pip install -e '.[ray]' (or pip install 'ray[default]')") from None
        self._connect()

    def _connect(self) -> None:
        import ray

        if ray.is_initialized():
            return
        self._probe()
        env = {name: os.environ[name] for name in FORWARDED_ENV if name in os.environ}
        runtime_env = {"env_vars": env} if env else None
        try:
            if self.config.address:
                ray.init(address=self.config.address, runtime_env=runtime_env, log_to_driver=True, logging_level="ERROR")
            else:  # a Ray of this machine, for this run
                ray.init(runtime_env=runtime_env, include_dashboard=False, log_to_driver=True, logging_level="ERROR")
        except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
            where = self.config.address or "this machine"
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise BenchError(f"cannot reach a Ray cluster at {where} ({first[:200]})") from None

    def _probe(self, timeout: float = 5.0) -> None:
        """A HOST:PORT that does not answer is named at once (Ray itself retries for minutes)."""
        import socket

        address = self.config.address
        if not address or address == "auto" or "://" in address:
            return
        host, _, port = address.rpartition(":")
        try:
            with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
                pass
        except (OSError, ValueError) as exc:
            raise BenchError(f"cannot reach a Ray cluster at {address} ({getattr(exc, 'strerror', None) or exc})") from None

    def run(self, runner: Any, todo: list[tuple[Any, str]], report: Any) -> None:
        import ray

        self._connect()
        remote = ray.remote(run_task).options(num_cpus=self.config.cpus_per_task, num_gpus=self.config.gpus_per_task,
                                              max_retries=0)

        def first_done(pending: list[Any]) -> Any:
            return ray.wait(pending, num_returns=1)[0][0]

        drive(runner, todo, report, self.config.task_threads, remote.remote, first_done, ray.get)
