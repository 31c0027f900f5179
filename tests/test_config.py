import json
from dataclasses import FrozenInstanceError, dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from bench.config import build_dataclass, load_config_file, merge, resolve_config
from bench.errors import ConfigError
from bench.grid import RunConfig


@dataclass(frozen=True)
class Inner:
    layers: int = 4
    kind: Literal["mlp", "transformer"] = "mlp"


@dataclass(frozen=True)
class Outer:
    lr: float = 2e-5
    inner: Inner = field(default_factory=Inner)
    tags: tuple[str, ...] = ()
    on: bool = True
    path: Path | None = None


def test_defaults_file_cli_precedence(tmp_path):
    file = tmp_path / "run.toml"
    file.write_text('seeds = [1, 2]\ndevice = "cpu"\nnoise = [0.0, 0.01]\nout = "from_file"\n')
    cfg = resolve_config(RunConfig, {"out": "from_cli", "seeds": None}, file)
    assert cfg.out == Path("from_cli")  # CLI beats file
    assert cfg.seeds == (1, 2)  # file beats default; None on the CLI means "not given"
    assert cfg.noise == (0.0, 0.01)
    defaults = resolve_config(RunConfig)
    assert defaults.seeds == () and defaults.seed_list == (0, 1, 2)  # the embedded default: three seeds
    assert resolve_config(RunConfig, {"methods": "capdec"}).seed_list == (0,)  # a grid of your own: seed 0


def test_cli_strings_are_coerced():
    cfg = resolve_config(RunConfig, {"noise": "0, 0.004,0.016", "seeds": "0,1,2", "methods": "capdec,decap"})
    assert cfg.noise == (0.0, 0.004, 0.016)
    assert cfg.seeds == (0, 1, 2)
    assert cfg.methods == ("capdec", "decap")


def test_nested_and_typed_build():
    cfg = build_dataclass(Outer, {"lr": "1e-4", "inner": {"layers": "6", "kind": "transformer"}, "on": "no", "path": "~/x"})
    assert cfg.lr == 1e-4 and cfg.inner == Inner(6, "transformer") and cfg.on is False
    assert cfg.path == Path("~/x").expanduser()
    with pytest.raises(FrozenInstanceError):
        cfg.lr = 1.0  # type: ignore[misc]


@pytest.mark.parametrize("data, message", [
    ({"lrr": 1}, "did you mean 'lr'"),
    ({"inner": {"layer": 2}}, "inner.layer"),
    ({"inner": {"kind": "rnn"}}, "must be one of mlp, transformer"),
    ({"inner": {"layers": "four"}}, "must be an integer"),
    ({"inner": {"layers": 2.5}}, "must be an integer"),
    ({"lr": "fast"}, "must be a number"),
    ({"on": "maybe"}, "true or false"),
    ({"inner": 3}, "table"),
])
def test_bad_values_name_the_setting(data, message):
    with pytest.raises(ConfigError, match=message):
        build_dataclass(Outer, data)


@pytest.mark.parametrize("cli, message", [
    ({"noise": "0,-0.1"}, ">= 0"),
    ({"noise": "0,abc"}, "must be a number"),
    ({"noise": "nan"}, "must be a finite number"),
    ({"noise": "inf"}, "must be a finite number"),
    ({"device": "tpu"}, "cpu, cuda"),
    ({"seeds": "1,1"}, "distinct"),
    ({"splits": "coco->"}, "no eval dataset"),
])
def test_run_config_validation(cli, message):
    with pytest.raises(ConfigError, match=message):
        resolve_config(RunConfig, cli)


def test_merge_is_deep():
    assert merge({"a": {"x": 1, "y": 2}}, {"a": {"y": 3}}, None, {"b": None}) == {"a": {"x": 1, "y": 3}}


def test_config_files(tmp_path):
    good = tmp_path / "c.json"
    good.write_text(json.dumps({"seeds": [3]}))
    assert load_config_file(good) == {"seeds": [3]}
    for name, text in [("bad.toml", "seeds = ["), ("bad.json", "{"), ("list.json", "[1]"), ("c.yaml", "a: 1")]:
        (tmp_path / name).write_text(text)
        with pytest.raises(ConfigError):
            load_config_file(tmp_path / name)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config_file(tmp_path / "missing.toml")


def test_a_method_table_in_a_config_file_sets_that_method_only(tmp_path):
    """``[method_options.capdec]`` in TOML is the ``capdec.FIELD`` keys, not a setting called capdec."""
    from bench.config import resolve_config
    from bench.grid import RunConfig, build_grid

    path = tmp_path / "run.toml"
    path.write_text('methods = ["capdec", "decap"]\nsplits = ["coco"]\n'
                    '[method_options.capdec]\nnoise_variance = 0.1\ndecoder = { width = 64 }\n')
    cells = {c.method: c for c in build_grid(resolve_config(RunConfig, {}, path))}
    assert cells["capdec"].config.noise_variance == 0.1 and cells["capdec"].config.decoder.width == 64
    assert cells["decap"].config.decoder.width == 128  # the other method keeps its own
    # a method's table layers over a table for every method (the README's run.toml)
    path.write_text('methods = ["capdec", "nonoise"]\nsplits = ["coco"]\n[method_options]\ndecoder = { width = 256 }\n'
                    '[method_options.nonoise]\ndecoder = { layers = 3 }\n')
    cells = {c.method: c for c in build_grid(resolve_config(RunConfig, {}, path))}
    assert (cells["nonoise"].config.decoder.width, cells["nonoise"].config.decoder.layers) == (256, 3)
    assert (cells["capdec"].config.decoder.width, cells["capdec"].config.decoder.layers) == (256, 2)
    # the same two tables in the other order: the method's still layers over the general one
    path.write_text('methods = ["capdec", "nonoise"]\nsplits = ["coco"]\n[method_options.nonoise]\ndecoder = { layers = 3 }\n'
                    '[method_options]\ndecoder = { width = 256 }\n')
    cells = {c.method: c for c in build_grid(resolve_config(RunConfig, {}, path))}
    assert (cells["nonoise"].config.decoder.width, cells["nonoise"].config.decoder.layers) == (256, 3)
    path.write_text('methods = ["capdec"]\nsplits = ["coco"]\n[method_options.capdec]\nnoise_varience = 0.1\n')
    with pytest.raises(ConfigError, match="noise_varience"):
        build_grid(resolve_config(RunConfig, {}, path))


def test_a_toml_config_on_python_3_10_reads_through_tomli(tmp_path, monkeypatch):
    """tomllib is 3.11's; on 3.10 the same parser comes as the tomli package (a dependency there):
    a run.toml must read the same, not fail with an import traceback."""
    import sys
    import types

    from bench.config import load_config_file

    path = tmp_path / "run.toml"
    path.write_text('methods = ["capdec"]\n')
    monkeypatch.setitem(sys.modules, "tomllib", None)  # as if absent
    monkeypatch.setitem(sys.modules, "tomli", types.SimpleNamespace(loads=lambda text: {"read_by": "tomli", "text": text}))
    assert load_config_file(path) == {"read_by": "tomli", "text": 'methods = ["capdec"]\n'}


def test_negative_zero_is_zero_so_one_cell_has_one_id():
    """-0 and 0 are one noise level: as different floats they gave two cell ids (a fit not reused,
    a baseline cell "missing") and a label of σ²=-0."""
    import math

    from bench.config import coerce, resolve_config
    from bench.grid import RunConfig, build_grid

    assert math.copysign(1.0, coerce("-0", float, "x")) == 1.0 and math.copysign(1.0, coerce(-0.0, float, "x")) == 1.0
    ids = [build_grid(resolve_config(RunConfig, {"methods": "capdec", "splits": "coco", "noise": noise}))[0].spec_id
           for noise in ("-0", "0")]
    assert ids[0] == ids[1]
