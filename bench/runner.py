"""The runner: execute the cells of a grid (``bench.grid``) against one encoder and one run folder.

Executing a cell means: encode (cached), fit on the train dataset's captions (or reuse an
identical fit), caption the eval dataset's test images, score, and write one record plus
per-image samples. Fits are keyed by what they depend on (``Cell.fit_key``) and saved under
``RUN_DIR/checkpoints/<key>/`` (``bench.fits``), from where ``bench caption`` can use them.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from bench.captioner import Captioner, Corpus, FitContext
from bench.config import config_dict
from bench.errors import BenchError
from bench.fits import fit_problem, load_fit, save_fit
from bench.grid import Cell, RunConfig, resource_folders, resources_fingerprint
from bench.inputs import RunInputs
from bench.io import write_json_atomic
from bench.progress import progress
from bench.records import RUN_FOLDERS, SAMPLES_DIR, Record, RecordStore, Sample, git_commit, library_versions

#: The share of a decoder's training captions cut to decoder.max_length above which its cells warn.
TRUNCATION_WARNING = 0.01


class Fitted(NamedTuple):
    """A cell's fitted method (``Runner.fitted``)."""

    method: Captioner
    key: str  # its fit key: the folder under RUN_DIR/checkpoints
    reused: bool  # from memory or from an earlier run's (or another invocation's) saved fit
    #: how long it took: training and saving it now, or training it in an earlier try of the same
    #: fit task of this run whose worker died after saving it (``fit_seconds``); None when reused
    seconds: float | None = None


@dataclass
class RunReport:
    #: the id of every cell of the grid (done now, before, or failed), in grid order
    cell_ids: list[str] = field(default_factory=list)
    completed: list[Record] = field(default_factory=list)
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    fits: int = 0
    fits_reused: int = 0
    seconds: float = 0.0


class Runner:
    """Executes cells against one encoder, one cache and one run folder, through an executor
    (``bench.executors``; by default this process). In a worker it computes what it is given
    (``compute_cell``, ``fitted``) and the driver writes."""

    def __init__(self, run: RunConfig, log: Callable[[str], None] = print, command: str = "", executor: Any = None) -> None:
        from bench.decoders.fit_cache import DecoderCache

        self.run = run
        self.command = command or " ".join(sys.argv)
        self.log = log
        self.out = Path(run.out)
        self.store = RecordStore(self.out)
        self.inputs = RunInputs(run.encoder_config(), run.device, run.data_root, run.cache_dir, log)
        #: the evaluation encoder's inputs (CLIP-S): the run's own unless --eval-encoder names another
        self.eval_inputs = (self.inputs if run.eval_encoder_spec == run.encoder else
                            RunInputs(run.encoder_config(run.eval_encoder_spec), run.device, run.data_root, run.cache_dir, log))
        self._clip_scorer: Any = None
        self.decoders = DecoderCache(self.out / "decoders", log=log)
        if executor is None:  # this process, one cell after another (the CLI builds the run's own executor)
            from bench.executors.sequential import SequentialExecutor

            executor = SequentialExecutor(run.executor)
        self.executor = executor
        self._fits: dict[str, Captioner] = {}
        self._provenance: dict[str, Any] | None = None

    @property
    def encoder(self) -> Any:
        return self.inputs.encoder

    @property
    def cache(self) -> Any:
        return self.inputs.cache

    @property
    def clip_scorer(self) -> Any:
        if self._clip_scorer is None:
            from bench.clipscore import ClipScorer

            self._clip_scorer = ClipScorer(self.eval_inputs.encoder, self.eval_inputs.cache)
        return self._clip_scorer

    def provenance(self) -> dict[str, Any]:
        """Library versions and the git commit: the same for every cell of a run, looked up once."""
        if self._provenance is None:
            self._provenance = {"versions": library_versions(), "git_commit": git_commit()}
        return self._provenance

    # -- cells ------------------------------------------------------------------------------
    def fitted(self, cell: Cell, corpus: Corpus, content: str, invocation: str = "") -> Fitted:
        """The cell's fitted method, trained now or reused.

        ``invocation`` (a worker's fit task): written into the fit this trains, with how long it
        took; a saved fit that carries it was trained by an earlier try of the same task in this
        run (its worker died after saving it), so it is not "reused" and its time is that try's."""
        from bench.plugins import METHODS, create_method

        cls = METHODS.get(cell.method)
        key = cell.fit_key(cls, self.encoder.id, content)
        if key in self._fits:
            return Fitted(self._fits[key], key, True)
        folder = self.out / "checkpoints" / key
        problem = fit_problem(folder)
        if problem is None:
            try:
                self._fits[key], meta = load_fit(folder, cls)
                if invocation and meta.get("invocation") == invocation and isinstance(meta.get("fit_seconds"), (int, float)):
                    return Fitted(self._fits[key], key, False, float(meta["fit_seconds"]))
                return Fitted(self._fits[key], key, True)
            except BenchError as exc:
                problem = str(exc)
        if problem != "missing":
            self.log(f"warning: the saved fit {folder} is not usable ({problem}); fitting it again")
        start = time.perf_counter()
        method = create_method(cell.method, cell.config)
        import torch

        torch.manual_seed(cell.seed)
        np.random.seed(cell.seed)
        ctx = FitContext(encoder=self.encoder, cache=self.cache, device=self.run.device, seed=cell.seed,
                         progress=progress, log=self.log, cache_dir=Path(self.run.cache_dir), decoders=self.decoders)
        method.fit(corpus, ctx)
        seconds = time.perf_counter() - start
        meta = {"method": cell.method, "encoder": self.run.encoder, "encoder_id": self.encoder.id,
                "cache_dir": str(Path(self.run.cache_dir).resolve()), "fit_info": method.fit_info, "fit_seconds": round(seconds, 3)}
        if invocation:
            meta["invocation"] = invocation
        clip_weight = self.inputs.encoder_config.shapes_text_attribute_weight
        if clip_weight is not None:  # which world CLIP "shapes" was: bench caption builds the same one
            meta["encoder_options"] = {"shapes_text_attribute_weight": clip_weight}
        save_fit(folder, method, meta)
        self._fits[key] = method
        return Fitted(method, key, False, round(time.perf_counter() - start, 3))  # training and saving, as a cell times it

    # -- inputs and identities -----------------------------------------------------------------
    def resolve(self, cells: list[Cell]) -> list[tuple[Cell, str]]:
        """Each cell with its id, after loading everything the ids depend on: the data of every
        split first (a missing or malformed file fails here, before any model loads), then the
        encoder. Each method checks its config against its training data meanwhile
        (``Captioner.check_training``). A run folder holds the results of one set of inputs: one whose records were
        computed with another encoder or other data is refused (see :meth:`check_inputs`)."""
        from bench.plugins import METHODS

        for cell in cells:
            self.inputs.train_fingerprint(cell.split.train)
            self.inputs.eval_fingerprint(cell.split.eval)
            METHODS.get(cell.method).check_training(cell.config, self.inputs.training_data(cell.split.train))
        self._check_encoder_spec()
        if self.run.clip_score:
            self.eval_inputs.encoder  # noqa: B018 - a bad --eval-encoder fails here, before any output
        resolved = [(cell, cell.id(self.inputs.identity(cell.split.train, cell.split.eval))) for cell in cells]
        for cell in cells:  # what depends on the encoder's width (attention heads)
            METHODS.get(cell.method).check_training(cell.config, self.inputs.training_data(cell.split.train, self.encoder.dim))
        self.check_inputs(cells, resolved)
        return resolved

    def _check_encoder_spec(self) -> None:
        """Before loading the encoder: a folder whose records came from another encoder spec."""
        specs = {r.encoder.rsplit("@", 1)[0] for r in self.store.records() if r.encoder}
        if specs and specs != {self.run.encoder}:
            raise BenchError(f"{self.out} holds results computed with encoder {', '.join(sorted(specs))}, not {self.run.encoder}; "
                             "one run folder holds one set of inputs: pass another --out")

    def check_inputs(self, cells: list[Cell], resolved: list[tuple[Cell, str]] | None = None) -> None:
        """Refuse a run folder whose records were computed with other inputs than this run's:
        another encoder (or other weights under the same spec), a dataset of the same name
        with other content, or (``resolved``: the cells with their ids) other files in a model
        folder a cell's config names. Reusing its cells would report stale numbers as new; adding
        new ones beside them would put two sets of inputs in one report (and two results of one
        seed in one row)."""
        from bench.inputs import EVAL_FINGERPRINT_VERSION
        from bench.records import cell_id

        encoder = self.encoder.id
        train = {c.split.train: self.inputs.train_fingerprint(c.split.train) for c in cells}
        evals = {c.split.eval: self.inputs.eval_fingerprint(c.split.eval) for c in cells}
        # the cells whose configs name model folders, by what they are without those folders' content
        with_folders = {cell_id(c.method, str(c.split), c.seed, c.noise_variance, c.config_dict): (c, i)
                        for c, i in (resolved or []) if resources_fingerprint(c.config)}
        for record in self.store.records():
            problem = ""
            same = with_folders.get(cell_id(record.method, record.split, record.seed, record.noise_variance, record.config))
            if not record.inputs.known:
                problem = "records without input fingerprints (from an older version)"
            elif record.encoder != encoder:
                problem = f"results computed with encoder {record.encoder}, not {encoder}"
            elif record.train in train and record.train_fingerprint != train[record.train]:
                problem = f"results trained on other {record.train} captions than this run's"
            elif record.eval in evals and not record.eval_fingerprint.startswith(EVAL_FINGERPRINT_VERSION):
                problem = (f"results of an older version, whose cell identity did not cover the {record.eval} test "
                           "images' pixels (a replaced image would have reused them)")
            elif record.eval in evals and record.eval_fingerprint != evals[record.eval]:
                problem = f"results scored on another {record.eval} test split than this run's"
            elif self.run.clip_score and not record.eval_encoder:
                problem = "results without CLIP-S (an older version, or --no-clip-score); add --no-clip-score to add to it"
            elif self.run.clip_score and record.eval_encoder != self.clip_scorer.id:
                problem = f"CLIP-S computed with evaluation encoder {record.eval_encoder}, not {self.clip_scorer.id}"
            elif not self.run.clip_score and record.eval_encoder:
                problem = "results with CLIP-S; leave out --no-clip-score to add to it"
            elif same is not None and record.cell_id != same[1]:
                folders = ", ".join(str(f) for f in resource_folders(same[0].config))
                problem = (f"a result of {same[0].label()} computed with other files in {folders} than are there now "
                           "(a model folder changed in place)")
            if problem:
                raise BenchError(f"{self.out} holds {problem}; one run folder holds one set of inputs: pass another --out")

    # -- cells ------------------------------------------------------------------------------
    def execute_cell(self, cell: Cell) -> Record:
        """Compute a cell and store its record and samples."""
        record, samples = self.compute_cell(cell)
        self.store.add(record, samples, same_inputs=True)
        return record

    def compute_cell(self, cell: Cell) -> tuple[Record, list[Sample]]:
        """A cell's record and per-image samples (fitting, or reusing, its method first); nothing
        is written but the fit. Executors run this in workers; the driver alone writes records."""
        from bench.scoring import score

        timings: dict[str, float] = {}
        t = time.perf_counter()
        corpus, content = self.inputs.corpus(cell.split.train)
        test = self.inputs.eval_images(cell.split.eval)
        timings["encode"] = time.perf_counter() - t
        t = time.perf_counter()
        method, fit_key, reused, _ = self.fitted(cell, corpus, content)
        timings["fit"] = time.perf_counter() - t
        t = time.perf_counter()
        predictions = method.caption_images(np.asarray(test.embeddings), test.paths)
        timings["caption"] = time.perf_counter() - t
        items = test.data.items
        if len(predictions) != len(items):
            raise BenchError(f"{cell.method} returned {len(predictions)} captions for {len(items)} images")
        t = time.perf_counter()
        ids = [item.image_id for item in items]
        result = score(dict(zip(ids, predictions)), test.data.references(), progress=progress)
        eval_encoder = ""
        if self.run.clip_score:
            images = self.eval_inputs.eval_images(cell.split.eval).embeddings if self.eval_inputs is not self.inputs else test.embeddings
            values, per = self.clip_scorer.score(np.asarray(images), predictions, [i.captions for i in items], cell.split.eval)
            result.metrics.update(values)
            result.per_image.update(per)
            eval_encoder = self.clip_scorer.id
        timings["score"] = time.perf_counter() - t
        warnings = []
        empty = sum(1 for p in predictions if not str(p).strip())
        if empty:  # a decoder that says nothing scores 0 on it: the reader must be told why
            warnings.append(f"{empty} of {len(predictions)} captions are empty")
            self.log(f"warning: {cell.label()}: {warnings[-1]}")
        cut, total = ((method.fit_info or {}).get(k) for k in ("truncated_captions", "captions"))
        if isinstance(cut, int) and isinstance(total, int) and cut > TRUNCATION_WARNING * total:
            # a decoder that never saw the ends of many of its captions (a few long ones are usual: COCO's)
            warnings.append(f"{cut} of {total} training captions were longer than decoder.max_length allows and were cut")
            self.log(f"warning: {cell.label()}: {warnings[-1]}")
        record = Record(
            cell_id=cell.id(self.inputs.identity(cell.split.train, cell.split.eval)),  # the id resolve() gave it
            method=cell.method, split=str(cell.split), train=cell.split.train, eval=cell.split.eval, kind=cell.split.kind,
            seed=cell.seed, config=cell.config_dict, metrics={k: round(v, 4) for k, v in result.metrics.items()},
            noise_variance=cell.noise_variance, n_images=result.n_images, encoder=self.encoder.id,
            train_fingerprint=self.inputs.train_fingerprint(cell.split.train),
            eval_fingerprint=self.inputs.eval_fingerprint(cell.split.eval),
            timings={k: round(v, 3) for k, v in timings.items()}, **self.provenance(), role=cell.role, fit_key=fit_key,
            fit_reused=reused, fit_info=method.fit_info, device=self.run.device, threads=_threads(), unavailable=result.unavailable,
            note=test.data.note, warnings=warnings, eval_encoder=eval_encoder, extra=_unused_extra(cell),
        )
        samples = [Sample(image_id, str(Path(path).resolve()), prediction, tuple(item.captions),
                          {m: round(result.per_image[m][k], 4) for m in result.per_image}, tuple(result.bleu_stats[k]))
                   for k, (image_id, path, prediction, item) in enumerate(zip(ids, test.paths, predictions, items))]
        return record, samples

    def _remove_stale_temporaries(self) -> None:
        """Half-written files of writes a killed process never finished, in the run folder and the
        cache (an embedding of a large corpus is a gigabyte): said, then removed."""
        from bench.cache import CACHE_FOLDERS, GENERATED_FOLDER, SHAPES_FOLDER
        from bench.io import remove_stale_temporaries

        removed = freed = 0
        cache = Path(self.run.cache_dir).expanduser()
        # only what this tool writes: the run folder's own files and folders, the cache's entries
        places = [(self.out, False, False), *((self.out / name, True, False) for name in RUN_FOLDERS),
                  *((cache / name, True, name in (GENERATED_FOLDER, SHAPES_FOLDER)) for name in CACHE_FOLDERS)]
        for folder, recursive, images in places:
            if folder.is_dir():
                files, size = remove_stale_temporaries(folder, recursive=recursive, earlier_images=images)
                removed, freed = removed + files, freed + size
        if removed:
            self.log(f"removed {removed} temporary file(s) ({freed / 1e6:.1f} MB) that interrupted writes left in "
                     f"{self.out} or {self.run.cache_dir}")

    def execute(self, cells: list[Cell], resolved: list[tuple[Cell, str]] | None = None) -> RunReport:
        """Run every cell not complete in the run folder; bad inputs fail before the first cell.
        ``resolved`` is what :meth:`resolve` returned for ``cells``, when the caller has it."""
        start = time.perf_counter()
        resolved = resolved if resolved is not None else self.resolve(cells)
        report = RunReport(cell_ids=[i for _, i in resolved])
        if self.store.problems:
            self.log(f"warning: {len(self.store.problems)} line(s) of {self.store.path} are not records this version can use "
                     f"({self.store.problems[0]}); they are kept as they are")
        # complete: a record and its per-image samples (without them the cell has no interval, no
        # gallery, no test: it is computed again, its fit reused, and its new record wins)
        samples = self.out / SAMPLES_DIR
        problems = {i: self.store.samples_problem(i) for _, i in resolved if i in self.store}
        lacking = {i for i, problem in problems.items() if problem}
        if lacking:
            first = next(i for i in problems if problems[i])
            self.log(f"{len(lacking)} recorded cell(s) of {self.out} have no usable samples file (first: "
                     f"{samples / (first + '.json')}: {problems[first]}); computing them again")
        todo = [(c, i) for c, i in resolved if i not in self.store or i in lacking]
        report.skipped = len(cells) - len(todo)
        if report.skipped:
            self.log(f"{report.skipped} of {len(cells)} cells are already complete in {self.out}; skipping them")
        info = {"command": self.command, "cells": len(cells), "run_config": config_dict(self.run),
                "python": platform.python_version(), "platform": platform.platform(), "device": self.run.device,
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        info["encoder"] = {"spec": self.run.encoder, "id": self.encoder.id, **getattr(self.encoder, "card", {})}
        info["history"] = _history(self.out / "run.json")  # the earlier runs into this folder, kept
        write_json_atomic(self.out / "run.json", info)
        self._remove_stale_temporaries()
        try:
            if todo:
                self.executor.run(self, todo, report)
        finally:  # an interrupted run is said so, with what it computed
            report.seconds = time.perf_counter() - start
            write_json_atomic(self.out / "run.json", {**info, "wall_s": round(report.seconds, 1), "computed": len(report.completed),
                                                       "skipped": report.skipped, "failed": len(report.failed),
                                                       "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        return report

    def record_failure(self, report: RunReport, cell: Cell, cell_id: str, message: str, detail: str) -> None:
        """A cell that failed: said in the log, counted, and appended to ``failures.jsonl``."""
        report.failed.append((cell.label(), message))
        self.log(f"cell failed: {cell.label()}: {message}")
        self.store.add_failure({"cell_id": cell_id, "cell": cell.label(), "error": detail, "date": time.strftime("%Y-%m-%dT%H:%M:%S")})


#: How many earlier invocations ``run.json`` keeps.
HISTORY = 50


def _history(path: Path) -> list[dict[str, Any]]:
    """The earlier ``bench run`` invocations on a folder, from its ``run.json`` (each: command,
    start, end, wall time, cells computed and skipped), the latest last; at most ``HISTORY``."""
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    if not isinstance(old, dict):
        return []
    earlier = [h for h in old.get("history", []) if isinstance(h, dict)]
    last = {k: old[k] for k in ("command", "started", "finished", "wall_s", "cells", "computed", "skipped", "failed") if k in old}
    return (earlier + ([last] if last else []))[-HISTORY:]


def _threads() -> int:
    import torch

    return int(torch.get_num_threads())


def _unused_extra(cell: Cell) -> dict[str, Any]:
    """``{"unused_settings": [...]}``: the flattened config keys an off switch of the cell leaves
    unused (``SWITCHED``), so that its report row is not named by them; {} when there are none."""
    from bench.config import config_to_dict, switched_off
    from bench.records import flatten_config

    off = switched_off(type(cell.config), config_to_dict(cell.config)) if cell.config is not None else set()
    keys = sorted(k for k in flatten_config(cell.config_dict) if k.split(".")[0] in off)
    return {"unused_settings": keys} if keys else {}
