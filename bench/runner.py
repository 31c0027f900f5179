"""The runner: build the grid of cells, then execute it.

A cell is (method, split, noise variance, seed). Executing it means: encode (cached), fit on
the train dataset's captions (or reuse an identical fit), caption the eval dataset's test
images, score, and write one record plus per-image samples. ``build_grid`` and ``execute`` are
separate so that a grid can be inspected, filtered or resumed.

Fits are keyed by what they depend on (the method class and its config, the train corpus,
the encoder, the seed), not by the cell: ``coco`` and ``coco->flickr30k`` share one fit, and so
do ``nonoise`` and capdec at σ² = 0. A fit is saved under ``RUN_DIR/checkpoints/<key>/`` and
can caption new images with ``bench caption``.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import platform
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.cache import CacheKey, EmbeddingCache, fingerprint
from bench.captioner import Captioner, Corpus, FitContext, config_dict
from bench.config import RunConfig
from bench.errors import BenchError
from bench.io import write_json_atomic
from bench.progress import progress
from bench.records import Record, RecordStore, git_commit, library_versions, varying_settings
from bench.splits import SplitSpec, parse_split

#: The embedded default: every method on an in-domain, a cross-domain and a style split of the
#: shapes world, capdec's noise-variance sweep (log-spaced, with 0 and the paper's 0.016) and
#: syntic's ablation grid (its three switches, all eight combinations) in and across domains.
DEFAULT_METHODS = ("capdec", "nonoise", "clipre", "decap", "syntic")
DEFAULT_SPLITS = ("shapes-coco", "shapes-coco->shapes-flickr", "shapes-romantic")
DEFAULT_SWEEP = (0.0, 0.004, 0.016, 0.1)
SWEEP_METHOD, SWEEP_SPLIT = "capdec", "shapes-coco"
ABLATION_METHOD = "syntic"
ABLATION_SWEEP = {"syntic.optimise": (True, False), "syntic.project": (True, False), "syntic.auxiliary": (True, False)}
ABLATION_SPLITS = ("shapes-coco", "shapes-coco->shapes-flickr")


@dataclass(frozen=True)
class Cell:
    method: str
    split: SplitSpec
    seed: int
    config: Any  # the method's frozen config
    noise_variance: float | None = None
    #: where the cell belongs in a report: "main" (the method tables), or an extra cell that the
    #: embedded default adds for a figure ("noise-sweep") or a table ("ablation"); not part of
    #: the cell's identity, so a sweep point equal to a main cell is that main cell
    role: str = field(default="main", compare=False)

    @property
    def config_dict(self) -> dict[str, Any]:
        return config_dict(self.config)

    @property
    def id(self) -> str:
        from bench.records import cell_id

        return cell_id(self.method, str(self.split), self.seed, self.noise_variance, self.config_dict)

    def fit_key(self, method_class: type, encoder_id: str, corpus_fingerprint: str) -> str:
        blob = json.dumps([method_class.__module__, method_class.__qualname__, self.config_dict, self.split.train,
                           corpus_fingerprint, encoder_id, self.seed], sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def label(self) -> str:
        noise = f" σ²={self.noise_variance:g}" if self.noise_variance is not None else ""
        return f"{self.method}{noise} on {self.split} (seed {self.seed})"


def build_grid(run: RunConfig) -> list[Cell]:
    """Every cell of the run, in execution order, without duplicates."""
    from bench.plugins import METHODS, load_plugins, method_config

    load_plugins()
    embedded = not run.methods and not run.splits
    methods = [METHODS.canonical(m) for m in (run.methods or DEFAULT_METHODS)]
    splits = [parse_split(s) for s in (run.splits or DEFAULT_SPLITS)]
    cells: list[Cell] = []

    def sweeps(method: str) -> bool:
        """The method injects noise and no preset fixes its level."""
        field_name = METHODS.get(method).noise_field
        return bool(field_name) and field_name not in METHODS.entry(method).tags.get("preset", {})

    def add(method: str, split: SplitSpec, seed: int, noise: float | None, combo: dict[str, Any] | None = None,
            role: str = "main") -> None:
        overrides = _options_for(method, {**run.method_options, **(combo or {})})
        cls = METHODS.get(method)
        if noise is not None and sweeps(method):
            overrides = {**overrides, cls.noise_field: noise}
        config = method_config(method, overrides)
        applied = getattr(config, cls.noise_field) if cls.noise_field else None
        cell = Cell(method, split, seed, config, applied, role)
        if cell not in cells:
            cells.append(cell)

    for seed in run.seeds:
        for split in splits:
            for method in methods:
                for combo in sweep_combinations(method, run.sweep):
                    for noise in (run.noise if (run.noise and sweeps(method)) else (None,)):
                        add(method, split, seed, noise, combo)
        if embedded:
            sweep_split = parse_split(SWEEP_SPLIT)
            for noise in (run.noise or DEFAULT_SWEEP):
                add(SWEEP_METHOD, sweep_split, seed, noise, role="noise-sweep")
            for spec in ABLATION_SPLITS:
                for combo in sweep_combinations(ABLATION_METHOD, ABLATION_SWEEP):
                    add(ABLATION_METHOD, parse_split(spec), seed, None, combo, role="ablation")
    return cells


def sweep_combinations(method: str, sweep: dict[str, Any]) -> list[dict[str, Any]]:
    """Every combination of the ``--sweep`` values that apply to ``method`` (one empty dict when
    none does), as ``--set``-style overrides; the first value of each key varies slowest."""
    import itertools

    keys = [k for k in sweep if _applies(k, method)]
    return [dict(zip(keys, values)) for values in itertools.product(*(sweep[k] for k in keys))] or [{}]


def _applies(key: str, method: str) -> bool:
    target, setting = _split_option(key)
    return bool(setting) and (target == method or (target is None and setting.split(".")[0] in _fields(method)))


def _split_option(key: str) -> tuple[str | None, str]:
    """A ``--set`` key as (the one method it names, or None for all; the dotted setting)."""
    from bench.plugins import METHODS

    head, _, rest = key.partition(".")
    return (METHODS.canonical(head), rest) if head in METHODS else (None, key)


def _fields(method: str) -> set[str]:
    from bench.plugins import METHODS

    return {f.name for f in dataclasses.fields(METHODS.get(method).Config)}


def _options_for(method: str, options: dict[str, Any]) -> dict[str, Any]:
    """``--set`` values for ``method``: keys ``method.field`` for one method, ``field`` for all."""
    out: dict[str, Any] = {}
    for key, value in options.items():
        if _applies(key, method):
            _assign(out, _split_option(key)[1], value)
    return out


def check_options(methods: list[str], options: dict[str, Any]) -> None:
    """Every ``--set`` key must name a setting of at least one of ``methods`` (or of the method it names)."""
    from bench.errors import ConfigError

    for key in options:
        target, setting = _split_option(key)
        if not any(setting.split(".")[0] in _fields(m) for m in ([target] if target else methods)):
            raise ConfigError(f"--set {key}: no selected method has a setting {setting.split('.')[0]!r}")


def _assign(target: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    for part in parts[:-1]:
        target = target.setdefault(part, {})
    # A copy: a later per-method key must not write into the run's shared options.
    target[parts[-1]] = copy.deepcopy(value)


@dataclass
class RunReport:
    completed: list[Record] = field(default_factory=list)
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    fits: int = 0
    fits_reused: int = 0
    seconds: float = 0.0


class Runner:
    """Executes cells against one encoder, one cache and one run folder."""

    def __init__(self, run: RunConfig, log: Callable[[str], None] = print, command: str = "") -> None:
        self.run = run
        self.command = command or " ".join(sys.argv)
        self.log = log
        self.out = Path(run.out)
        self.store = RecordStore(self.out)
        self.cache = EmbeddingCache(run.cache_dir, log=log)
        self._encoder: Any = None
        self._splits: dict[tuple[str, str], Any] = {}
        self._corpora: dict[str, tuple[Corpus, str]] = {}
        self._images: dict[str, tuple[Any, np.ndarray, list[Path]]] = {}
        self._fits: dict[str, Captioner] = {}
        from bench.decoders.shared import DecoderCache

        self.decoders = DecoderCache(self.out / "decoders")
        self._provenance: dict[str, Any] | None = None

    @property
    def encoder(self) -> Any:
        if self._encoder is None:
            from bench.encoders import EncoderConfig, create_encoder

            self._encoder = create_encoder(EncoderConfig(name=self.run.encoder), self.run.device, self.run.cache_dir, self.log)
        return self._encoder

    # -- data -------------------------------------------------------------------------------
    def dataset_split(self, dataset: str, split: str) -> Any:
        from bench.plugins import create_dataset

        key = (dataset, split)
        if key not in self._splits:
            self._splits[key] = create_dataset(dataset, self.run.data_root, cache_dir=self.run.cache_dir).load(split)
        return self._splits[key]

    def corpus(self, dataset: str) -> tuple[Corpus, str]:
        """The training corpus and its fingerprint (encoded or read from the cache once per run)."""
        if dataset not in self._corpora:
            self._corpora[dataset] = self._load_corpus(dataset)
        return self._corpora[dataset]

    def _load_corpus(self, dataset: str) -> tuple[Corpus, str]:
        from bench.plugins import DATASETS

        cls = DATASETS.get(dataset)
        data = self.dataset_split(dataset, "train")
        captions = data.captions()
        content = fingerprint(captions)
        key = CacheKey(self.encoder.id, dataset, "train", "text", content)
        emb = self.cache.get(key, lambda: self.encoder.encode_texts(captions, progress=progress,
                                                                      desc=f"encoding {dataset} train captions"))
        return Corpus(captions, emb, dataset, "train", objects=tuple(getattr(cls, "object_vocabulary", ())),
                      generator=getattr(cls, "generator", "")), content

    def eval_images(self, dataset: str) -> tuple[Any, np.ndarray, list[Path]]:
        """The test split, its image embeddings (encoded or read from the cache once per run) and files."""
        if dataset not in self._images:
            self._images[dataset] = self._load_images(dataset)
        return self._images[dataset]

    def _load_images(self, dataset: str) -> tuple[Any, np.ndarray, list[Path]]:
        data = self.dataset_split(dataset, "test")
        paths = data.require_images()
        content = fingerprint(f"{p}:{p.stat().st_size}" for p in paths)
        key = CacheKey(self.encoder.id, dataset, "test", "image", content)
        emb = self.cache.get(key, lambda: self.encoder.encode_images(paths, progress=progress,
                                                                       desc=f"encoding {dataset} test images")[0])
        return data, emb, paths

    def provenance(self) -> dict[str, Any]:
        """Library versions and the git commit: the same for every cell of a run, looked up once."""
        if self._provenance is None:
            self._provenance = {"versions": library_versions(), "git_commit": git_commit()}
        return self._provenance

    # -- cells ------------------------------------------------------------------------------
    def fitted(self, cell: Cell, corpus: Corpus, content: str) -> tuple[Captioner, str, bool]:
        from bench.plugins import METHODS, create_method

        cls = METHODS.get(cell.method)
        key = cell.fit_key(cls, self.encoder.id, content)
        if key in self._fits:
            return self._fits[key], key, True
        folder = self.out / "checkpoints" / key
        if (folder / "config.json").is_file() and (folder / "encoder.json").is_file():
            method = cls.load(folder)
            method.name = cell.method
            method.fit_info = json.loads((folder / "encoder.json").read_text()).get("fit_info", {})
            self._fits[key] = method
            return method, key, True
        method = create_method(cell.method, cell.config)
        import torch

        torch.manual_seed(cell.seed)
        np.random.seed(cell.seed)
        ctx = FitContext(encoder=self.encoder, cache=self.cache, device=self.run.device, seed=cell.seed,
                         progress=progress, work_dir=folder / "work", log=self.log, cache_dir=Path(self.run.cache_dir),
                         decoders=self.decoders)
        method.fit(corpus, ctx)
        (folder / "encoder.json").unlink(missing_ok=True)
        method.save(folder)
        write_json_atomic(folder / "encoder.json", {"method": cell.method, "encoder": self.run.encoder,
                                                    "encoder_id": self.encoder.id, "fit_info": method.fit_info})
        self._fits[key] = method
        return method, key, False

    def execute_cell(self, cell: Cell) -> Record:
        from bench.scoring import score

        timings: dict[str, float] = {}
        t = time.perf_counter()
        corpus, content = self.corpus(cell.split.train)
        data, image_emb, image_paths = self.eval_images(cell.split.eval)
        timings["encode"] = time.perf_counter() - t
        t = time.perf_counter()
        method, fit_key, reused = self.fitted(cell, corpus, content)
        timings["fit"] = time.perf_counter() - t
        t = time.perf_counter()
        predictions = method.caption_images(np.asarray(image_emb), image_paths)
        timings["caption"] = time.perf_counter() - t
        if len(predictions) != len(data.items):
            raise BenchError(f"{cell.method} returned {len(predictions)} captions for {len(data.items)} images")
        t = time.perf_counter()
        ids = [item.image_id for item in data.items]
        result = score(dict(zip(ids, predictions)), data.references(), progress=None)
        timings["score"] = time.perf_counter() - t
        record = Record(
            method=cell.method, split=str(cell.split), train=cell.split.train, eval=cell.split.eval, kind=cell.split.kind,
            seed=cell.seed, config=cell.config_dict, metrics={k: round(v, 4) for k, v in result.metrics.items()},
            noise_variance=cell.noise_variance, n_images=result.n_images, encoder=self.encoder.id,
            timings={k: round(v, 3) for k, v in timings.items()}, **self.provenance(),
            extra={"role": cell.role, "fit_key": fit_key, "fit_reused": reused, "fit_info": method.fit_info, "device": self.run.device,
                   "unavailable": result.unavailable, "note": data.note},
        )
        samples = [{"image_id": i, "image": str(Path(path).resolve()), "prediction": p, "references": refs,
                    **{m: round(result.per_image[m][k], 4) for m in result.per_image}, "bleu_stats": result.bleu_stats[k]}
                   for k, (i, path, p, refs) in enumerate(zip(ids, image_paths, predictions, (item.captions for item in data.items)))]
        self.store.add(record, samples)
        return record

    def execute(self, cells: list[Cell]) -> RunReport:
        report = RunReport()
        start = time.perf_counter()
        todo = [c for c in cells if c.id not in self.store]
        report.skipped = len(cells) - len(todo)
        if report.skipped:
            self.log(f"{report.skipped} of {len(cells)} cells are already complete in {self.out}; skipping them")
        info = {"command": self.command, "cells": len(cells), "run_config": config_dict(self.run),
                "python": platform.python_version(), "platform": platform.platform(), "device": self.run.device,
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        if todo:  # the encoder is built anyway; say what it was (a finished run keeps what it said)
            info["encoder"] = {"spec": self.run.encoder, "id": self.encoder.id, **getattr(self.encoder, "card", {})}
        elif (self.out / "run.json").is_file():
            info["encoder"] = json.loads((self.out / "run.json").read_text(encoding="utf-8")).get("encoder")
        write_json_atomic(self.out / "run.json", info)
        bar = progress(todo, total=len(todo), desc="cells", unit="cell")
        for cell in bar:
            if hasattr(bar, "set_postfix_str"):
                bar.set_postfix_str(cell.label())
            try:
                record = self.execute_cell(cell)
            except BenchError as exc:
                report.failed.append((cell.label(), str(exc)))
                self.log(f"cell failed: {cell.label()}: {exc}")
                _append_failure(self.out, cell, str(exc))
                continue
            except Exception as exc:  # a bug in one method must not cost the other cells
                report.failed.append((cell.label(), f"{type(exc).__name__}: {exc}"))
                self.log(f"cell failed: {cell.label()}: {type(exc).__name__}: {exc}")
                _append_failure(self.out, cell, traceback.format_exc())
                continue
            report.completed.append(record)
            reused = record.extra.get("fit_reused")
            report.fits_reused += bool(reused)
            report.fits += not reused
        report.seconds = time.perf_counter() - start
        write_json_atomic(self.out / "run.json", {**info, "wall_s": round(report.seconds, 1),
                                                   "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        return report


def _append_failure(out: Path, cell: Cell, error: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "failures.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"cell_id": cell.id, "cell": cell.label(), "error": error,
                             "date": time.strftime("%Y-%m-%dT%H:%M:%S")}) + "\n")


def summary_table(records: list[Record]) -> str:
    """A plain-text table of every record: method, split, σ², BLEU-4, METEOR, ROUGE-L, CIDEr, and
    the settings that vary between a method's records (an ablation's switches, a swept τ)."""
    settings = varying_settings(records)
    rows = sorted(records, key=lambda r: (r.kind != "in-domain", r.split, r.method, r.noise_variance or 0, r.seed,
                                          settings.get(r.cell_id, "")))
    head = (f"{'method':<9} {'split':<28} {'kind':<12} {'σ²':>7} {'seed':>4} {'BLEU-4':>7} {'METEOR':>7} {'ROUGE-L':>8} "
            f"{'CIDEr':>7}  setting")
    lines = [head, "-" * len(head)]
    for r in rows:
        noise = f"{r.noise_variance:g}" if r.noise_variance is not None else "-"
        m = r.metrics
        lines.append(f"{r.method:<9} {r.split:<28} {r.kind:<12} {noise:>7} {r.seed:>4} {m.get('bleu4', float('nan')):7.2f} "
                     f"{m.get('meteor', float('nan')):7.2f} {m.get('rouge_l', float('nan')):8.2f} "
                     f"{m.get('cider', float('nan')):7.2f}  {settings.get(r.cell_id, '')}".rstrip())
    return "\n".join(lines)
