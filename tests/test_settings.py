"""No setting is accepted and then ignored: each one works, or is refused in one line."""

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
