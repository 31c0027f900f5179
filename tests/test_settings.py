"""No setting is accepted and then ignored: each one works, or is refused in one line."""

import json

import pytest
import torch.nn as nn

from bench.decoders import CaptionDecoder, DecoderConfig
from bench.decoders.mappers import TransformerMapper
from bench.errors import BenchError, ConfigError
from bench.grid import RunConfig, build_grid
from bench.plugins import load_plugins, method_config

CAPTIONS = ["a red circle", "a blue square next to a green star", "a small yellow heart", "two pink rings"] * 4


@pytest.mark.parametrize("kind, mapper, module", [
    ("transformer", "linear", nn.Linear), ("transformer", "mlp", nn.Sequential), ("transformer", "transformer", TransformerMapper),
    ("gpt2", "linear", nn.Linear), ("gpt2", "mlp", nn.Sequential), ("gpt2", "transformer", TransformerMapper),
])
def test_every_mapper_with_every_decoder_kind(kind, mapper, module):
    import numpy as np

    config = DecoderConfig(kind=kind, mapper=mapper, width=32, layers=1, heads=2, prefix_length=2, epochs=1, batch_size=8,
                           warmup=1, max_length=12)
    decoder = CaptionDecoder(config, embed_dim=16)
    encoded = decoder.build(CAPTIONS)
    assert type(decoder.net.mapper) is module
    embeddings = np.random.default_rng(0).normal(size=(len(CAPTIONS), 16)).astype(np.float32)
    stats = decoder.fit(embeddings, encoded, progress=None)
    assert stats.steps == 2 and np.isfinite(stats.final_loss)
    assert len(decoder.decode(embeddings[:3])) == 3
    restored = CaptionDecoder(config, embed_dim=16)
    restored.load_state_dict(decoder.state_dict())  # the saved mapper comes back as the same module
    assert type(restored.net.mapper) is module and restored.decode(embeddings[:3]) == decoder.decode(embeddings[:3])


@pytest.mark.parametrize("kind", ["transformer", "gpt2"])
@pytest.mark.parametrize("mapper", ["linear", "mlp", "transformer"])
def test_a_zero_mapper_maps_what_training_never_moved_along_to_nothing(kind, mapper):
    """``decoder.mapper_init=zero``: the training embeddings span half the space; after the fit,
    moving an input along the other half changes no prefix vector (and both seeds agree on
    that), where the network's own initialisation leaves each seed's random response there."""
    import numpy as np
    import torch

    from bench.decoders.mappers import first_map

    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(len(CAPTIONS), 16)).astype(np.float32)
    embeddings[:, 8:] = 0  # no caption moves along dimensions 8-15
    probe = torch.as_tensor(rng.normal(size=(3, 16)), dtype=torch.float32)
    moved = probe.clone()
    moved[:, 8:] += 0.5
    responses = {}
    for init in ("zero", "normal"):
        for seed in (0, 1):
            config = DecoderConfig(kind=kind, mapper=mapper, width=32, layers=1, heads=2, prefix_length=2, epochs=2,
                                   batch_size=8, warmup=1, max_length=12, mapper_init=init)
            decoder = CaptionDecoder(config, embed_dim=16)
            decoder.fit(embeddings, decoder.build(CAPTIONS), seed=seed, progress=None)
            weights = first_map(decoder.net.mapper).weight.detach()
            assert weights[:, :8].abs().sum() > 0  # it learnt from the directions the captions use
            with torch.no_grad():
                responses[init, seed] = decoder.net.mapper(moved) - decoder.net.mapper(probe)
            assert (weights[:, 8:].abs().max() == 0) == (init == "zero")
    assert all(responses["zero", s].abs().max() == 0 for s in (0, 1))
    assert not torch.allclose(responses["normal", 0], responses["normal", 1])


def test_the_paper_presets_keep_their_mapper_initialisation():
    from bench.decoders.config import PRESETS

    assert DecoderConfig().mapper_init == "zero"  # the embedded default's decoder
    assert {name: PRESETS[name].mapper_init for name in ("gpt2", "viecap", "ifcap")} == dict.fromkeys(("gpt2", "viecap", "ifcap"), "normal")
    with pytest.raises(ConfigError, match="mapper_init must be one of normal, zero, got 'small'"):
        method_config("capdec", {"decoder": {"mapper_init": "small"}})


def test_detr_tagger_refuses_a_vocabulary():
    load_plugins()
    with pytest.raises(ConfigError, match="detr tagger names its own labels"):
        method_config("syntic", {"tagger": {"kind": "detr", "vocabulary": "circle,square"}})


def test_the_world_renderer_refuses_diffusers_settings(world_context):
    corpus, context, _ = world_context
    from bench.plugins import create_method

    method = create_method("syntic", method_config("syntic", {"generator": {"steps": 50}, "auxiliary": False}))
    with pytest.raises(BenchError, match="steps=50: the shapes generator has no such setting"):
        method.fit(corpus, context())


def test_noise_without_a_noise_method_is_refused():
    with pytest.raises(ConfigError, match="--noise applies to methods that inject noise"):
        build_grid(RunConfig(methods=("clipre", "decap"), splits=("coco",), noise=(0.0, 0.01)))


def test_build_grid_validates_as_the_command_line_does():
    with pytest.raises(ConfigError, match="no selected method has a setting 'nosuch'"):
        build_grid(RunConfig(methods=("capdec",), splits=("coco",), method_options={"nosuch": 1}))
    with pytest.raises(ConfigError, match="no selected method has a setting 'tau'"):
        build_grid(RunConfig(methods=("capdec",), splits=("coco",), sweep={"tau": [0.1, 0.2]}))


def test_encoder_settings_reach_the_encoder(tmp_path):
    from bench.runner import Runner

    run = RunConfig(methods=("clipre",), splits=("coco",), out=tmp_path / "r", cache_dir=tmp_path / "c",
                    encoder_options={"text_batch_size": 7, "image_batch_size": 3, "loader_threads": 1})
    config = Runner(run, log=lambda m: None).inputs.encoder_config
    assert (config.name, config.text_batch_size, config.image_batch_size, config.loader_threads) == ("shapes", 7, 3, 1)
    with pytest.raises(ConfigError, match="encoder.image_batch_size must be >= 1"):
        RunConfig(encoder_options={"image_batch_size": 0})
    with pytest.raises(ConfigError, match="unknown setting 'encoder.batch'"):
        RunConfig(encoder_options={"batch": 0})


def test_encoder_settings_from_the_command_line(run_cli, tmp_path):
    code, _, err = run_cli("run", "--methods", "clipre", "--split", "coco", "--set", "encoder.loader_threads=0",
                           "--out", str(tmp_path / "r"), "--cache-dir", str(tmp_path / "c"))
    assert code == 2 and "encoder.loader_threads must be >= 1" in err and len(err.strip().splitlines()) == 1


def test_the_shapes_clips_text_side_head_reaches_only_the_shapes_encoder(monkeypatch, tmp_path):
    """--set encoder.shapes_text_attribute_weight=W: the run's shapes encoder asks prepare_world
    for that CLIP; another CLIP-S encoder does not get it; without it, the default CLIP."""
    import bench.shapes.prepare as prepare
    from bench.encoders import create_encoder

    asked = []

    class Stop(Exception):
        pass

    def fake_prepare(cache_dir, world=None, clip=None, log=print):
        asked.append(clip)
        raise Stop

    monkeypatch.setattr(prepare, "prepare_world", fake_prepare)
    run = RunConfig(methods=("clipre",), splits=("coco",), out=tmp_path / "r", cache_dir=tmp_path / "c",
                    encoder_options={"shapes_text_attribute_weight": 50}, eval_encoder="ViT-B-32:openai")
    assert run.encoder_config().shapes_text_attribute_weight == 50.0
    assert run.encoder_config(run.eval_encoder_spec).shapes_text_attribute_weight is None
    # the other way round: another CLIP for captions, the weighted shapes CLIP for CLIP-S
    other = RunConfig(methods=("clipre",), splits=("coco",), encoder="ViT-B-32:openai", eval_encoder="shapes",
                      encoder_options={"shapes_text_attribute_weight": "50"})
    assert other.encoder_config().shapes_text_attribute_weight is None
    assert other.encoder_config(other.eval_encoder_spec).shapes_text_attribute_weight == 50.0
    # read as its type: "0" is 0.0, the CLIP without the head (not the default), so it needs a shapes encoder
    assert RunConfig(encoder_options={"shapes_text_attribute_weight": "0"}).encoder_config().shapes_text_attribute_weight == 0.0
    with pytest.raises(ConfigError, match="trains the shapes world's CLIP"):
        RunConfig(methods=("clipre",), splits=("coco",), encoder="ViT-B-32:openai", clip_score=False,
                  encoder_options={"shapes_text_attribute_weight": "0"})
    for config in (run.encoder_config(), RunConfig().encoder_config()):
        with pytest.raises(Stop):
            create_encoder(config, cache_dir=tmp_path / "c", log=lambda m: None)
    assert asked[0].text_attribute_weight == 50.0 and asked[1] is None


def test_a_fit_remembers_which_shapes_clip_it_was_trained_on(monkeypatch, tmp_path):
    """bench caption rebuilds the encoder a fit names, text-side head included, and refuses a
    fit.json whose encoder options are not what a run writes."""
    import bench.captioning as captioning
    from bench.errors import BenchError

    folder = tmp_path / "fit"
    folder.mkdir()
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.png").write_bytes(b"")  # never read: the encoder is built first
    seen = []

    class Stop(Exception):
        pass

    def fake_create(config, device="cpu", cache_dir=None, log=print):
        seen.append(config)
        raise Stop

    import bench.encoders

    monkeypatch.setattr(bench.encoders, "create_encoder", fake_create)
    monkeypatch.setattr(captioning, "fit_problem", lambda folder: None)  # the hashes of a complete fit are tested elsewhere
    for options, expected in (({"shapes_text_attribute_weight": 0.0}, 0.0), ({"shapes_text_attribute_weight": 50}, 50.0),
                              (None, None)):
        meta = {"method": "nonoise", "encoder": "shapes", "encoder_id": "shapes@x"}
        if options is not None:
            meta["encoder_options"] = options
        (folder / "fit.json").write_text(json.dumps(meta))
        with pytest.raises(Stop):
            captioning.caption_folder("nonoise", folder, tmp_path / "images")
        assert seen[-1].shapes_text_attribute_weight == expected
    for bad in ({"shapes_text_attribute_weight": "100"}, {"shapes_text_attribute_weight": None}, {"loader_threads": 1},
                [1], 5, [], 0, "", None):
        (folder / "fit.json").write_text(json.dumps({"method": "nonoise", "encoder": "shapes", "encoder_options": bad}))
        with pytest.raises(BenchError, match="encoder_options is not what a run writes"):
            captioning.caption_folder("nonoise", folder, tmp_path / "images")


def test_a_bad_shapes_clip_setting_for_the_clip_s_encoder_is_refused_before_the_run_folder_exists(run_cli, tmp_path):
    code, _, err = run_cli("run", "--methods", "clipre", "--split", "coco", "--encoder", "ViT-B-32:openai",
                           "--eval-encoder", "shapes", "--set", "encoder.shapes_text_attribute_weight=abc",
                           "--out", str(tmp_path / "r"), "--cache-dir", str(tmp_path / "c"))
    assert code == 2 and "shapes_text_attribute_weight" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()
