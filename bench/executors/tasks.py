"""The grid as a task graph, and the function every worker runs.

Three kinds of task, each a small picklable value (never a model):

* ``encode``: one per (dataset, split, modality) the cells need; each is encoded once, into the
  shared embedding cache (whose per-key lock also stops two workers encoding it at once);
* ``fit``: one per distinct fit key (shared fits, such as nonoise's and capdec's at σ² = 0,
  or one fit for ``coco`` and ``coco->flickr30k``, train once); it writes the fit to
  ``RUN_DIR/checkpoints/<key>/``, which must sit on storage the workers share;
* ``cell``: caption and score one cell with its fit, read back from the checkpoint; its result
  (the record and the per-image samples, as plain values) returns to the driver, which alone
  writes ``records.jsonl`` and ``samples/``.
"""

from __future__ import annotations

import os
import sys
import traceback
from dataclasses import dataclass, field
from typing import Any

from bench.grid import Cell, RunConfig


@dataclass(frozen=True)
class Task:
    kind: str  # "encode", "fit" or "cell"
    run: RunConfig
    cell: Cell | None = None
    dataset: str = ""  # encode: the dataset and what of it
    modality: str = ""  # encode: "text" (training captions) or "image" (test images)
    threads: int = 1


@dataclass
class Plan:
    encodes: list[Task] = field(default_factory=list)
    fits: dict[str, Task] = field(default_factory=dict)  # fit key -> the task that trains it
    cells: list[tuple[Task, str, str]] = field(default_factory=list)  # (task, fit key, cell id)


def plan(runner: Any, todo: list[tuple[Cell, str]], threads: int) -> Plan:
    """The tasks that complete ``todo`` (cells with their ids), each input and fit once."""
    from bench.plugins import METHODS

    out = Plan()
    seen: set[tuple[str, str]] = set()
    for cell, cell_id in todo:
        for dataset, modality in ((cell.split.train, "text"), (cell.split.eval, "image")):
            if (dataset, modality) not in seen:
                seen.add((dataset, modality))
                out.encodes.append(Task("encode", runner.run, dataset=dataset, modality=modality, threads=threads))
        key = cell.fit_key(METHODS.get(cell.method), runner.encoder.id, runner.inputs.train_fingerprint(cell.split.train))
        out.fits.setdefault(key, Task("fit", runner.run, cell, threads=threads))
        out.cells.append((Task("cell", runner.run, cell, threads=threads), key, cell_id))
    return out


_RUNNERS: dict[str, Any] = {}


def run_task(task: Task) -> dict[str, Any]:
    """Run one task in a worker; returns plain values. A worker process keeps its runner (the
    encoder, the data, fits in memory) for the next task of the same run."""
    import torch

    from bench.config import config_dict
    from bench.plugins import load_plugins
    from bench.runner import Runner

    os.environ.setdefault("BENCH_PROGRESS", "0")
    load_plugins()  # a fresh worker process knows no method or dataset yet
    torch.set_num_threads(max(1, task.threads))
    key = repr(config_dict(task.run))
    if key not in _RUNNERS:
        _RUNNERS.clear()
        _RUNNERS[key] = Runner(task.run, log=lambda message: print(message, file=sys.stderr, flush=True))
    runner = _RUNNERS[key]
    if task.kind == "encode":
        if task.modality == "text":
            runner.inputs.corpus(task.dataset)
        else:
            runner.inputs.eval_images(task.dataset)
        return {"ok": True}
    assert task.cell is not None
    if task.kind == "fit":
        corpus, content = runner.inputs.corpus(task.cell.split.train)
        _, key, reused = runner.fitted(task.cell, corpus, content)
        return {"fit_key": key, "reused": reused}
    record, samples = runner.compute_cell(task.cell)
    return {"record": record.to_dict(), "samples": [s.to_dict() for s in samples]}


def describe_failure(exc: BaseException) -> tuple[str, str]:
    """(one line, the full text) of a task's failure, whatever the engine wrapped it in."""
    text = "".join(traceback.format_exception(exc)).strip()
    line = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
    return f"{type(exc).__name__}: {line}"[:400], text
