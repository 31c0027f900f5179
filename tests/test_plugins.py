import importlib.metadata
import sys
import textwrap

import pytest

import bench.plugins as plugins
from bench.captioner import Captioner


def _write_plugin(root, group, name, body):
    folder = root / group
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.py").write_text(textwrap.dedent(body))


@pytest.fixture
def fresh(monkeypatch):
    """Run discovery against copies of the registries so tests leave no trace."""
    from bench.registry import Registry

    methods, datasets = Registry("method", Captioner), Registry("dataset", plugins.CaptionDataset)
    monkeypatch.setattr(plugins, "METHODS", methods)
    monkeypatch.setattr(plugins, "DATASETS", datasets)
    monkeypatch.setattr(plugins, "GROUPS", {"methods": methods, "datasets": datasets})
    monkeypatch.setattr(plugins, "ENTRY_POINT_GROUPS", {"bench.methods": methods, "bench.datasets": datasets})
    monkeypatch.setattr(plugins, "PLUGIN_ERRORS", [])
    before = set(sys.modules)
    yield methods, datasets
    for name in set(sys.modules) - before:
        if name.startswith("bench.plugins.") and name.count(".") == 3:
            del sys.modules[name]


def test_builtin_dataset_plugins_load_under_bench_plugins(fresh):
    _, datasets = fresh
    plugins.load_plugins(force=True)
    assert "bench.plugins.datasets.karpathy" in sys.modules
    assert "datasets" not in sys.modules or not hasattr(sys.modules["datasets"], "karpathy")


def test_plugin_folder_from_environment(fresh, tmp_path, monkeypatch):
    methods, _ = fresh
    _write_plugin(tmp_path, "methods", "echo", """
        from bench.captioner import Captioner
        import bench.plugins as plugins

        @plugins.METHODS.register("echo")
        class Echo(Captioner):
            '''Says the same thing for every image.'''
            def fit(self, corpus, ctx): self.text = corpus.captions[0]
            def caption(self, emb): return [self.text] * len(emb)
            def state_dict(self): return {"text": self.text}
            def load_state_dict(self, state): self.text = state["text"]
    """)
    _write_plugin(tmp_path, "methods", "broken", "raise RuntimeError('boom')\n")
    monkeypatch.setenv(plugins.PLUGIN_PATH_ENV, str(tmp_path))
    with pytest.warns(UserWarning, match="boom"):
        plugins.load_plugins(force=True)
    assert methods.list() == ["echo"]
    assert methods.entry("echo").summary == "Says the same thing for every image."
    assert any("boom" in err for _, err in plugins.PLUGIN_ERRORS)


def test_entry_points_register_lazily(fresh, monkeypatch):
    methods, _ = fresh
    ep = importlib.metadata.EntryPoint(name="lazy", value="tests.lazy_plugin:Lazy", group="bench.methods")

    def entry_points(group=None):
        return [ep] if group == "bench.methods" else []

    monkeypatch.setattr(plugins.importlib.metadata, "entry_points", entry_points)
    sys.modules.pop("tests.lazy_plugin", None)
    plugins.load_plugins(force=True)
    assert "lazy" in methods and not methods.entry("lazy").loaded
    assert "tests.lazy_plugin" not in sys.modules  # listing imported nothing
    cls = methods.get("lazy")
    assert cls.__name__ == "Lazy" and issubclass(cls, Captioner)
