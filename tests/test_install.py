"""A wheel install, as a user makes one, beside Hugging Face's ``datasets``.

The wheel is built from a copy of the project files, installed with ``--no-deps`` into a fresh
virtual environment whose dependencies (torch, open_clip, ...) come from this environment
through a ``.pth`` line, so no multi-gigabyte download is needed. A stand-in for Hugging Face's
``datasets`` package sits in the fresh ``site-packages``: it breaks loudly when it is imported
as anything but itself, as the real one does. Then ``bench ls`` and a tiny ``bench run`` run
from a folder outside the checkout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROJECT_FILES = ("pyproject.toml", "README.md", "bench", "methods", "datasets", "reports")

HF_DATASETS_STUB = {
    "__init__.py": '__version__ = "0.0.0-stub"\nfrom .arrow_dataset import Dataset\n',
    # As in the real package: a relative import that only works inside ``datasets``.
    "arrow_dataset.py": "from . import __version__\n\nclass Dataset:\n    version = __version__\n",
}


def _build_wheel(tmp: Path) -> Path:
    source = tmp / "source"
    for name in PROJECT_FILES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            source.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, source / name)
    dist = tmp / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet", "-w", str(dist),
                    str(source)], check=True, capture_output=True, text=True)
    wheels = list(dist.glob("textcap_bench-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def _fresh_venv(tmp: Path) -> tuple[Path, Path]:
    env_dir = tmp / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    # The dependencies come from this environment, after the fresh site-packages on sys.path.
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "zz_outer_dependencies.pth").write_text("\n".join(sorted(deps)) + "\n")
    stub = site / "datasets"
    stub.mkdir()
    for name, text in HF_DATASETS_STUB.items():
        (stub / name).write_text(text)
    return python, site


def test_wheel_install_beside_hugging_face_datasets(tmp_path):
    from tests.conftest import write_tiny_clip_folder
    from tests.fixtures import karpathy_images, write_images, write_karpathy

    wheel = _build_wheel(tmp_path)
    python, site = _fresh_venv(tmp_path)
    subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", "--quiet", str(wheel)], check=True,
                   capture_output=True, text=True, env={**os.environ, "PYTHONNOUSERSITE": "1"})
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TEXTCAP_BENCH_PLUGINS")}
    env.update(HF_HUB_OFFLINE="1", BENCH_PROGRESS="0", PYTHONNOUSERSITE="1", TEXTCAP_BENCH_CACHE=str(tmp_path / "cache"))

    def bench(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(python), "-m", "bench", *argv], cwd=outside, env=env, capture_output=True, text=True,
                              timeout=600)

    where = subprocess.run([str(python), "-c", "import bench, datasets; print(bench.__file__); print(datasets.__file__)"],
                           cwd=outside, env=env, capture_output=True, text=True, check=True).stdout.split()
    assert Path(where[0]).is_relative_to(site) and Path(where[1]).is_relative_to(site)  # the wheel, beside the stub

    listed = bench("ls", "--json")
    assert listed.returncode == 0, listed.stderr
    data = json.loads(listed.stdout)
    assert {"capdec", "nonoise", "clipre", "decap", "syntic"} <= {m["name"] for m in data["methods"]}
    assert {"coco", "flickr30k", "shapes-coco"} <= {d["name"] for d in data["datasets"]}
    assert "plugin_errors" not in data

    images = karpathy_images()
    write_karpathy(tmp_path / "data", "coco", images)
    write_images(tmp_path / "data", images)
    encoder = write_tiny_clip_folder(tmp_path / "tiny-clip")
    settings = ["decoder.width=32", "decoder.layers=1", "decoder.heads=2", "decoder.epochs=2", "decoder.batch_size=4"]
    run = bench("run", "--methods", "clipre,nonoise", "--split", "coco", "--data-root", str(tmp_path / "data"),
                "--encoder", encoder, "--out", str(outside / "run"), *[a for s in settings for a in ("--set", s)])
    assert run.returncode == 0, run.stderr
    records = [json.loads(line) for line in (outside / "run" / "records.jsonl").read_text().splitlines()]
    assert sorted(r["method"] for r in records) == ["clipre", "nonoise"]
    assert all(r["n_images"] == 2 and r["encoder"].startswith(encoder) for r in records)
    assert (outside / "run" / "report.html").is_file()
    # Hugging Face's package is untouched by the run: still importable as itself.
    check = subprocess.run([str(python), "-c", "import datasets; print(datasets.Dataset.version)"], cwd=outside, env=env,
                           capture_output=True, text=True)
    assert check.stdout.strip() == "0.0.0-stub", check.stderr


@pytest.mark.parametrize("group", ["methods", "datasets"])
def test_builtin_plugins_are_never_looked_for_in_site_packages(group, tmp_path, monkeypatch):
    """A copy of ``bench`` laid out as a wheel installs it, with no plugin folders of its own and
    another distribution's ``datasets/`` beside it: discovery finds no built-in plugins rather
    than importing that folder."""
    import bench.plugins as plugins

    fake_site = tmp_path / "site-packages"
    (fake_site / "bench" / "plugins").mkdir(parents=True)
    (fake_site / group).mkdir()
    (fake_site / group / "__init__.py").write_text(textwrap.dedent("raise ImportError('another distribution')\n"))
    monkeypatch.setattr(plugins, "__file__", str(fake_site / "bench" / "plugins" / "__init__.py"))
    assert plugins.builtin_root(group) is None
    (fake_site / "bench" / "plugins" / group).mkdir()
    (fake_site / "bench" / "plugins" / group / "__init__.py").write_text("")
    assert plugins.builtin_root(group) == fake_site / "bench" / "plugins" / group
