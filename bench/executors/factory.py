"""Building the executor a run config names (its engine is imported only here, on first use)."""

from __future__ import annotations

from typing import Any

from bench.executors.config import ExecutorConfig


def create_executor(config: ExecutorConfig) -> Any:
    if config.kind == "ray":
        from bench.executors.ray_executor import RayExecutor

        return RayExecutor(config)
    if config.kind == "slurm":
        from bench.executors.slurm import SlurmExecutor

        return SlurmExecutor(config)
    from bench.executors.local import LocalExecutor

    return LocalExecutor(config)
