import numpy as np
import pytest
import torch

from bench.captioner import Corpus, FitContext
from bench.errors import BenchError, ConfigError
from bench.plugins import create_method, method_config
from bench.projection import project, projection_weights


def unit(rows, dim=16, seed=0):
    x = np.random.default_rng(seed).normal(size=(rows, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_weights_sum_to_one_and_output_is_unit_norm():
    x, memory = unit(5, seed=1), unit(40, seed=2)
    weights = projection_weights(x, memory, tau=0.05)
    assert weights.shape == (5, 40) and torch.allclose(weights.sum(1), torch.ones(5), atol=1e-5)
    out = project(x, memory, tau=0.05)
    assert torch.allclose(out.norm(dim=1), torch.ones(5), atol=1e-5)
    expected = torch.nn.functional.normalize(weights @ torch.from_numpy(memory), dim=-1)
    assert torch.allclose(out, expected, atol=1e-5)


def test_chunked_streaming_softmax_equals_the_full_one():
    x, memory = unit(7, seed=3), unit(1000, seed=4)
    full = project(x, memory, tau=0.01, chunk_size=10_000)
    chunked = project(x, memory, tau=0.01, chunk_size=37, batch_size=3)
    assert torch.allclose(full, chunked, atol=1e-5)


def test_small_tau_returns_the_nearest_memory_item_and_large_tau_the_mean():
    x, memory = unit(6, seed=5), unit(50, seed=6)
    nearest = (x @ memory.T).argmax(1)
    out = project(x, memory, tau=1e-4).numpy()
    assert np.allclose(out, memory[nearest], atol=1e-4)
    mean = memory.mean(0) / np.linalg.norm(memory.mean(0))
    assert np.allclose(project(x, memory, tau=1e4).numpy(), np.tile(mean, (6, 1)), atol=1e-3)


def test_bad_tau_and_memory_size():
    with pytest.raises(ConfigError, match="τ must be a finite number >= 1e-06"):
        project(unit(1), unit(3), tau=0)
    with pytest.raises(ConfigError, match="decap.tau must be a finite number >= 1e-06"):
        method_config("decap", {"tau": -0.1})
    # accepted before, then NaN weights and empty captions: cos / τ overflows float32
    for tau in (1e-300, 1e-7, float("inf"), float("nan")):
        with pytest.raises(ConfigError, match="decap.tau must be a finite number"):
            method_config("decap", {"tau": tau})
        with pytest.raises(ConfigError, match="syntic.tau must be a finite number"):
            method_config("syntic", {"tau": tau})
    assert np.isfinite(project(unit(4), unit(30), tau=1e-6).numpy()).all()
    method = create_method("decap", method_config("decap", {"memory_size": 100}))
    corpus = Corpus([f"caption {i}" for i in range(10)], unit(10))
    with pytest.raises(BenchError, match="memory_size 100 is larger than the training corpus \\(10 captions\\)"):
        method.fit(corpus, FitContext())


def test_decap_memory_is_a_seeded_subset():
    from tests.conftest import TINY_DECODER

    corpus = Corpus([f"a caption number {i}" for i in range(30)], unit(30))
    a = create_method("decap", method_config("decap", {"memory_size": 8, **TINY_DECODER}))
    a.fit(corpus, FitContext(seed=0))
    b = create_method("decap", method_config("decap", {"memory_size": 8, **TINY_DECODER}))
    b.fit(corpus, FitContext(seed=0))
    assert a.memory.shape == (8, 16) and np.array_equal(a.memory, b.memory)
    rows = {tuple(r) for r in np.asarray(corpus.embeddings)}
    assert all(tuple(r) in rows for r in a.memory)
