"""``python -m bench``: the command line.

Each subcommand is a function ``cmd_<name>(args) -> int`` that parses, calls the module that does
the work, and prints; heavy imports happen inside it. Bad input raises :class:`BenchError` and
becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import os
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
    "gap": ("examples:\n  python -m bench gap --encoder shapes --dataset shapes-coco\n"
            "  python -m bench gap --encoder shapes --dataset shapes-coco --set encoder.shapes_text_attribute_weight=0\n"
            "  python -m bench gap --encoder ViT-B-32:/models/vit_b_32.pt --dataset coco --split val --data-root ~/data --json"),
}


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit code 2), like every other bad input."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from bench.check import DEFAULT_TOLERANCES
    from bench.grid import DEFAULT_METHODS, DEFAULT_OUT, DEFAULT_SEEDS, DEFAULT_SPLITS, RunConfig
    from bench.reporting import defaults as report_defaults

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

    defaults = RunConfig()
    p = add("run", "Run the grid of cells (method x split x noise x seed) and record the results.")
    p.add_argument("--methods", help=f"comma-separated method names (default: the embedded default's {','.join(DEFAULT_METHODS)})")
    p.add_argument("--split", dest="splits", action="append", metavar="SPEC",
                   help=f"TRAIN or TRAIN->EVAL; repeat or comma-separate for several (default: {', '.join(DEFAULT_SPLITS)})")
    p.add_argument("--noise", help="comma-separated noise variances for methods that inject noise, e.g. 0,0.004,0.016")
    p.add_argument("--seeds", help=f"comma-separated seeds (default: 0; the embedded default: {','.join(map(str, DEFAULT_SEEDS))})")
    p.add_argument("--out", help=f"run folder (default: {DEFAULT_OUT})")
    p.add_argument("--device", help=f"cpu, cuda or cuda:N (default: {defaults.device})")
    p.add_argument("--encoder", help=f"{defaults.encoder} (default), NAME:TAG (ViT-B-32:openai), NAME:/path/weights.pt, "
                                     "local-dir:/path")
    p.add_argument("--decoder", help="decoder preset for decoding methods: transformer (default), gpt2, viecap or ifcap")
    p.add_argument("--preset", help="the embedded grid: default (about 9 minutes fresh on a 2-core CPU, 6 with its "
                                    "cache filled) or full (adds viecap and ifcap with their ablations, and syntic's other "
                                    "three ablation rows)")
    p.add_argument("--eval-encoder", metavar="SPEC", help="the CLIP that computes CLIP-S and RefCLIP-S (default: --encoder)")
    p.add_argument("--no-clip-score", dest="clip_score", action="store_false", default=None,
                   help="do not compute CLIP-S and RefCLIP-S")
    p.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE", default=[],
                   help="a setting, for all methods (decoder.width=256), one method (capdec.noise_variance=0.01) or the "
                        "encoder (encoder.image_batch_size=64); repeatable")
    p.add_argument("--sweep", dest="sweeps", action="append", metavar="KEY=V1,V2", default=[],
                   help="run every value of a setting (decap.tau=0.005,0.01,0.02); several --sweep give every "
                        "combination, e.g. syntic's ablation grid; repeatable")
    p.add_argument("--config", help="a .toml or .json file of run settings; flags override it")
    p.add_argument("--no-report", dest="report", action="store_false", help="do not render the report at the end")
    ex = p.add_argument_group("where cells run (default: worker processes on this machine)")
    ex.add_argument("--executor", help="local (default), ray or slurm")
    ex.add_argument("--address", help="ray: auto or HOST:PORT of a running cluster (default: start one on this machine)")
    ex.add_argument("--cpus-per-task", type=int, help="ray, slurm: CPUs each task asks for (default: 1)")
    ex.add_argument("--gpus-per-task", type=float, help="ray, slurm: GPUs each task asks for (default: 0)")
    ex.add_argument("--workers", type=int, help="local: worker processes (default: one per core, at most 4, on the CPU; "
                                                "one on a GPU); 1 runs the cells in this process")
    ex.add_argument("--threads", type=int, help="torch threads in a task (default: ray, slurm: --cpus-per-task; local: 1 "
                                                "per worker, all cores with one worker)")
    ex.add_argument("--partition", help="slurm: the partition to submit to")
    ex.add_argument("--time", type=int, help="slurm: minutes per task (default: 60)")
    ex.add_argument("--array-parallelism", type=int, help="slurm: tasks of one job array running at once (default: 64)")
    ex.add_argument("--slurm-cluster", help="slurm: slurm (default) or local (the same job arrays as local processes)")
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
    p.add_argument("--clip-score", action="store_true", help="also CLIP-S and RefCLIP-S (needs --images and --eval-encoder)")
    p.add_argument("--images", metavar="DIR", help="--clip-score: the folder of the images (by file name, or ID.jpg/.png)")
    p.add_argument("--eval-encoder", metavar="SPEC", help="--clip-score: the CLIP that scores (shapes, NAME:TAG, NAME:/path, local-dir:/path)")
    p.add_argument("--device", help="--clip-score: cpu, cuda or cuda:N (default: cpu)")
    p.add_argument("--cache-dir", help="--clip-score: the embedding cache (default: $TEXTCAP_BENCH_CACHE or ~/.cache/textcap-bench)")

    p = add("report", "Render report.md, report.html and figures/ from a run's records.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder (records.jsonl, samples/, run.json)")
    p.add_argument("--out", help="where to write the report (default: RUN_DIR)")
    p.add_argument("--resamples", type=int, default=report_defaults.RESAMPLES,
                   help="bootstrap resamples for intervals and tests (default: %(default)s)")
    p.add_argument("--seed", type=int, default=report_defaults.SEED,
                   help="seed of the bootstrap and of the gallery's sample (default: %(default)s)")
    p.add_argument("--gallery", type=int, default=report_defaults.GALLERY_IMAGES, metavar="N",
                   help="test images per split in the HTML gallery (default: %(default)s; 0: none)")

    p = add("check", "Compare a run with baseline records; exit 1 on a regression beyond tolerance.")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--baseline", required=True, help="baseline records.jsonl (or a run folder)")
    p.add_argument("--allow-missing", action="store_true",
                   help="a baseline cell the run does not hold is a warning, not a failure (a run of part of the grid)")
    p.add_argument("--tolerance", help="metric=value pairs overriding the defaults ("
                                       + ", ".join(f"{k} {v:g}" for k, v in DEFAULT_TOLERANCES.items()) + "), e.g. cider=2,bleu4=0.5")

    p = add("gap", "Print the modality-gap card of an encoder on a dataset (and the noise variance it suggests).")
    p.add_argument("--encoder", required=True, help="shapes, NAME:TAG, NAME:/path/weights.pt or local-dir:/path")
    p.add_argument("--dataset", required=True, help="a dataset name (bench ls datasets)")
    p.add_argument("--split", default="test", help="the split whose image-caption pairs are measured (default: %(default)s)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE", default=[],
                   help="an encoder setting, as for run: e.g. encoder.shapes_text_attribute_weight=0 (the world CLIP "
                        "without its text-side head)")
    _data_options(p)

    p = add("caption", "Caption a folder of your own images with a fitted method.")
    p.add_argument("--method", required=True)
    p.add_argument("--checkpoint", required=True, help="a folder written by a run (RUN_DIR/checkpoints/KEY)")
    p.add_argument("--images", required=True, help="a folder of image files")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print one JSON object {file: caption}")
    p.add_argument("--cache-dir", help="where the encoder's weights are cached (default: the cache folder the fit was made "
                                       "with, recorded in its fit.json)")
    return parser


def _data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-root", help="where real datasets live (default: $TEXTCAP_BENCH_DATA)")
    p.add_argument("--cache-dir", help="embedding and model cache (default: $TEXTCAP_BENCH_CACHE or ~/.cache/textcap-bench)")


def _version() -> str:
    from bench import __version__

    return f"textcap-bench {__version__}"


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- commands ------------------------------------------------------------------------------


def cmd_ls(args: argparse.Namespace) -> int:
    from bench.listing import listing

    data = listing(args.what)
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    for section, items in data.items():
        if section == "pattern":
            continue
        print(f"{section}:")
        if not items:
            print(f"  (none matching {args.what!r})" if section in ("methods", "datasets") and data.get("pattern") else "  (none)")
        for item in items:
            if section == "splits":
                print(f"  {item['spec']:<34} {item['kind']}")
            elif section == "metrics":
                state = 'available' if item['available'] else 'unavailable: ' + item['reason']
                print(f"  {item['name']:<10} {state}" + (f" (needs {item['needs']})" if item.get("needs") else ""))
            elif section == "plugin_errors":
                print(f"  {item['where']}: {item['error']}")
            else:
                extra = f" (alias: {', '.join(item['aliases'])})" if item.get("aliases") else ""
                print(f"  {item['name']:<22} {item['summary']}{extra}")
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    from bench.listing import prepare

    for line in prepare(args.datasets or ["shapes"], args.data_root, args.cache_dir):
        print(line)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from bench.config import config_to_dict, resolve_config
    from bench.encoders import check_device
    from bench.executors.factory import create_executor
    from bench.grid import RunConfig, build_grid
    from bench.io import check_writable
    from bench.options import parse_assignments, parse_sweeps, split_encoder_options
    from bench.runner import Runner
    from bench.summary import summary_table

    if args.eval_encoder is not None and not args.eval_encoder.strip():
        raise ConfigError("--eval-encoder is empty: name an encoder spec, or leave the flag out for the run's encoder")
    options = parse_assignments(args.overrides)
    if args.decoder is not None:
        from bench.decoders import preset

        if args.config:  # the preset is a whole table: it would replace the file's decoder settings, not layer under them
            from bench.config import load_config_file
            from bench.options import expand_method_tables, split_option

            table = load_config_file(args.config).get("method_options") or {}
            mine = [k for k in expand_method_tables(table if isinstance(table, dict) else {})
                    if split_option(k)[1].split(".")[0] == "decoder"]
            if mine:
                raise ConfigError(f"--decoder {args.decoder} would replace the decoder settings of {args.config} ({mine[0]}); "
                                  "give the preset there (decoder = {...}) or drop the file's decoder settings")
        options = {"decoder": config_to_dict(preset(args.decoder)), **options}
    sweep = parse_sweeps(args.sweeps, options)
    options, encoder_options = split_encoder_options(options)
    cli = {"methods": args.methods, "noise": args.noise, "seeds": args.seeds, "out": args.out, "device": args.device,
           "encoder": args.encoder, "data_root": args.data_root, "cache_dir": args.cache_dir,
           "eval_encoder": args.eval_encoder, "clip_score": args.clip_score, "preset": args.preset,
           "splits": ",".join(args.splits) if args.splits else None, "method_options": options or None,
           "encoder_options": encoder_options or None, "sweep": sweep or None,
           "executor": {k: v for k, v in {"kind": args.executor, "workers": args.workers, "address": args.address, "cpus_per_task": args.cpus_per_task,
                                           "gpus_per_task": args.gpus_per_task, "threads": args.threads, "partition": args.partition,
                                           "time": args.time, "array_parallelism": args.array_parallelism,
                                           "slurm_cluster": args.slurm_cluster}.items() if v is not None} or None}
    config: RunConfig = resolve_config(RunConfig, cli, args.config)
    check_device(config.device)
    cells = build_grid(config)
    from bench.records import check_run_folder

    check_run_folder(config.out)  # before creating it: a newline in the path is refused, not made
    check_writable(config.out, "run folder --out", "choose another --out")
    executor = create_executor(config.executor)
    executor.check()  # the engine is there and answers, before any model loads
    runner = Runner(config, log=_stderr, command=args.command_line, executor=executor)
    resolved = runner.resolve(cells)  # data, then the encoder: bad input fails here, before any output
    _stderr(f"{len(cells)} cells -> {config.out}")
    report = runner.execute(cells, resolved)
    wanted = set(report.cell_ids)
    records = [r for r in runner.store.records() if r.cell_id in wanted]
    if records:
        print(summary_table(records))
    _stderr(f"{len(report.completed)} cells run ({report.fits} fits, {report.fits_reused} reused), {report.skipped} already "
            f"complete, {len(report.failed)} failed, in {report.seconds:.1f} s; records: {runner.store.path}")
    for label, error in report.failed:
        _stderr(f"failed: {label}: {error.splitlines()[0]}")
    if len(config.seed_list) == 1 and len({(c.method, json.dumps(c.config_dict, sort_keys=True)) for c in cells}) > 1:
        from bench.reporting.collect import ONE_SEED_NOTE

        _stderr(f"note: every cell ran with one seed ({config.seed_list[0]}): {ONE_SEED_NOTE}")
    if args.report and records:
        from bench.reporting import render_report

        try:
            rendered = render_report(config.out, log=_stderr)
        except Exception as exc:  # the cells are done and recorded; a report problem must not hide that
            _stderr(f"warning: the report could not be rendered ({type(exc).__name__}: "
                    f"{str(exc).splitlines()[0] if str(exc) else ''}); the records are complete: retry with "
                    f"`python -m bench report {config.out}`")
        else:
            print(f"report: {rendered.html} (and {rendered.markdown.name}, figures/)")
    return 1 if report.failed else 0


def cmd_score(args: argparse.Namespace) -> int:
    from bench.annotations import load_references, read_predictions
    from bench.errors import DataError
    from bench.progress import progress
    from bench.scoring import match_predictions, score

    if args.per_image is not None:
        from bench.io import check_output_file

        check_output_file(args.per_image, "--per-image")  # before scoring: a bad path must not cost the scores
    from bench.clipscore import check_score_request

    check_score_request(args.clip_score, args.images, args.eval_encoder, args.device, args.cache_dir)
    predictions, refs = read_predictions(args.predictions)
    if args.split and not args.references:  # it would be ignored: every entry of the file is scored
        raise ConfigError(f"--split picks a split of a --references file; {args.predictions} carries its own references "
                          "(every entry is scored): leave --split out, or pass --references")
    if args.references:
        refs = load_references(args.references, args.split)
    if refs is None:
        raise DataError(f"prediction file {args.predictions} carries no references: pass --references FILE")
    matched = match_predictions(predictions, refs)
    uncovered = len(refs) - len(matched)
    if uncovered and args.split:
        _stderr(f"warning: {uncovered} images of split {args.split} have no prediction; scoring the {len(matched)} that do")
    eval_encoder, clip = "", None
    if args.clip_score:  # first: an encoder that cannot load or an unreadable image fails before the text metrics run
        from bench.clipscore import clip_scores, find_images

        images = find_images(args.images, list(matched), refs)
        clip = clip_scores(matched, refs, images, args.eval_encoder, args.device or "cpu", args.cache_dir, _stderr)
    result = score(matched, {i: refs.references(i) for i in matched}, spice=args.spice, progress=progress)
    if clip is not None:
        values, per, eval_encoder = clip
        result.metrics.update(values)
        result.per_image.update(per)
        _stderr(f"CLIP-S and RefCLIP-S by {eval_encoder}")
    if args.per_image is not None:
        from bench.io import write_json_atomic

        write_json_atomic(args.per_image, {"image_ids": result.image_ids, "scores": result.per_image,
                                            "bleu_stats": result.bleu_stats})
    if args.json:
        print(json.dumps({**result.to_json(), **({"eval_encoder": eval_encoder} if eval_encoder else {})}))
        return 0
    print(f"{'metric':<10} {'score':>8}")
    for name, value in result.metrics.items():
        print(f"{name:<10} {value:8.2f}")
    print(f"{'n_images':<10} {result.n_images:8d}")
    for name, reason in result.unavailable.items():
        print(f"{name} unavailable: {reason}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from bench.reporting import defaults, render_report

    if args.resamples < defaults.MIN_RESAMPLES:
        raise ConfigError(f"--resamples must be at least {defaults.MIN_RESAMPLES} for a 95% interval, got {args.resamples}")
    if args.resamples > defaults.MAX_RESAMPLES:
        raise ConfigError(f"--resamples must be at most {defaults.MAX_RESAMPLES:,} (more adds no printed digit and needs "
                          f"resamples x images numbers in memory), got {args.resamples:,}")
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
    from bench.check import DEFAULT_TOLERANCES, check, parse_tolerances

    tolerances = parse_tolerances(args.tolerance)
    result = check(args.run_dir, args.baseline, tolerances, log=_stderr, allow_missing=args.allow_missing)
    for line in result.config_changes:
        _stderr(f"note: {line}")
    for line in result.missing_metrics:
        _stderr(f"warning: {line}")
    listed = [(result.only_run, "cell(s) of the run are not in the baseline (not checked)")]
    if args.allow_missing:
        listed.append((result.only_baseline, "baseline cell(s) are missing from the run (allowed by --allow-missing)"))
    for cells, what in listed:
        if cells:
            _stderr(f"warning: {len(cells)} {what}: " + "; ".join(cells[:5]) + (" ..." if len(cells) > 5 else ""))
    used = {**DEFAULT_TOLERANCES, **tolerances}
    summary = (f"{result.compared} cells, {result.metrics_compared} metric values compared "
               f"(tolerances: {', '.join(f'{k} {v:g}' for k, v in used.items())})")
    if result.ok:
        print(f"ok: no metric fell by more than its tolerance; {summary}")
        return 0
    lost = [] if args.allow_missing else result.only_baseline
    print("regression: " + "; ".join(
        ([f"{len(result.drops)} metric value(s) fell by more than their tolerance"] if result.drops else [])
        + ([f"{len(lost)} baseline cell(s) are missing from the run (--allow-missing if the run covers part of "
            "the grid on purpose)"] if lost else [])) + f"; {summary}")
    for drop in result.drops:
        print(f"  {drop.describe()}")
    for cell in lost:
        print(f"  {cell}: missing from the run")
    return 1


def cmd_caption(args: argparse.Namespace) -> int:
    from bench.captioning import caption_folder

    result = caption_folder(args.method, Path(args.checkpoint), Path(args.images), args.device,
                            Path(args.cache_dir) if args.cache_dir else None, log=_stderr)
    if args.json:
        print(json.dumps(result.captions, ensure_ascii=False))
    else:
        for file_name, text in result.captions.items():
            print(f"{file_name}\t{text}")
    if result.skipped:
        _stderr(f"skipped {len(result.skipped)} unreadable of {result.total} files (first: {result.skipped[0].name})")
    return 0


def cmd_gap(args: argparse.Namespace) -> int:
    from bench.config import default_cache_dir
    from bench.encoders import check_device, create_encoder, parse_encoder_spec
    from bench.gap import gap_card, json_card, load_pairs, render_card
    from bench.plugins import DATASETS, load_plugins

    load_plugins()
    dataset = DATASETS.canonical(args.dataset)
    parse_encoder_spec(args.encoder)
    check_device(args.device)
    config = _gap_encoder_config(args.encoder, args.overrides)
    cache_dir = Path(args.cache_dir).expanduser() if args.cache_dir else default_cache_dir()
    data = load_pairs(dataset, args.split, args.data_root, cache_dir)  # bad input fails here, before any model loads
    encoder = create_encoder(config, args.device, cache_dir, log=_stderr)
    card = gap_card(encoder, data, cache_dir, log=_stderr)
    print(json.dumps(json_card(card), allow_nan=False) if args.json else render_card(card))
    return 0


def _gap_encoder_config(spec: str, overrides: list[str]) -> Any:
    """The encoder config ``bench gap`` builds: ``--set encoder.FIELD=VALUE`` only, and the shapes
    CLIP's own setting only with the shapes encoder (one encoder here: refused, never dropped)."""
    from bench.grid import encoder_config
    from bench.options import parse_assignments, split_encoder_options

    others, options = split_encoder_options(parse_assignments(overrides))
    if others:
        raise ConfigError(f"bench gap takes encoder settings only (--set encoder.FIELD=VALUE), got {', '.join(sorted(others))}")
    return encoder_config(spec, options, shared=False)


COMMANDS = {"ls": cmd_ls, "prepare": cmd_prepare, "run": cmd_run, "score": cmd_score,
            "report": cmd_report, "check": cmd_check, "caption": cmd_caption, "gap": cmd_gap}


def _stdout_reader_gone() -> bool:
    """Stdout is a pipe whose reading end is closed (poll reports an error on it)."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))
    except (OSError, ValueError, AttributeError):
        return False


#: Flags that name a file or folder: an empty one is a mistake, never "the default" (``--cache-dir ""``
#: would otherwise build the shapes world into the current folder, or fall back to the default cache).
PATH_FLAGS = ("out", "cache_dir", "data_root", "checkpoint", "images", "per_image", "predictions", "references",
              "baseline", "config", "run_dir")


def _refuse_empty_paths(args: argparse.Namespace) -> None:
    from bench.io import has_control_character

    for name in PATH_FLAGS:
        value = getattr(args, name, None)
        flag = "RUN_DIR" if name == "run_dir" else f"--{name.replace('_', '-')}"
        if value == "":
            raise ConfigError(f"{flag} is empty; give a path, or leave the flag out for its default")
        # what a command writes gets a name the lines that report it can show
        if name in ("out", "per_image") and isinstance(value, str) and has_control_character(value):
            raise ConfigError(f"{flag} {value!r} holds a control character (a newline?); choose another path")


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler's time limit or preemption, `kill`): ended as Ctrl-C ends a command."""


def _terminate_as_interrupt() -> object | None:
    """In the main thread, make SIGTERM end a command the way Ctrl-C does (workers stopped, the
    interrupted line, exit 143) instead of killing it mid-step; returns the handler it replaced.
    Worker processes are spawned fresh and keep the default (they just end)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None

    def terminate(signum: int, frame: object) -> None:
        raise Terminated()

    return signal.signal(signal.SIGTERM, terminate)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.command_line = "python -m bench " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    if not args.command:
        parser.print_help()
        return 0
    previous = _terminate_as_interrupt()
    try:
        _refuse_empty_paths(args)
        code = COMMANDS[args.command](args)
        sys.stdout.flush()  # a closed pipe shows here, inside the handler, not at exit
        return code
    except BrokenPipeError:  # `bench ls | head -1`: the reader of stdout went away; nothing to report
        if not _stdout_reader_gone():
            raise  # another pipe broke: that is a failure, not a reader that left
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # the interpreter's last flush must not raise again
        return 141  # as a process killed by SIGPIPE reports itself to the shell
    except BenchError as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"{PROG} {args.command}: error: {message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:
        terminated = isinstance(exc, Terminated)
        print(f"{PROG} {args.command}: {'terminated' if terminated else 'interrupted'}; completed work is kept", file=sys.stderr)
        return 143 if terminated else 130  # as the shell reports a process ended by SIGTERM or SIGINT
    finally:
        if previous is not None:
            import signal

            signal.signal(signal.SIGTERM, previous)
