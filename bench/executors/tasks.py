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
import time
import traceback
from collections.abc import Callable
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
    #: fit: the same for every try of every task of one ``plan``, written into the fit it saves:
    #: a fit found on disk with it was trained by this task in this run, by a worker that died
    #: before it could say so (not a fit reused from another run)
    invocation: str = ""


@dataclass
class Plan:
    encodes: list[Task] = field(default_factory=list)
    fits: dict[str, Task] = field(default_factory=dict)  # fit key -> the task that trains it
    cells: list[tuple[Task, str, str]] = field(default_factory=list)  # (task, fit key, cell id)
    #: fit key -> (training data, seed, the decoder it may share) for fits that may share a
    #: decoder with another method's (``Captioner.shared_decoder``); absent for the others
    shares: dict[str, tuple[Any, ...]] = field(default_factory=dict)


def plan(runner: Any, todo: list[tuple[Cell, str]], threads: int) -> Plan:
    """The tasks that complete ``todo`` (cells with their ids), each input and fit once."""
    import uuid

    from bench.plugins import METHODS

    out = Plan()
    invocation = uuid.uuid4().hex
    seen: set[tuple[str, str]] = set()
    for cell, cell_id in todo:
        for dataset, modality in ((cell.split.train, "text"), (cell.split.eval, "image")):
            if (dataset, modality) not in seen:
                seen.add((dataset, modality))
                out.encodes.append(Task("encode", runner.run, dataset=dataset, modality=modality, threads=threads))
        method = METHODS.get(cell.method)
        key = cell.fit_key(method, runner.encoder.id, runner.inputs.train_fingerprint(cell.split.train))
        out.fits.setdefault(key, Task("fit", runner.run, cell, threads=threads, invocation=invocation))
        shared = method.shared_decoder(cell.config)
        if shared is not None:
            out.shares[key] = (cell.split.train, cell.seed, shared)
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
        start = time.perf_counter()
        fit = runner.fitted(task.cell, corpus, content, invocation=task.invocation)
        # the training's time, now or in this task's earlier try (its worker died after saving it)
        seconds = fit.seconds if fit.seconds is not None else time.perf_counter() - start
        return {"fit_key": fit.key, "reused": fit.reused, "seconds": seconds}
    record, samples = runner.compute_cell(task.cell)
    return {"record": record.to_dict(), "samples": [s.to_dict() for s in samples]}


def encode_failure(task: Task, outcome: BaseException) -> tuple[str, str]:
    """(the input an encode task was for, the first line of why it failed): the key
    ``input_failure`` reads."""
    return f"{task.dataset}/{task.modality}", describe_failure(outcome)[0]


def input_failure(failed_inputs: dict[str, str], cell: Cell) -> str:
    """Why ``cell`` cannot run because an input failed to encode ("" when none did): its fit needs
    its training captions, the cell its own test images (``coco`` and ``coco->flickr30k`` share a
    fit but not their test images)."""
    return failed_inputs.get(f"{cell.split.train}/text") or failed_inputs.get(f"{cell.split.eval}/image") or ""


def drive(runner: Any, todo: list[tuple[Cell, str]], report: Any, threads: int, submit: Callable[[Task], Any],
          first_done: Callable[[list[Any]], Any], result: Callable[[Any], Any], capacity: int | None = None) -> None:
    """Run the task graph of ``todo`` on an engine of workers, the driver writing every record.

    ``submit(task)`` starts a task and returns its handle, ``first_done(handles)`` waits for one
    of them to finish and returns it, ``result(handle)`` returns its value or raises its error.
    Encode tasks run first; then the fits, one task per fit key; as each fit finishes, its cells'
    tasks become ready. With a ``capacity`` (how many tasks the engine runs at once: a local
    pool's workers) at most that many are in flight and ready cells go before waiting fits, so
    cells are recorded as their fits finish rather than after every fit, and a fit waits while
    another that may train the decoder it would reuse is in flight (``Plan.shares``), if other
    work is ready; without one (a
    cluster's scheduler places them) every ready task is submitted. A task that raises fails
    its cells (a failed fit, every cell that needs it) in ``failures.jsonl``; the other cells
    complete. Each finished cell is stored at once, so an interruption loses only the cells
    still running.
    """
    from collections import deque

    from bench.executors.base import CellProgress, store_cell

    graph = plan(runner, todo, threads)
    bar = CellProgress(len(graph.cells))

    def fail(cells: list[tuple[Task, str]], line: str, text: str) -> None:
        for task, cell_id in cells:
            runner.record_failure(report, task.cell, cell_id, line, text)
            bar.update(failed=1)

    try:
        failed_inputs: dict[str, str] = {}
        encodes = {submit(task): task for task in graph.encodes}
        for handle, task in encodes.items():
            try:
                result(handle)
            except Exception as exc:  # a dataset that cannot be encoded fails the cells that need it
                key, line = encode_failure(task, exc)
                failed_inputs[key] = line
        cells_of: dict[str, list[tuple[Task, str]]] = {}
        for task, key, cell_id in graph.cells:
            cells_of.setdefault(key, []).append((task, cell_id))
        ready_cells: deque[tuple[Task, tuple[Task, str, str]]] = deque()
        waiting_fits: deque[tuple[Task, str]] = deque()
        for key, task in graph.fits.items():
            kept = []
            for cell_task, cell_id in cells_of.pop(key):
                assert cell_task.cell is not None
                reason = input_failure(failed_inputs, cell_task.cell)
                if reason:
                    fail([(cell_task, cell_id)], reason, reason)
                else:
                    kept.append((cell_task, cell_id))
            if kept:
                cells_of[key] = kept
                waiting_fits.append((task, key))
        pending: dict[Any, tuple[str, Any]] = {}

        def next_fit() -> tuple[Task, str]:
            """The first waiting fit that shares no decoder with a fit in flight, else the first:
            nonoise and decap train one decoder, and side by side one worker would only wait for
            the other's (the decoder cache's lock)."""
            busy = {graph.shares[key] for kind, key in pending.values() if kind == "fit" and key in graph.shares}
            for i, (_, key) in enumerate(waiting_fits):
                if graph.shares.get(key) not in busy:
                    chosen = waiting_fits[i]
                    del waiting_fits[i]
                    return chosen
            return waiting_fits.popleft()

        def fill() -> None:
            while (ready_cells or waiting_fits) and (capacity is None or len(pending) < capacity):
                if ready_cells:
                    task, what = ready_cells.popleft()
                    pending[submit(task)] = ("cell", what)
                else:
                    task, key = next_fit() if capacity is not None else waiting_fits.popleft()
                    pending[submit(task)] = ("fit", key)

        fit_done: dict[str, dict[str, Any]] = {}
        fill()
        while pending:
            bar.update(running=sum(1 for kind, _ in pending.values() if kind == "cell"))
            done = first_done(list(pending))
            kind, what = pending.pop(done)
            try:
                value = result(done)
            except Exception as exc:
                line, text = describe_failure(exc)
                if kind == "fit":
                    fail(cells_of.pop(what), f"its fit failed: {line}", text)
                else:
                    cell_task, cell_id, _ = what
                    runner.record_failure(report, cell_task.cell, cell_id, line, text)
                    bar.update(failed=1)
                fill()
                continue
            if kind == "fit":
                fit_done[what] = value
                ready_cells.extend((cell_task, (cell_task, cell_id, what)) for cell_task, cell_id in cells_of.pop(what))
            else:
                cell_task, cell_id, key = what
                store_cell(runner, report, bar, cell_task.cell, cell_id, value, fit_done, key)
            fill()
    finally:
        bar.close()


def describe_failure(exc: BaseException) -> tuple[str, str]:
    """(one line, the full text) of a task's failure, whatever the engine wrapped it in."""
    text = "".join(traceback.format_exception(exc)).strip()
    line = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
    return f"{type(exc).__name__}: {line}"[:400], text
