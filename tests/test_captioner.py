from dataclasses import dataclass

import numpy as np
import pytest

from bench.captioner import Captioner, Corpus, FitContext


@dataclass(frozen=True)
class NearestConfig:
    top: int = 1


class Nearest(Captioner):
    """A toy retrieval captioner used to exercise the shared save / load path."""

    Config = NearestConfig

    def fit(self, corpus, ctx):
        self.captions = list(corpus.captions)
        self.memory = np.asarray(corpus.embeddings, dtype=np.float32)

    def caption(self, image_embeddings):
        sims = np.asarray(image_embeddings) @ self.memory.T
        return [self.captions[i] for i in sims.argmax(1)]

    def state_dict(self):
        import torch

        return {"captions": self.captions, "memory": torch.from_numpy(self.memory)}

    def load_state_dict(self, state):
        self.captions = list(state["captions"])
        self.memory = state["memory"].numpy()


def test_corpus_validates_shapes():
    with pytest.raises(ValueError, match="2 captions but 3 embeddings"):
        Corpus(["a", "b"], np.zeros((3, 4)))
    with pytest.raises(ValueError, match="2-D"):
        Corpus(["a"], np.zeros(4))
    assert Corpus(["a", "b"], np.zeros((2, 4))).dim == 4


def test_config_type_is_enforced():
    assert Nearest().config == NearestConfig()
    with pytest.raises(TypeError, match="takes a NearestConfig"):
        Nearest({"top": 1})


def test_save_and_load_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(5, 8)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    model = Nearest(NearestConfig(top=1))
    model.fit(Corpus([f"caption {i}" for i in range(5)], emb), FitContext(seed=0))
    queries = emb[[3, 1]] + 0.01
    model.save(tmp_path / "ckpt")
    again = Nearest.load(tmp_path / "ckpt")
    assert again.config == model.config
    assert again.caption(queries) == model.caption(queries) == ["caption 3", "caption 1"]
    assert Captioner.caption is not Nearest.caption
