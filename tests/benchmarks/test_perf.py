"""Performance benchmarks, run on demand (not in the default test run):

    python -m pytest -m benchmark tests/benchmarks --benchmark-columns=mean,stddev,rounds

On a CPU they use the shapes world's CLIP and the default decoder (``bench prepare shapes``
runs first if needed). With ``BENCH_REAL_SIZE=1`` they build real-size architectures from
config with random weights instead (open_clip ViT-B-32, GPT-2 124M), meant for a GPU
(``BENCH_DEVICE=cuda``).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.benchmark

DEVICE = os.environ.get("BENCH_DEVICE", "cpu")
REAL_SIZE = os.environ.get("BENCH_REAL_SIZE") == "1"


@pytest.fixture(scope="module")
def encoder():
    import open_clip

    from bench.encoders import ClipEncoder, create_encoder

    if REAL_SIZE:
        model, _, preprocess = open_clip.create_model_and_transforms("ViT-B-32", device=DEVICE)
        return ClipEncoder(model, preprocess, open_clip.get_tokenizer("ViT-B-32"), "ViT-B-32:random", "0" * 64, DEVICE)
    return create_encoder("shapes", device=DEVICE, log=lambda m: None)


@pytest.fixture(scope="module")
def captions():
    from bench.shapes.domains import WorldConfig, captions_of

    return [c for i in range(1024) for c in captions_of(WorldConfig(), "coco", "train", i)][:4096]


@pytest.fixture(scope="module")
def decoder(encoder, captions):
    from dataclasses import replace

    from bench.decoders import PRESETS, CaptionDecoder

    cfg = replace(PRESETS["gpt2"], gpt2_path="") if REAL_SIZE else PRESETS["transformer"]
    dec = CaptionDecoder(cfg, encoder.dim)
    encoded = dec.build(captions)
    return dec, encoded


def test_encode_texts(benchmark, encoder, captions):
    result = benchmark.pedantic(lambda: encoder.encode_texts(captions, progress=None), rounds=3, iterations=1)
    benchmark.extra_info["captions_per_s"] = len(captions) / benchmark.stats.stats.mean
    assert result.shape == (len(captions), encoder.dim)


def test_encode_texts_raw_forward(benchmark, encoder, captions):
    tokens = encoder.tokenize(captions)
    bs = encoder.config.text_batch_size

    def raw():
        for i in range(0, len(tokens), bs):
            encoder.encode_tokens(tokens[i:i + bs])
        if DEVICE.startswith("cuda"):
            torch.cuda.synchronize()

    benchmark.pedantic(raw, rounds=3, iterations=1)
    benchmark.extra_info["captions_per_s"] = len(captions) / benchmark.stats.stats.mean


def test_training_step(benchmark, decoder, encoder, captions):
    from dataclasses import replace

    dec, encoded = decoder
    emb = np.random.default_rng(0).normal(size=(len(encoded), encoder.dim)).astype(np.float32)
    steps = 20
    cfg = dec.config
    dec.config = replace(cfg, epochs=steps * cfg.batch_size / len(encoded))
    stats = {}

    def fit():
        stats["s"] = dec.fit(emb, encoded, device=DEVICE, log=lambda m: None)

    benchmark.pedantic(fit, rounds=2, iterations=1)
    dec.config = cfg
    s = stats["s"]
    benchmark.extra_info.update(tokens_per_s=s.tokens / s.seconds, forward_backward_fraction=s.compute_seconds / s.seconds,
                                data_fraction=s.data_seconds / s.seconds, step_ms=1000 * s.seconds / s.steps)
    assert s.compute_seconds / s.seconds > 0.5


def test_batched_decoding(benchmark, decoder, encoder):
    dec, _ = decoder
    emb = np.random.default_rng(1).normal(size=(512, encoder.dim)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    out = benchmark.pedantic(lambda: dec.decode(emb, device=DEVICE), rounds=3, iterations=1)
    benchmark.extra_info["captions_per_s"] = len(emb) / benchmark.stats.stats.mean
    assert len(out) == 512
