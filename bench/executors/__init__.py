"""Executors: where the cells of a grid run. The grid (``bench.grid``) says what runs; an
executor says where: ``local`` (this process), ``ray`` or ``slurm`` (``bench.executors.factory``
builds one). Every executor resumes a run by skipping complete cells, and only the driver
writes records.
"""

from bench.executors.config import ExecutorConfig

__all__ = ["ExecutorConfig"]
