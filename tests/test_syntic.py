"""syntic and its building blocks: feature optimisation, tag fusion, the three ablation switches,
the detector path at test time, and the ablation grid from the command line."""

import json

import numpy as np
import pytest
import torch

from bench.alignment import contrastive_loss, mean_loss, optimise_features
from bench.captioner import Corpus, FitContext
from bench.decoders.fusion import TagFusion
from bench.errors import BenchError, ConfigError
from bench.plugins import create_method, load_plugins, method_config
from bench.projection import project
from bench.records import read_records
from tests.conftest import TINY_DECODER
from tests.test_taggers import tiny_detector

load_plugins()


def syntic(**overrides):
    return create_method("syntic", method_config("syntic", {**TINY_DECODER, **overrides}))


def unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# -- feature optimisation ------------------------------------------------------------------------

def test_feature_optimisation_lowers_the_contrastive_loss_and_pulls_features_to_their_texts():
    rng = np.random.default_rng(0)
    texts = unit(rng.normal(size=(64, 16))).astype(np.float32)
    features = unit(texts + 1.5 * rng.normal(size=texts.shape)).astype(np.float32)
    optimised, stats = optimise_features(features, texts, temperature=0.01, lr=1e-3, epochs=20, batch_size=16, seed=0)
    assert stats["loss_after"] < stats["loss_before"]
    assert stats["loss_before"] == pytest.approx(mean_loss(features, texts, 0.01, 16, 0), rel=1e-5)
    assert np.allclose(np.linalg.norm(optimised, axis=1), 1, atol=1e-5)
    own_before, own_after = (features * texts).sum(1).mean(), (optimised * texts).sum(1).mean()
    assert own_after > own_before
    # The paper's lr moves far less in the same number of steps, but in the same direction.
    _, small = optimise_features(features, texts, lr=1e-5, epochs=20, batch_size=16, seed=0)
    assert stats["loss_after"] < small["loss_after"] < small["loss_before"]


def test_contrastive_loss_is_low_for_aligned_pairs():
    x = torch.nn.functional.normalize(torch.randn(8, 16), dim=-1)
    assert contrastive_loss(x, x, 0.01) < 1e-3
    assert contrastive_loss(x, x.roll(1, 0), 0.01) > 1.0


# -- tag fusion ----------------------------------------------------------------------------------

def test_tag_fusion_ignores_padding_and_handles_images_without_tags():
    torch.manual_seed(0)
    fusion = TagFusion(torch.randn(5, 16), heads=4).eval()
    feature = torch.randn(3, 16)
    out = fusion(feature, torch.tensor([[1, -1], [1, 2], [-1, -1]]))
    assert out.shape == (3, 2, 16) and torch.isfinite(out).all()
    assert torch.equal(out[:, 0], feature)  # the feature itself is the first conditioning vector
    padded_more = fusion(feature[:1], torch.tensor([[1, -1, -1, -1]]))
    assert torch.allclose(out[0], padded_more[0], atol=1e-6)
    assert not torch.allclose(out[0, 1], fusion(feature[:1], torch.tensor([[1, 2]]))[0, 1])


# -- the three switches ---------------------------------------------------------------------------

def test_training_features_follow_the_switches_exactly():
    rng = np.random.default_rng(1)
    texts = unit(rng.normal(size=(40, 16))).astype(np.float32)
    raw = unit(texts + rng.normal(size=texts.shape)).astype(np.float32)
    results = {}
    for optimise in (True, False):
        for proj in (True, False):
            method = syntic(optimise=optimise, project=proj, **({"opt_lr": 1e-3, "opt_batch_size": 8} if optimise else {}))
            method.memory, method.tau = texts, 0.05
            results[optimise, proj], _ = method.training_features(raw, texts, seed=0)
    optimised, _ = optimise_features(raw, texts, 0.01, 1e-3, 10.0, 8, 0)
    assert np.array_equal(results[False, False], raw)
    assert np.allclose(results[True, False], optimised, atol=1e-6)
    assert np.allclose(results[False, True], project(raw, texts, 0.05).numpy(), atol=1e-6)
    assert np.allclose(results[True, True], project(optimised, texts, 0.05).numpy(), atol=1e-6)


@pytest.fixture
def spy_decoder_fit(monkeypatch):
    """Record what syntic hands to the decoder fit (and what it decodes at test time)."""
    import bench.decoders.fit_cache as shared
    from bench.decoders import CaptionDecoder

    seen = {"fit": [], "decode": []}
    original_fit, original_decode = shared.fit_decoder, CaptionDecoder.decode

    def fit(config, captions, embeddings, ctx, **kw):
        seen["fit"].append({"features": np.array(embeddings), "tags": kw.get("tags"), "table": kw.get("tag_table")})
        return original_fit(config, captions, embeddings, ctx, **kw)

    def decode(self, embeddings, *args, **kw):
        seen["decode"].append({"features": np.array(embeddings), "tags": kw.get("tags")})
        return original_decode(self, embeddings, *args, **kw)

    monkeypatch.setattr(shared, "fit_decoder", fit)
    monkeypatch.setattr(CaptionDecoder, "decode", decode)
    return seen


@pytest.mark.parametrize("switch", ["optimise", "project", "auxiliary"])
def test_each_switch_changes_only_its_own_computation(switch, world_context, spy_decoder_fit):
    corpus, context, texts = world_context
    # Test-time inputs off the text memory (as image embeddings are): a query that is itself a
    # memory row projects onto nearly itself, and could not show what the projection does.
    queries = unit(texts + 0.5 * np.random.default_rng(0).normal(size=texts.shape).astype(np.float32) / np.sqrt(texts.shape[1]))
    for value in (True, False):
        method = syntic(**{switch: value, **({"opt_lr": 1e-3} if value or switch != "optimise" else {})})
        method.fit(corpus, context())
        method.caption(queries)
    on_fit, off_fit = spy_decoder_fit["fit"]
    on_test, off_test = spy_decoder_fit["decode"]
    features_differ = not np.allclose(on_fit["features"], off_fit["features"])
    if switch == "auxiliary":
        assert not features_differ and np.array_equal(on_test["features"], off_test["features"])
        assert on_fit["tags"] is not None and on_fit["table"] is not None and on_test["tags"] is not None
        assert off_fit["tags"] is None and off_fit["table"] is None and off_test["tags"] is None
        return
    assert features_differ
    assert np.array_equal(on_fit["tags"], off_fit["tags"]) and np.array_equal(on_test["tags"], off_test["tags"])
    if switch == "optimise":  # training only: a real image has no text to be optimised toward
        assert np.array_equal(on_test["features"], off_test["features"])
    else:
        assert not np.allclose(on_test["features"], off_test["features"])
        assert np.allclose(off_test["features"], unit(queries), atol=1e-6)  # no projection: the raw embedding


def test_projection_uses_the_papers_tau_per_dataset(world_context):
    corpus, context, _ = world_context
    config = method_config("syntic", {})
    assert config.tau_for("coco") == 0.01 and config.tau_for("flickr30k") == 1 / 80
    assert config.tau_for("shapes-flickr") == 1 / 80 and config.tau_for("somewhere-else") == 0.01
    assert method_config("syntic", {"tau": 0.05}).tau_for("flickr30k") == 0.05
    flickr = Corpus(corpus.captions, corpus.embeddings, "shapes-flickr", objects=corpus.objects, generator="shapes")
    method = syntic(optimise=False, auxiliary=False)
    method.fit(flickr, context())
    assert method.tau == 1 / 80 and method.fit_info["tau"] == 1 / 80


def test_syntic_generates_one_image_per_caption_and_reuses_them(world_context, tmp_path):
    from bench.cache import EmbeddingCache

    corpus, context, _ = world_context

    def fresh(log):
        return FitContext(encoder=context().encoder, cache=EmbeddingCache(tmp_path, log=log), cache_dir=tmp_path, log=log)

    messages = []
    syntic(optimise=False).fit(corpus, fresh(messages.append))
    assert any(f"generated {len(set(corpus.captions))} images" in m for m in messages)
    assert len(list((tmp_path / "generated").rglob("*.png"))) == len(set(corpus.captions))
    messages.clear()
    syntic(optimise=False, project=False).fit(corpus, fresh(messages.append))
    assert not any("generated" in m for m in messages)  # the images come from the cache


# -- the detector tagger reads pixels at test time -----------------------------------------------------

def test_detector_tagger_tags_generated_and_test_images(world_context, tmp_path):
    from PIL import Image

    corpus, context, queries = world_context
    method = syntic(optimise=False, tagger={"kind": "detr", "path": str(tiny_detector(tmp_path / "detr")), "threshold": 0.0})
    method.fit(corpus, context())
    assert method.tag_words == ["circle", "square", "star"] and method.fit_info["tagged_fraction"] > 0
    images = []
    for i, colour in enumerate(["red", "blue", "green"]):
        images.append(tmp_path / f"{i}.png")
        Image.new("RGB", (40, 40), colour).save(images[-1])
    captions = method.caption_images(queries, images)
    assert len(captions) == 3 and all(isinstance(c, str) for c in captions)
    with pytest.raises(BenchError, match="reads the test images' files"):
        method.caption(queries)
    method.save(tmp_path / "fit")
    assert type(method).load(tmp_path / "fit").caption_images(queries, images) == captions


# -- bad input -----------------------------------------------------------------------------------

@pytest.mark.parametrize("overrides, fragment", [
    ({"tau": 0}, "syntic.tau must be a finite number >= 1e-06"),
    ({"opt_batch_size": 1}, "opt_batch_size must be >= 2"),
    ({"tagger": {"template": "no slot"}}, "must contain {}"),
    ({"tagger": {"threshold": 2}}, "threshold must be in [0, 1]"),
    ({"generator": {"kind": "dalle"}}, "must be one of auto, shapes, diffusers"),
    ({"optimise": "maybe"}, "optimise"),
])
def test_bad_settings(overrides, fragment):
    with pytest.raises(ConfigError, match=None) as info:
        method_config("syntic", overrides)
    assert fragment in str(info.value)


def test_fit_errors_name_the_missing_piece(world_context):
    corpus, context, _ = world_context
    real = Corpus(corpus.captions, corpus.embeddings, "coco")
    with pytest.raises(BenchError, match="needs a text-to-image model"):
        syntic().fit(real, context())
    with pytest.raises(BenchError, match="names none"):
        syntic().fit(Corpus(corpus.captions, corpus.embeddings, "mine", generator="shapes"), context())
    with pytest.raises(BenchError, match="needs a detector"):
        syntic(tagger={"kind": "detr"}).fit(corpus, context())
    with pytest.raises(BenchError, match="larger than the training corpus"):
        syntic(memory_size=10_000).fit(corpus, context())
    with pytest.raises(BenchError, match="does not exist"):
        syntic(generator={"kind": "diffusers", "path": "/nonexistent/sd"}).fit(corpus, context())


# -- the ablation grid from the command line ------------------------------------------------------------

def test_all_eight_ablation_combinations_run_from_the_command_line(run_cli, tmp_path, tiny_clip_checkpoint, tiny_datasets):
    args = ["run", "--methods", "syntic", "--split", "tiny-coco", "--out", str(tmp_path / "run"),
            "--cache-dir", str(tmp_path / "cache"), "--encoder", tiny_clip_checkpoint,
            "--sweep", "syntic.optimise=true,false", "--sweep", "syntic.project=true,false",
            "--sweep", "syntic.auxiliary=true,false"]
    for key, value in TINY_DECODER["decoder"].items():
        args += ["--set", f"decoder.{key}={value}"]
    code, out, err = run_cli(*args)
    assert code == 0, err
    records = read_records(tmp_path / "run").records
    combos = {(r.config["optimise"], r.config["project"], r.config["auxiliary"]) for r in records}
    assert len(records) == 8 and len(combos) == 8
    assert "optimise=off project=off auxiliary=off" in out  # the table names each combination
    generated = json.loads(json.dumps([r.fit_info["generator"] for r in records]))
    assert set(generated) == {"shapes-synthetic-64px-v1"}


@pytest.mark.parametrize("argv, fragment", [
    (["--sweep", "syntic.optimise"], "expects KEY=V1,V2"),
    (["--sweep", "syntic.nosuch=1,2"], "no selected method has a setting 'nosuch'"),
    (["--sweep", "syntic.tau=0.01,0.01"], "lists a value twice"),
    (["--sweep", "syntic.tau=0.01,0.02", "--set", "syntic.tau=0.01"], "given twice"),
    (["--sweep", "syntic.optimise=yes,perhaps"], "optimise"),
])
def test_sweep_bad_input(run_cli, argv, fragment, tmp_path):
    code, _, err = run_cli("run", "--methods", "syntic", "--split", "shapes-coco", *argv,
                           "--out", str(tmp_path / "r"), "--cache-dir", str(tmp_path / "c"))
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and fragment in err


def test_a_fit_saved_with_a_setting_its_off_switch_left_unused_still_loads(world_context, tmp_path):
    """Before such settings were refused, syntic took tau beside project=false and ignored it; a fit
    saved then loads (for `bench caption`) and captions as saved, the setting dropped."""
    import json

    corpus, context, queries = world_context
    method = syntic(optimise=False, project=False)
    method.fit(corpus, context())
    captions = method.caption(queries)
    method.save(tmp_path / "fit")
    meta = json.loads((tmp_path / "fit" / "config.json").read_text())
    meta["config"]["tau"] = 0.05  # as an older version saved it
    (tmp_path / "fit" / "config.json").write_text(json.dumps(meta))
    loaded = type(method).load(tmp_path / "fit")
    assert loaded.config.tau is None and loaded.caption(queries) == captions
    with pytest.raises(ConfigError, match="syntic.tau is unused with syntic.project=false"):
        syntic(project=False, tau=0.05)
