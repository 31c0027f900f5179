"""The plugin registries and their discovery.

``METHODS`` and ``DATASETS`` are the two typed registries. Plugins come from three places:

* the modules in the project's ``methods/`` and ``datasets/`` folders, found by path and
  imported as ``bench.plugins.methods.<name>`` / ``bench.plugins.datasets.<name>`` (a
  top-level ``datasets`` package would collide with Hugging Face ``datasets``);
* folders named in ``$TEXTCAP_BENCH_PLUGINS`` (``os.pathsep``-separated), each holding
  ``methods/`` and/or ``datasets/`` subfolders of the same kind;
* the entry-point groups ``bench.methods`` and ``bench.datasets`` of installed packages.
  ``name = "pkg.module:Class"`` registers lazily: nothing is imported until the name is used.

Plugin modules must keep heavy imports (torch, transformers, diffusers) inside functions so
that ``bench ls`` stays instant.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import re
import sys
import types
import warnings
from pathlib import Path

from bench.captioner import Captioner
from bench.data import CaptionDataset
from bench.registry import Registry

METHODS: Registry[type[Captioner]] = Registry("method", Captioner)
DATASETS: Registry[type[CaptionDataset]] = Registry("dataset", CaptionDataset)

GROUPS: dict[str, Registry] = {"methods": METHODS, "datasets": DATASETS}
ENTRY_POINT_GROUPS = {"bench.methods": METHODS, "bench.datasets": DATASETS}
PLUGIN_PATH_ENV = "TEXTCAP_BENCH_PLUGINS"

#: Plugins that failed to load: (where, error message). ``bench ls`` shows them.
PLUGIN_ERRORS: list[tuple[str, str]] = []
_loaded = False


def plugin_roots(group: str) -> list[Path]:
    """Folders searched for ``group`` plugins, built-in first."""
    builtin = builtin_root(group)
    roots = [builtin] if builtin else []
    for extra in filter(None, os.environ.get(PLUGIN_PATH_ENV, "").split(os.pathsep)):
        folder = Path(extra).expanduser() / group
        if folder.is_dir() and folder not in roots:
            roots.append(folder)
    return roots


def builtin_root(group: str) -> Path | None:
    """Where this package's own ``group`` plugins are: ``bench/plugins/<group>`` as a wheel
    installs them (the package-dir mapping), or ``<group>/`` of the source checkout that
    ``bench`` itself was imported from (an editable install, or a checkout on ``sys.path``).

    The checkout is recognised by its ``pyproject.toml`` naming this project, never by the
    mere presence of a folder: in an installed wheel the folder above ``bench/`` is
    ``site-packages``, where ``datasets/`` is Hugging Face's package.
    """
    installed = Path(__file__).resolve().parent / group
    if (installed / "__init__.py").is_file():
        return installed
    checkout = Path(__file__).resolve().parents[2]
    if _is_source_checkout(checkout) and (checkout / group / "__init__.py").is_file():
        return checkout / group
    return None


def _is_source_checkout(folder: Path) -> bool:
    try:
        text = (folder / "pyproject.toml").read_text(encoding="utf-8")
    except OSError:
        return False
    return re.search(r'^name\s*=\s*"textcap-bench"\s*$', text, re.MULTILINE) is not None


def _package(group: str, roots: list[Path]) -> types.ModuleType:
    name = f"{__name__}.{group}"
    module = sys.modules.get(name)
    if module is None:
        module = types.ModuleType(name, f"{group} plugins, discovered by path")
        module.__path__ = []  # type: ignore[attr-defined]
        sys.modules[name] = module
        setattr(sys.modules[__name__], group, module)
    for root in roots:
        if str(root) not in module.__path__:  # type: ignore[attr-defined]
            module.__path__.append(str(root))  # type: ignore[attr-defined]
    return module


def _import_file(module_name: str, path: Path) -> None:
    if module_name in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise


def load_plugins(force: bool = False) -> None:
    """Import every plugin module once (cheap: plugins import nothing heavy at top level)."""
    global _loaded
    if _loaded and not force:
        return
    _loaded = True
    for group in GROUPS:
        roots = plugin_roots(group)
        builtin = builtin_root(group)
        package = _package(group, roots)
        for root in roots:
            for path in sorted(root.glob("*.py")):
                if path.stem.startswith("_"):
                    continue
                try:
                    _import_file(f"{package.__name__}.{path.stem}", path)
                except Exception as exc:  # a broken plugin must not hide the others
                    if root == builtin:
                        raise  # built-in plugins are part of the project: fail loudly
                    PLUGIN_ERRORS.append((str(path), f"{type(exc).__name__}: {exc}"))
                    warnings.warn(f"plugin {path} failed to load: {exc}", stacklevel=2)
    for group_name, registry in ENTRY_POINT_GROUPS.items():
        for ep in importlib.metadata.entry_points(group=group_name):
            try:
                if ":" in ep.value:
                    if ep.name not in registry:
                        registry.register(ep.name, ep.value)
                else:
                    importlib.import_module(ep.value)  # a module that registers itself
            except Exception as exc:
                PLUGIN_ERRORS.append((f"{group_name}:{ep.name}", f"{type(exc).__name__}: {exc}"))
                warnings.warn(f"entry point {group_name}:{ep.name} failed to load: {exc}", stacklevel=2)


def register_method(name: str, **kwargs):
    """Decorator: register a :class:`Captioner` subclass under ``name``."""
    return METHODS.register(name, **kwargs)


def register_dataset(name: str | None = None, **kwargs):
    """Decorator: register a :class:`CaptionDataset` subclass under ``name`` (default: its ``name``).

    The class's ``style`` is kept as a registry tag, so split kinds are known without
    instantiating the dataset.
    """
    def decorator(cls):
        DATASETS.register(name or cls.name, cls, style=cls.style, **kwargs)
        return cls
    return decorator


def method_config(name: str, overrides: dict | None = None) -> object:
    """The config of method ``name``: its defaults, its preset, then ``overrides`` (validated).

    A preset (``nonoise`` is capdec with noise_variance=0) fixes its fields: an override of
    one of them is an error rather than a silent change of method.
    """
    from bench.config import build_dataclass, config_to_dict, merge
    from bench.errors import ConfigError

    load_plugins()
    entry = METHODS.entry(name)
    cls = METHODS.get(name)
    preset = entry.tags.get("preset", {})
    clash = sorted(set(preset) & set(overrides or {}))
    if clash:
        raise ConfigError(f"{entry.name} fixes {', '.join(f'{k}={preset[k]}' for k in clash)}; use the base method to change it")
    return build_dataclass(cls.Config, merge(config_to_dict(cls.Config()), preset, overrides or {}), entry.name)


def create_method(name: str, config=None) -> Captioner:
    """An unfitted instance of method ``name`` (with its preset applied when no config is given)."""
    load_plugins()
    cls = METHODS.get(name)
    return cls(config if config is not None else method_config(name))


def create_dataset(name: str, root=None, **options) -> CaptionDataset:
    load_plugins()
    return DATASETS.get(name)(root, **options)
