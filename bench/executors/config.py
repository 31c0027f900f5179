"""Where a run's cells execute: the executor and its options (part of the run config)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal

from bench.errors import ConfigError

#: More local workers or threads than any machine this runs on has cores: a typo, not a plan.
MAX_WORKERS = 256
#: The options each executor takes (the rest must keep their defaults).
OPTIONS = {
    "local": ("workers", "threads"),
    "ray": ("address", "cpus_per_task", "gpus_per_task", "threads"),
    "slurm": ("partition", "time", "cpus_per_task", "gpus_per_task", "array_parallelism", "slurm_cluster", "threads"),
}


@dataclass(frozen=True)
class ExecutorConfig:
    """``kind``: ``local`` (this machine: one cell after another in this process, or tasks on
    ``workers`` processes), ``ray`` (a Ray cluster) or
    ``slurm`` (job arrays through submitit; ``slurm_cluster = "local"`` runs the same arrays as
    local processes, to try a configuration before submitting it)."""

    kind: Literal["local", "ray", "slurm"] = "local"
    #: local: worker processes; 0 chooses: one per core (at most 4) on the CPU, one on a GPU
    workers: int = 0
    address: str = ""  # ray: "auto", HOST:PORT, or empty to start a Ray on this machine
    cpus_per_task: int = 1
    gpus_per_task: float = 0.0
    threads: int = 0  # torch threads in a task; 0: cpus_per_task (local: 1 per worker; one worker: all cores)
    partition: str = ""  # slurm
    time: int = 60  # slurm: minutes per task
    array_parallelism: int = 64  # slurm: tasks of one array running at once
    slurm_cluster: Literal["slurm", "local"] = "slurm"

    def __post_init__(self) -> None:
        given = [f.name for f in fields(self) if f.name != "kind" and getattr(self, f.name) != f.default]
        stray = [name for name in given if name not in OPTIONS[self.kind]]
        if stray:
            flags = ", ".join("--" + name.replace("_", "-") for name in stray)
            users = sorted({k for k, names in OPTIONS.items() if any(n in names for n in stray)})
            raise ConfigError(f"{flags} {'is an option' if len(stray) == 1 else 'are options'} of the "
                              f"{' and '.join(users)} executor, not of {self.kind}")
        if self.cpus_per_task < 1 or self.time < 1 or self.array_parallelism < 1 or self.threads < 0 \
                or self.workers < 0:
            raise ConfigError("--cpus-per-task, --time and --array-parallelism must be >= 1, --threads and --workers >= 0")
        if self.workers > MAX_WORKERS or self.threads > MAX_WORKERS:  # each worker is a process holding a model
            raise ConfigError(f"--workers and --threads must be at most {MAX_WORKERS}, got {max(self.workers, self.threads)}")
        if self.gpus_per_task < 0:
            raise ConfigError(f"--gpus-per-task must be >= 0, got {self.gpus_per_task}")
        if self.kind == "slurm" and self.gpus_per_task != int(self.gpus_per_task):  # Ray shares a GPU; Slurm asks for whole ones
            raise ConfigError(f"--gpus-per-task must be a whole number with --executor slurm (Slurm allocates whole GPUs), "
                              f"got {self.gpus_per_task:g}")
        if self.kind == "slurm" and self.slurm_cluster == "slurm" and not self.partition:
            raise ConfigError("--executor slurm needs --partition P (or --slurm-cluster local to try it on this machine)")

    @property
    def task_threads(self) -> int:
        return self.threads or self.cpus_per_task
