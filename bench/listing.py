"""``bench ls`` and ``bench prepare``: what is registered, and getting datasets ready."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.errors import BenchError

SECTIONS = ("methods", "datasets", "splits", "metrics")
#: Splits whose image files a run reads (training is text-only, so train images are never needed).
IMAGE_SPLITS = ("val", "test")


def listing(what: str = "all") -> dict[str, Any]:
    """The registered methods and datasets, example split specs, and the metrics (whether each
    can run here). ``what`` is a section, ``all``, or a wildcard over method and dataset names;
    with a wildcard, the result's ``pattern`` says so."""
    from bench.plugins import DATASETS, METHODS, PLUGIN_ERRORS, load_plugins
    from bench.scoring import ALL_METRICS, CLIP_METRICS, spice_status

    load_plugins()
    section, pattern = (what, "*") if what in SECTIONS + ("all",) else ("all", what)
    chosen = SECTIONS if section == "all" else (section,)
    a_name = pattern != "*" and not any(c in pattern for c in "*?[")  # one name, not a wildcard

    def entries(registry: Any) -> list[dict[str, Any]]:
        out = []
        names = registry.list(pattern)
        if not names and a_name:  # an alias names its entry (`bench ls flickr`)
            try:
                names = [registry.canonical(pattern)]
            except Exception:  # not this registry's name or alias
                names = []
        for name in names:
            entry = registry.entry(name)
            item = {"name": name, "summary": entry.summary}
            if entry.aliases:
                item["aliases"] = list(entry.aliases)
            if entry.tags.get("style"):
                item["style"] = entry.tags["style"]
            out.append(item)
        return out

    data: dict[str, Any] = {}
    if pattern != "*":
        data["pattern"] = pattern
    if "methods" in chosen:
        data["methods"] = entries(METHODS)
    if "datasets" in chosen:
        data["datasets"] = entries(DATASETS)
    if "splits" in chosen:
        data["splits"] = split_examples(DATASETS)
    if "metrics" in chosen:
        spice_reason = spice_status()
        data["metrics"] = [{"name": m, "available": not (m == "spice" and spice_reason),
                            **({"reason": spice_reason} if m == "spice" and spice_reason else {}),
                            **({"needs": "the images and an evaluation CLIP (bench run: always; bench score: --clip-score)"}
                               if m in CLIP_METRICS else {})} for m in ALL_METRICS]
    if PLUGIN_ERRORS:
        data["plugin_errors"] = [{"where": w, "error": e} for w, e in PLUGIN_ERRORS]
    if a_name and not data["methods"] and not data["datasets"]:
        import difflib

        from bench.errors import ConfigError

        names = [*SECTIONS, "all", *METHODS.list("*"), *DATASETS.list("*")]
        close = difflib.get_close_matches(what, names, n=1)
        raise ConfigError(f"no section, method or dataset is called {what!r}"
                          + (f"; did you mean {close[0]!r}?" if close else f"; sections: {', '.join((*SECTIONS, 'all'))}")
                          + " (a wildcard such as 'cap*' lists the names it matches)")
    return data


def split_examples(datasets: Any) -> list[dict[str, str]]:
    """In-domain specs for every factual dataset, cross-domain pairs within a family (and COCO /
    Flickr30k both ways), and every style dataset, each with its kind."""
    from bench.splits import parse_split

    names = datasets.list()
    factual = [n for n in names if not datasets.entry(n).tags.get("style")]
    specs = list(factual)
    for a in factual:
        specs += [f"{a}->{b}" for b in factual if b != a and a.split("-")[0] == b.split("-")[0]]
    if "coco" in factual and "flickr30k" in factual:
        specs += ["coco->flickr30k", "flickr30k->coco"]
    specs += [n for n in names if datasets.entry(n).tags.get("style")]
    return [{"spec": spec, "kind": parse_split(spec).kind} for spec in dict.fromkeys(specs)]


def prepare(names: list[str], data_root: str | Path | None, cache_dir: str | Path | None) -> list[str]:
    """Build procedural datasets (once per family) and index real ones; one summary line per
    real dataset."""
    from bench.plugins import DATASETS, create_dataset, load_plugins

    load_plugins()
    canonical = list(dict.fromkeys(DATASETS.canonical(n) for n in names))  # unknown names fail before any work
    prepared_worlds: set[str] = set()
    lines = []
    for name in canonical:
        dataset = create_dataset(name, data_root, cache_dir=cache_dir)
        build = getattr(dataset, "prepare", None)
        if build is not None:  # a procedural dataset: build it (once per family)
            family = getattr(dataset, "family", name)
            if family not in prepared_worlds:
                build(cache_dir=cache_dir, verbose=True)
                prepared_worlds.add(family)
            continue
        counts = []
        for split in dataset.splits:
            try:
                loaded = dataset.load(split)
            except BenchError:
                if split == "val":  # some datasets (FlickrStyle10K) have no val split by default
                    continue
                raise
            counts.append(f"{split} {len(loaded):,} images / {len(loaded.captions()):,} captions")
            if split in IMAGE_SPLITS and any(item.path is not None for item in loaded.items):
                loaded.require_images()  # the files the test stage will read: missing ones are named now
                counts[-1] += " (image files present)"
        lines.append(f"{name}: " + "; ".join(counts))
    return lines
