"""``python -m bench``: the command line.

Each subcommand is a function ``cmd_<name>(args) -> int``; heavy imports happen inside it.
Bad input raises :class:`BenchError` and becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.errors import BenchError, ConfigError

PROG = "bench"

EXAMPLES = {
    "ls": "examples:\n  python -m bench ls\n  python -m bench ls 'cap*'\n  python -m bench ls datasets --json",
    "prepare": "examples:\n  python -m bench prepare shapes\n  python -m bench prepare coco flickr30k --data-root ~/data",
    "run": ("examples:\n  python -m bench run                       # the embedded default\n"
            "  python -m bench run --methods capdec,decap --split 'coco->flickr' --data-root ~/data\n"
            "  python -m bench run --methods capdec --split shapes-coco --noise 0,0.004,0.016 --seeds 0,1,2"),
    "score": ("examples:\n  python -m bench score --predictions preds.json --references dataset_coco.json --split test\n"
              "  python -m bench score --predictions flat_with_predictions.json --json"),
    "report": "examples:\n  python -m bench report runs/latest",
    "check": "examples:\n  python -m bench check runs/latest --baseline baseline/records.jsonl --tolerance cider=1.0,bleu4=0.5",
    "caption": "examples:\n  python -m bench caption --method capdec --checkpoint runs/latest/checkpoints/CELL --images my_photos/",
}


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit code 2), like every other bad input."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="A benchmark and ablation harness for text-only image captioning.",
                     formatter_class=argparse.RawDescriptionHelpFormatter,
                     epilog="Run `python -m bench COMMAND --help` for a command's options and examples.")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_text, description=help_text, epilog=EXAMPLES.get(name),
                              formatter_class=argparse.RawDescriptionHelpFormatter)

    p = add("ls", "List methods, datasets, split kinds and metrics.")
    p.add_argument("what", nargs="?", default="all", help="methods, datasets, splits, metrics, all, or a wildcard such as 'cap*'")
    p.add_argument("--json", action="store_true", help="print one JSON object")

    p = add("prepare", "Build the embedded shapes world and its CLIP; check and index real data.")
    p.add_argument("datasets", nargs="*", metavar="DATASET", help="dataset names (default: shapes)")
    _data_options(p)

    p = add("run", "Run the grid of cells (method x split x noise x seed) and record the results.")
    p.add_argument("--methods", help="comma-separated method names (default: every method)")
    p.add_argument("--split", dest="splits", action="append", metavar="SPEC",
                   help="TRAIN or TRAIN->EVAL; repeat or comma-separate for several (default: the shapes splits)")
    p.add_argument("--noise", help="comma-separated noise variances for methods that inject noise, e.g. 0,0.004,0.016")
    p.add_argument("--seeds", help="comma-separated seeds (default: 0)")
    p.add_argument("--out", help="run folder (default: runs/latest)")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: cpu)")
    p.add_argument("--encoder", help="shapes (default), NAME:TAG (ViT-B-32:openai), NAME:/path/weights.pt, local-dir:/path")
    p.add_argument("--decoder", help="decoder preset for decoding methods: transformer (default) or gpt2")
    p.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE", default=[],
                   help="a method setting, for all methods (decoder.width=256) or one (capdec.noise_variance=0.01); repeatable")
    p.add_argument("--sweep", dest="sweeps", action="append", metavar="KEY=V1,V2", default=[],
                   help="run every value of a setting (decap.tau=0.005,0.01,0.02); several --sweep give every "
                        "combination, e.g. syntic's ablation grid; repeatable")
    p.add_argument("--config", help="a .toml or .json file of run settings; flags override it")
    p.add_argument("--no-report", dest="report", action="store_false", help="do not render the report at the end")
    _data_options(p)

    p = add("score", "Score a prediction file against references (BLEU, METEOR, ROUGE-L, CIDEr, SPICE).")
    p.add_argument("--predictions", required=True, help="COCO results [{image_id, caption}] or a flattened list with 'prediction'")
    p.add_argument("--references", help="Karpathy dataset_*.json, a COCO caption file, or a flattened list "
                                        "(not needed when references travel with the predictions)")
    p.add_argument("--split", help="with a Karpathy file: only this split's images (train, val, test)")
    p.add_argument("--json", action="store_true", help="print one JSON object (0-100 scale, plus n_images)")
    spice = p.add_mutually_exclusive_group()
    spice.add_argument("--spice", dest="spice", action="store_const", const=True, default=None,
                       help="require SPICE (fail if it cannot run)")
    spice.add_argument("--no-spice", dest="spice", action="store_const", const=False, help="skip SPICE")
    p.add_argument("--per-image", metavar="FILE", help="also write per-image scores to FILE (JSON)")

    p = add("report", "Render report.md, report.html and figures/ from a run's records.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder (records.jsonl, samples/, run.json)")
    p.add_argument("--out", help="where to write the report (default: RUN_DIR)")
    p.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples for intervals and tests (default: 1000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap and of the gallery's sample (default: 0)")
    p.add_argument("--gallery", type=int, default=6, metavar="N", help="test images per split in the HTML gallery (default: 6; 0: none)")

    p = add("check", "Compare a run with baseline records; exit 1 on a regression beyond tolerance.")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--baseline", required=True, help="baseline records.jsonl (or a run folder)")
    p.add_argument("--tolerance", help="metric=value pairs overriding the defaults "
                                       "(cider 1.0, bleu1 1.0, bleu2 0.75, the rest 0.5), e.g. cider=2,bleu4=0.5")

    p = add("caption", "Caption a folder of your own images with a fitted method.")
    p.add_argument("--method", required=True)
    p.add_argument("--checkpoint", required=True, help="a folder written by a run (config.json + state.pt)")
    p.add_argument("--images", required=True, help="a folder of image files")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", action="store_true", help="print one JSON object {file: caption}")
    p.add_argument("--cache-dir", help="where the encoder's weights are cached (default: $TEXTCAP_BENCH_CACHE)")
    return parser


def _data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-root", help="where real datasets live (default: $TEXTCAP_BENCH_DATA)")
    p.add_argument("--cache-dir", help="embedding and model cache (default: $TEXTCAP_BENCH_CACHE or ~/.cache/textcap-bench)")


def _version() -> str:
    from bench import __version__

    return f"textcap-bench {__version__}"


# -- commands ------------------------------------------------------------------------------


def cmd_ls(args: argparse.Namespace) -> int:
    from bench.plugins import DATASETS, METHODS, PLUGIN_ERRORS, load_plugins
    from bench.scoring import ALL_METRICS, spice_status

    load_plugins()
    sections = ("methods", "datasets", "splits", "metrics")
    what, pattern = (args.what, "*") if args.what in sections + ("all",) else ("all", args.what)
    chosen = sections if what == "all" else (what,)

    def entries(registry: Any) -> list[dict[str, Any]]:
        out = []
        for name in registry.list(pattern):
            entry = registry.entry(name)
            item = {"name": name, "summary": entry.summary}
            if entry.aliases:
                item["aliases"] = list(entry.aliases)
            if entry.tags.get("style"):
                item["style"] = entry.tags["style"]
            out.append(item)
        return out

    data: dict[str, Any] = {}
    if "methods" in chosen:
        data["methods"] = entries(METHODS)
    if "datasets" in chosen:
        data["datasets"] = entries(DATASETS)
    if "splits" in chosen:
        data["splits"] = _split_examples(DATASETS)
    if "metrics" in chosen:
        spice_reason = spice_status()
        data["metrics"] = [{"name": m, "available": not (m == "spice" and spice_reason),
                            **({"reason": spice_reason} if m == "spice" and spice_reason else {})} for m in ALL_METRICS]
    if PLUGIN_ERRORS:
        data["plugin_errors"] = [{"where": w, "error": e} for w, e in PLUGIN_ERRORS]
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    for section, items in data.items():
        print(f"{section}:")
        if not items:
            print("  (none registered yet)" if section in ("methods", "datasets") else "  (none)")
        for item in items:
            if section == "splits":
                print(f"  {item['spec']:<34} {item['kind']}")
            elif section == "metrics":
                print(f"  {item['name']:<10} {'available' if item['available'] else 'unavailable: ' + item['reason']}")
            elif section == "plugin_errors":
                print(f"  {item['where']}: {item['error']}")
            else:
                extra = f" (alias: {', '.join(item['aliases'])})" if item.get("aliases") else ""
                print(f"  {item['name']:<22} {item['summary']}{extra}")
    return 0


def _split_examples(datasets: Any) -> list[dict[str, str]]:
    from bench.splits import parse_split

    names = datasets.list()
    factual = [n for n in names if not datasets.entry(n).tags.get("style")]
    specs = list(factual)
    for a in factual:
        specs += [f"{a}->{b}" for b in factual if b != a and a.split("-")[0] == b.split("-")[0]]
    if "coco" in factual and "flickr30k" in factual:
        specs += ["coco->flickr30k", "flickr30k->coco"]
    specs += [n for n in names if datasets.entry(n).tags.get("style")]
    out = []
    for spec in dict.fromkeys(specs):
        out.append({"spec": spec, "kind": parse_split(spec).kind})
    return out


def cmd_prepare(args: argparse.Namespace) -> int:
    from bench.plugins import DATASETS, create_dataset, load_plugins

    load_plugins()
    names = args.datasets or ["shapes"]
    canonical = list(dict.fromkeys(DATASETS.canonical(n) for n in names))  # unknown names fail before any work
    prepared_worlds: set[str] = set()
    for name in canonical:
        dataset = create_dataset(name, args.data_root, cache_dir=args.cache_dir)
        prepare = getattr(dataset, "prepare", None)
        if prepare is not None:  # a procedural dataset: build it (once per family)
            family = getattr(dataset, "family", name)
            if family not in prepared_worlds:
                prepare(cache_dir=args.cache_dir)
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
        print(f"{name}: " + "; ".join(counts))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from bench.config import RunConfig, config_to_dict, resolve_config
    from bench.encoders import _check_device
    from bench.plugins import METHODS, load_plugins
    from bench.runner import DEFAULT_METHODS, Runner, build_grid, check_options, summary_table

    options: dict[str, Any] = {}
    if args.decoder:
        from bench.decoders import preset

        options["decoder"] = config_to_dict(preset(args.decoder))
    for item in args.overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        options[key.strip()] = _literal(value.strip())
    sweep: dict[str, list[Any]] = {}
    for item in args.sweeps:
        key, sep, values = item.partition("=")
        if not sep or not key.strip() or not values.strip():
            raise ConfigError(f"--sweep expects KEY=V1,V2,..., got {item!r}")
        if key.strip() in sweep or key.strip() in options:
            raise ConfigError(f"--sweep {key.strip()} is given twice (or also with --set)")
        sweep[key.strip()] = [_literal(v.strip()) for v in values.split(",")]
    cli = {"methods": args.methods, "noise": args.noise, "seeds": args.seeds, "out": args.out, "device": args.device,
           "encoder": args.encoder, "data_root": args.data_root, "cache_dir": args.cache_dir,
           "splits": _comma_join(args.splits), "method_options": options or None, "sweep": sweep or None}
    config: RunConfig = resolve_config(RunConfig, cli, args.config)
    load_plugins()
    for name in config.methods:
        METHODS.canonical(name)  # unknown names fail with the known ones and the nearest
    if not len(METHODS):
        raise BenchError("no methods are registered (methods/ has no method plugins), so there is nothing to run")
    _check_device(config.device)
    check_options([METHODS.canonical(m) for m in (config.methods or DEFAULT_METHODS)], {**config.method_options, **config.sweep})
    cells = build_grid(config)
    log = _stderr
    runner = Runner(config, log=log, command=args.command_line)
    if any(c.id not in runner.store for c in cells):
        runner.encoder  # noqa: B018 - build it now: a bad --encoder is bad input, not a failed cell
    log(f"{len(cells)} cells -> {config.out}")
    report = runner.execute(cells)
    wanted = {c.id for c in cells}
    records = [r for r in runner.store.records() if r.cell_id in wanted]
    if records:
        print(summary_table(records))
    log(f"{len(report.completed)} cells run ({report.fits} fits, {report.fits_reused} reused), {report.skipped} already complete, "
        f"{len(report.failed)} failed, in {report.seconds:.1f} s; records: {runner.store.path}")
    for label, error in report.failed:
        log(f"failed: {label}: {error.splitlines()[0]}")
    if args.report and records:
        from bench.reporting import render_report

        try:
            rendered = render_report(config.out, log=log)
        except Exception as exc:  # the cells are done and recorded; a report problem must not hide that
            log(f"warning: the report could not be rendered ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                f"the records are complete: retry with `python -m bench report {config.out}`")
        else:
            print(f"report: {rendered.html} (and {rendered.markdown.name}, figures/)")
    return 1 if report.failed else 0


def _literal(text: str) -> Any:
    """A --set value: JSON when it parses (numbers, true/false, lists), else the string itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cmd_score(args: argparse.Namespace) -> int:
    from bench.annotations import ReferenceIndex, read_annotations, read_predictions
    from bench.errors import DataError
    from bench.progress import progress
    from bench.scoring import score

    predictions, refs = read_predictions(args.predictions)
    if args.references:
        fmt, images = read_annotations(args.references, "reference file")
        if args.split:
            if fmt != "karpathy":
                raise DataError(f"--split needs a Karpathy dataset_*.json reference file; {args.references} is a {fmt} file")
            images = [i for i in images if i.split == args.split or (args.split == "train" and i.split == "restval")]
            if not images:
                raise DataError(f"reference file {args.references} has no images in split {args.split!r}")
        refs = ReferenceIndex(images)
    if refs is None:
        raise DataError(f"prediction file {args.predictions} carries no references: pass --references FILE")

    matched: dict[str, str] = {}
    orphans = []
    for key, caption in predictions.items():
        image_id = refs.find(key)
        if image_id is None or not refs.references(image_id):
            orphans.append(key)
        elif image_id in matched:
            raise DataError(f"two predictions are for the same image {image_id} (second key: {key})")
        else:
            matched[image_id] = caption
    if orphans:
        raise DataError(f"{len(orphans)} of {len(predictions)} predictions are for images with no references (first: {orphans[0]})")
    uncovered = len(refs) - len(matched)
    if uncovered and args.split:
        print(f"warning: {uncovered} images of split {args.split} have no prediction; scoring the {len(matched)} that do",
              file=sys.stderr)
    result = score(matched, {i: refs.references(i) for i in matched}, spice=args.spice, progress=progress)
    if args.per_image:
        from bench.io import write_json_atomic

        write_json_atomic(args.per_image, {"image_ids": result.image_ids, "scores": result.per_image,
                                            "bleu_stats": result.bleu_stats})
    if args.json:
        print(json.dumps(result.to_json()))
        return 0
    print(f"{'metric':<10} {'score':>8}")
    for name, value in result.metrics.items():
        print(f"{name:<10} {value:8.2f}")
    print(f"{'n_images':<10} {result.n_images:8d}")
    for name, reason in result.unavailable.items():
        print(f"{name} unavailable: {reason}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from bench.reporting import render_report

    if args.resamples < 100:
        raise ConfigError(f"--resamples must be at least 100 for a 95% interval, got {args.resamples}")
    if args.gallery < 0:
        raise ConfigError(f"--gallery must be >= 0, got {args.gallery}")
    if args.seed < 0:
        raise ConfigError(f"--seed must be >= 0, got {args.seed}")
    rendered = render_report(args.run_dir, args.out, resamples=args.resamples, seed=args.seed, gallery=args.gallery, log=_stderr)
    print(f"report: {rendered.html}")
    print(f"report: {rendered.markdown}")
    for path in rendered.figures:
        print(f"figure: {path}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from bench.check import DEFAULT_TOLERANCES, check

    tolerances = _parse_tolerance(args.tolerance)
    result = check(args.run_dir, args.baseline, tolerances, log=_stderr)
    for line in result.config_changes:
        _stderr(f"note: {line}")
    for line in result.missing_metrics:
        _stderr(f"warning: {line}")
    for cells, what in ((result.only_run, "cell(s) of the run are not in the baseline (not checked)"),
                        (result.only_baseline, "baseline cell(s) are missing from the run")):
        if cells:
            _stderr(f"warning: {len(cells)} {what}: " + "; ".join(cells[:5]) + (" ..." if len(cells) > 5 else ""))
    used = {**DEFAULT_TOLERANCES, **tolerances}
    summary = (f"{result.compared} cells, {result.metrics_compared} metric values compared "
               f"(tolerances: {', '.join(f'{k} {v:g}' for k, v in used.items())})")
    if result.ok:
        print(f"ok: no metric fell by more than its tolerance; {summary}")
        return 0
    print(f"regression: {len(result.drops)} metric value(s) fell by more than their tolerance; {summary}")
    for drop in result.drops:
        print(f"  {drop.describe()}")
    return 1


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def cmd_caption(args: argparse.Namespace) -> int:
    from bench.encoders import EncoderConfig, create_encoder
    from bench.plugins import METHODS, load_plugins

    load_plugins()
    name = METHODS.canonical(args.method)
    checkpoint, images = Path(args.checkpoint), Path(args.images)
    for flag, path in (("--checkpoint", checkpoint), ("--images", images)):
        if not path.is_dir():
            raise BenchError(f"{flag} {path} is not a folder")
    meta_path = checkpoint / "encoder.json"
    if not (checkpoint / "config.json").is_file() or not (checkpoint / "state.pt").is_file() or not meta_path.is_file():
        raise BenchError(f"{checkpoint} is not a fitted method (expected config.json, state.pt and encoder.json, "
                         "as a run writes under RUN_DIR/checkpoints/)")
    meta = json.loads(meta_path.read_text())
    cls = METHODS.get(name)
    saved_cls = meta.get("method")
    if saved_cls and METHODS.get(saved_cls) is not cls:
        raise BenchError(f"{checkpoint} holds a {saved_cls} fit, not {name}")
    files = sorted(p for p in images.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise BenchError(f"{images} has no image files ({', '.join(IMAGE_SUFFIXES)})")
    encoder = create_encoder(EncoderConfig(name=meta["encoder"]), args.device, Path(args.cache_dir) if args.cache_dir else None,
                             log=_stderr)
    if encoder.id != meta.get("encoder_id"):
        _stderr(f"warning: the encoder now resolves to {encoder.id}, but the method was fitted with {meta.get('encoder_id')}")
    method = cls.load(checkpoint)
    from bench.progress import progress

    emb, kept = encoder.encode_images(files, progress=progress, skip_unreadable=True)
    skipped = [files[i] for i in sorted(set(range(len(files))) - set(kept))]
    captions = method.caption_images(emb, [files[i] for i in kept]) if len(kept) else []
    result = {files[i].name: c for i, c in zip(kept, captions)}
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        for file_name, text in result.items():
            print(f"{file_name}\t{text}")
    if skipped:
        _stderr(f"skipped {len(skipped)} unreadable of {len(files)} files (first: {skipped[0].name})")
    return 0


def _parse_tolerance(text: str | None) -> dict[str, float]:
    from bench.scoring import ALL_METRICS

    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        name, sep, value = part.partition("=")
        if not sep:
            raise ConfigError(f"--tolerance expects metric=value pairs, got {part!r}")
        if name.strip() not in ALL_METRICS:
            raise ConfigError(f"--tolerance: unknown metric {name.strip()!r}; known: {', '.join(ALL_METRICS)}")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise ConfigError(f"--tolerance: {name.strip()} must be a number, got {value!r}") from None
        if not math.isfinite(out[name.strip()]):
            raise ConfigError(f"--tolerance: {name.strip()} must be a finite number, got {value!r}")
        if out[name.strip()] < 0:
            raise ConfigError(f"--tolerance: {name.strip()} must be >= 0, got {value}")
    return out


def _comma_join(values: list[str] | None) -> str | None:
    return ",".join(values) if values else None


COMMANDS = {"ls": cmd_ls, "prepare": cmd_prepare, "run": cmd_run, "score": cmd_score,
            "report": cmd_report, "check": cmd_check, "caption": cmd_caption}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.command_line = "python -m bench " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    if not args.command:
        parser.print_help()
        return 0
    try:
        return COMMANDS[args.command](args)
    except BenchError as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"{PROG} {args.command}: error: {message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{PROG} {args.command}: interrupted; completed work is kept", file=sys.stderr)
        return 130
