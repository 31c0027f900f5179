"""What a run executes: its config, its cells, and the embedded default.

``RunConfig`` holds everything ``bench run`` was asked for (CLI over ``--config`` file over
defaults, merged by ``bench.config.resolve_config``). ``build_grid`` resolves and validates it
(method names, ``--set``/``--sweep`` keys, configs) and returns the cells in execution order;
nothing heavy is loaded, so a bad setting never costs a loaded encoder. Calling ``build_grid``
directly validates exactly as the command line does. Executing cells is ``bench.runner``'s job.

A cell is (method, config, split, noise variance, seed). ``Cell.fit_key`` names what its fit
depends on, so that cells sharing a fit (``coco`` and ``coco->flickr30k``; ``nonoise`` and
capdec at σ² = 0) train it once.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.config import config_dict, default_cache_dir
from bench.errors import BenchError, ConfigError
from bench.executors.config import ExecutorConfig
from bench.records import InputIdentity, cell_id, describe_cell
from bench.splits import SplitSpec, parse_split

#: The embedded default: every method on an in-domain, a cross-domain and a style split of the
#: shapes world over three seeds, capdec's noise-variance sweep and syntic's ablation (its three
#: switches: all on, each off alone, all off) in and across domains, those two with the first seed.
DEFAULT_METHODS = ("capdec", "nonoise", "clipre", "decap", "syntic")
DEFAULT_SPLITS = ("shapes-coco", "shapes-coco->shapes-flickr", "shapes-romantic")
DEFAULT_SEEDS = (0, 1, 2)
#: 0, the paper's 0.016, and 7 half-decade steps from 0.001 to 1: about a tenth to a hundred
#: times the shapes CLIP's per-dimension gap variance (0.010 in its 128-d space; `bench gap`),
#: wherever a method's best value falls
DEFAULT_SWEEP = (0.0, 0.001, 0.003, 0.01, 0.016, 0.03, 0.1, 0.3, 1.0)
SWEEP_METHOD, SWEEP_SPLIT = "capdec", "shapes-coco"
ABLATION_METHOD = "syntic"
ABLATION_SWITCHES = ("syntic.optimise", "syntic.project", "syntic.auxiliary")
ABLATION_SPLITS = ("shapes-coco", "shapes-coco->shapes-flickr")
#: ``--preset full``: the embedded default plus the methods that do not fit its 10-minute budget
#: on a 2-core CPU (ViECap and IFCap: 12 more decoder fits over three seeds), each with its key
#: switch ablated in and across domains with the first seed, and syntic's switches in all eight
#: combinations (the default's five rows and the three with two switches off).
FULL_METHODS = DEFAULT_METHODS + ("viecap", "ifcap")
FULL_ABLATIONS = {"viecap": {"viecap.hard_prompt": (True, False)}, "ifcap": {"ifcap.k": (1, 3, 5, 9)}}
PRESETS = ("default", "full")
DEFAULT_OUT = Path("runs/latest")
MAX_SEED = 2**32 - 1  # numpy's and torch's seeding accept 32-bit seeds


def encoder_config(spec: str, options: dict | None, shared: bool = True) -> Any:
    """The encoder config of ``spec`` with ``--set encoder.*`` settings (read and checked as their
    declared types; ``name`` is refused: the spec is the name). With ``shared`` (a run's settings,
    which serve both its encoders), the shapes CLIP's own setting (``shapes_text_attribute_weight``)
    goes only to the shapes encoder: a run may use the shapes CLIP on one side (say, CLIP-S) and
    another CLIP on the other. Without it, that setting with another encoder is refused."""
    from bench.config import build_dataclass
    from bench.encoders import EncoderConfig

    options = dict(options or {})
    if "name" in options:  # it would be overridden by the spec: refused, not ignored
        raise ConfigError("encoder_options.name (--set encoder.name): the encoder is chosen with --encoder SPEC "
                          "(encoder in a config file), not as an option")
    if shared and spec.strip() != "shapes":
        options.pop("shapes_text_attribute_weight", None)
    return build_dataclass(EncoderConfig, {**options, "name": spec}, "encoder")


@dataclass(frozen=True)
class RunConfig:
    """What ``bench run`` executes: the grid of cells and where results go.

    Empty ``methods`` / ``splits`` / ``noise`` mean "the embedded default"; empty ``seeds`` mean
    seed 0, or the embedded default's three seeds. ``method_options``
    and ``sweep`` are ``--set`` / ``--sweep`` settings (``bench.options``); ``encoder_options``
    are the encoder's batch sizes and loader threads (``--set encoder.FIELD=VALUE``).
    """

    methods: tuple[str, ...] = ()
    splits: tuple[str, ...] = ()
    noise: tuple[float, ...] = ()
    seeds: tuple[int, ...] = ()
    out: Path = DEFAULT_OUT
    device: str = "cpu"
    encoder: str = "shapes"
    encoder_options: dict = field(default_factory=dict)
    data_root: Path | None = None
    cache_dir: Path = field(default_factory=default_cache_dir)
    method_options: dict = field(default_factory=dict)
    #: each key (as in ``method_options``) maps to a list of values; the grid holds every
    #: combination for the methods a key applies to
    sweep: dict = field(default_factory=dict)
    #: where the cells run (``bench.executors``): this process, a Ray cluster, or Slurm
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)
    #: CLIP-S and RefCLIP-S (``bench.clipscore``) with this encoder spec; empty: the run's encoder
    eval_encoder: str = ""
    clip_score: bool = True
    #: the embedded grid: ``default`` (about 9 minutes fresh on a 2-core CPU) or ``full`` (``FULL_METHODS``)
    preset: str = "default"

    def __post_init__(self) -> None:
        from bench.options import check_sweep

        for value in self.noise:
            if not value >= 0 or value != value or value == float("inf"):
                raise ConfigError(f"noise variance must be a finite number >= 0, got {value}")
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"seeds must be distinct, got {list(self.seeds)}")
        if any(not 0 <= s <= MAX_SEED for s in self.seeds):
            raise ConfigError(f"seeds must be integers in [0, 2^32 - 1], got {list(self.seeds)}")
        if self.device not in ("cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ConfigError(f"device must be cpu, cuda or cuda:N, got {self.device!r}")
        if len(set(self.noise)) != len(self.noise):  # as seeds and methods: a repeat is a typo, not merged away
            raise ConfigError(f"noise variances must be distinct, got {','.join(f'{v:g}' for v in self.noise)}")
        named: dict[str, str] = {}
        for spec in self.splits:
            key = str(parse_split(spec, resolve=False))
            if key in named:
                raise ConfigError(f"--split {spec} names the split {named[key]} names already; give each split once")
            named[key] = spec
        check_sweep(self.sweep)
        if self.eval_encoder and not self.clip_score:
            raise ConfigError("--eval-encoder names the encoder of CLIP-S, which --no-clip-score turns off; give one of them")
        if self.preset not in PRESETS:
            raise ConfigError(f"unknown preset {self.preset!r}; known: {', '.join(PRESETS)}")
        if self.preset != "default" and (self.methods or self.splits):
            raise ConfigError(f"--preset {self.preset} is an embedded grid of its own: leave out --methods and --split")
        if len(set(self.methods)) != len(self.methods):
            raise ConfigError(f"methods must be distinct, got {','.join(self.methods)}")
        # the encoder settings, validated for every encoder the run builds, before anything loads
        configs = [self.encoder_config(spec) for spec in dict.fromkeys((self.encoder, self.eval_encoder_spec))]
        if self.encoder_config("shapes").shapes_text_attribute_weight is not None and not any(c.name.strip() == "shapes" for c in configs):
            raise ConfigError(f"encoder.shapes_text_attribute_weight trains the shapes world's CLIP; this run's encoder is "
                              f"{self.encoder}" + (f" and its CLIP-S encoder {self.eval_encoder}" if self.eval_encoder else ""))

    def encoder_config(self, spec: str = "") -> Any:
        """The run's encoder config, or that of another spec with the same settings."""
        return encoder_config(spec or self.encoder, self.encoder_options)

    @property
    def eval_encoder_spec(self) -> str:
        return self.eval_encoder or self.encoder

    @property
    def embedded(self) -> bool:
        """No methods and no splits given: the embedded default grid."""
        return not self.methods and not self.splits

    @property
    def seed_list(self) -> tuple[int, ...]:
        return self.seeds or (DEFAULT_SEEDS if self.embedded else (0,))


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
    def spec_id(self) -> str:
        """The cell as the grid knows it (method, config, split, seed, noise), before its inputs
        are resolved; unique within a grid."""
        return cell_id(self.method, str(self.split), self.seed, self.noise_variance, self.config_dict,
                       resources=resources_fingerprint(self.config))

    def id(self, inputs: InputIdentity) -> str:
        """The cell's identity: ``spec_id``'s parts plus the encoder and data it runs on (the
        ``cell_id`` of its record), and the content of the model folders its config names."""
        return cell_id(self.method, str(self.split), self.seed, self.noise_variance, self.config_dict, inputs,
                       resources=resources_fingerprint(self.config))

    def fit_key(self, method_class: type, encoder_id: str, corpus_fingerprint: str) -> str:
        """What the fit depends on: the method's class and config (and the content of the model
        folders it names), the training corpus, the encoder and the seed (not the eval dataset:
        ``coco`` and ``coco->flickr30k`` share it)."""
        parts: list[Any] = [method_class.__module__, method_class.__qualname__, self.config_dict, self.split.train,
                            corpus_fingerprint, encoder_id, self.seed]
        resources = resources_fingerprint(self.config)
        if resources:  # (absent from the keys of configs without model folders, which stay as they were)
            parts.append(resources)
        blob = json.dumps(parts, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def label(self) -> str:
        return describe_cell(self.method, str(self.split), self.seed, self.noise_variance)


def selected_methods(run: RunConfig) -> list[str]:
    """The run's methods by their registry names (unknown names fail with the nearest)."""
    from bench.plugins import METHODS, load_plugins

    load_plugins()
    if not len(METHODS):
        raise BenchError("no methods are registered (methods/ has no method plugins), so there is nothing to run")
    default = FULL_METHODS if run.preset == "full" else DEFAULT_METHODS
    return [METHODS.canonical(m) for m in (run.methods or default)]


def resource_folders(config: Any) -> list[Path]:
    """The local model folders a (nested) config names (a GPT-2 folder, a diffusers pipeline, a
    detector), from every part that has ``resource_folders()``."""
    import dataclasses

    if not dataclasses.is_dataclass(config):
        return []
    found = getattr(config, "resource_folders", None)
    out = list(found()) if callable(found) else []
    for item in dataclasses.fields(config):
        out += resource_folders(getattr(config, item.name))
    return out


def resources_fingerprint(config: Any) -> str:
    """The content of the model folders ``config`` names: each file's path in its folder and the
    SHA-256 of its bytes (remembered per path, size and modification time). Empty when it names
    none, so that the ids of configs without such folders are what they always were. A folder's
    weights replaced in place give another fingerprint, and so another cell and fit."""
    from bench.cache import fingerprint, folder_fingerprint

    folders = resource_folders(config)
    return fingerprint(f"{folder}|{folder_fingerprint(folder)}" for folder in folders) if folders else ""


def check_resources(config: Any) -> None:
    """Call ``check_resources()`` on every part of a (nested) config that has one: the files and
    folders a config names (a GPT-2 folder, a diffusers pipeline, a detector) are checked before
    anything loads, so a missing one is bad input rather than a failed cell."""
    import dataclasses

    if not dataclasses.is_dataclass(config):
        return
    check = getattr(config, "check_resources", None)
    if callable(check):
        check()
    for item in dataclasses.fields(config):
        check_resources(getattr(config, item.name))


def switch_ablation(switches: tuple[str, ...]) -> list[dict[str, bool]]:
    """The settings of an ablation of on/off ``switches``: every one on (the method as published),
    each one off with the others on (what each adds to the rest), and every one off (the bare
    baseline), 2 + len(switches) rows. (All 2^n combinations: ``sweep_combinations``.)"""
    on = dict.fromkeys(switches, True)
    return [on, *({**on, key: False} for key in switches), dict.fromkeys(switches, False)]


def build_grid(run: RunConfig) -> list[Cell]:
    """Every cell of the run, in execution order, without duplicates; validates every setting."""
    import dataclasses

    from bench.config import switched_off
    from bench.encoders import parse_encoder_spec
    from bench.options import check_options, expand_method_tables, options_for, sweep_combinations
    from bench.plugins import METHODS, method_config

    methods = selected_methods(run)
    method_options = expand_method_tables(run.method_options)  # a config file's [method_options.capdec] table
    both = sorted(set(method_options) & set(run.sweep))  # a config file's [sweep] beside a --set (or its own table)
    if both:
        raise ConfigError(f"{both[0]} is both set and swept; give it once")
    check_options(methods, {**method_options, **run.sweep}, sweep_keys=run.sweep)
    parse_encoder_spec(run.encoder)
    if run.eval_encoder:
        parse_encoder_spec(run.eval_encoder)
    splits = [parse_split(s) for s in (run.splits or DEFAULT_SPLITS)]
    cells: list[Cell] = []

    def sweeps(method: str) -> bool:
        """The method injects noise and no preset fixes its level."""
        field_name = METHODS.get(method).noise_field
        return bool(field_name) and field_name not in METHODS.entry(method).tags.get("preset", {})

    if run.noise and not any(sweeps(m) for m in methods):
        raise ConfigError(f"--noise applies to methods that inject noise (capdec, viecap, ifcap); none of {', '.join(methods)} does")
    if run.noise:
        from bench.options import applies, split_option

        for key in {**method_options, **run.sweep}:
            hit = [m for m in methods if sweeps(m) and applies(key, m) and split_option(key)[1] == METHODS.get(m).noise_field]
            if hit:
                raise ConfigError(f"--noise and {key} both set {hit[0]}'s noise variance: give one of them")

    full = run.preset == "full"
    switches = (sweep_combinations(ABLATION_METHOD, dict.fromkeys(ABLATION_SWITCHES, (True, False))) if full
                else switch_ablation(ABLATION_SWITCHES))
    ablations = {ABLATION_METHOD: switches, **{m: sweep_combinations(m, a) for m, a in FULL_ABLATIONS.items() if full}}

    on_somewhere: dict[str, set[str]] = {}

    def sometimes_on(method: str) -> set[str]:
        """The fields of ``method`` owned by a switch that is on in some cell of the grid (its
        default, the run's settings, then each sweep or ablation combination over them)."""
        if method not in on_somewhere:
            config_cls = METHODS.get(method).Config
            owned = {n for names in getattr(config_cls, "SWITCHED", {}).values() for n in names}
            defaults = {f.name: f.default for f in dataclasses.fields(config_cls)}
            combos = sweep_combinations(method, run.sweep) + (ablations.get(method, []) if run.embedded else [])
            on_somewhere[method] = set().union(*(
                owned - switched_off(config_cls, {**defaults, **options_for(method, method_options), **options_for(method, c)})
                for c in combos))
        return on_somewhere[method]

    def add(method: str, split: SplitSpec, seed: int, noise: float | None, combo: dict[str, Any] | None = None,
            role: str = "main") -> None:
        cls = METHODS.get(method)
        # A switch that the sweep or the ablation turns off leaves the settings only it uses out
        # of that cell (viecap's hard-prompt settings where the prompt is off); beside a switch
        # that is off in every cell of the method (set, or swept to off alone) they are refused
        # (bench.config.check_switched).
        unused = switched_off(cls.Config, options_for(method, combo or {})) & sometimes_on(method)
        overrides = {k: v for k, v in options_for(method, {**method_options, **(combo or {})}).items() if k not in unused}
        if noise is not None and sweeps(method):
            overrides = {**overrides, cls.noise_field: noise}
        config = method_config(method, overrides)
        check_resources(config)
        applied = getattr(config, cls.noise_field) if cls.noise_field else None
        cell = Cell(method, split, seed, config, applied, role)
        if cell not in cells:
            cells.append(cell)

    for seed in run.seed_list:
        for split in splits:
            for method in methods:
                for combo in sweep_combinations(method, run.sweep):
                    for noise in (run.noise if (run.noise and sweeps(method)) else (None,)):
                        add(method, split, seed, noise, combo)
        if run.embedded and seed == run.seed_list[0]:  # the sweep and the ablation: one seed
            sweep_split = parse_split(SWEEP_SPLIT)
            for noise in (run.noise or DEFAULT_SWEEP):
                add(SWEEP_METHOD, sweep_split, seed, noise, role="noise-sweep")
            for method, combos in ablations.items():
                for spec in ABLATION_SPLITS:
                    for combo in combos:
                        add(method, parse_split(spec), seed, None, combo, role="ablation")
    return cells
