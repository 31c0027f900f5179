"""How well the CLIP zero-shot tagger names the objects of shapes images.

Precision and recall of its tags (top 3, probability >= 0.1, over the world's 12 shape words)
against the shapes the captions name: on the generated training images syntic tags, and on
the real shapes-coco test images it tags at test time. Needs a prepared world
(``python -m bench prepare``); reuses the cached generated images and embeddings.

    python benchmarks/tagger_accuracy.py [--cache-dir DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def precision_recall(tags: list[list[str]], truth: list[set[str]]) -> tuple[float, float, float]:
    hits = sum(len(set(t) & s) for t, s in zip(tags, truth))
    said, true = sum(len(t) for t in tags), sum(len(s) for s in truth)
    return hits / max(said, 1), hits / max(true, 1), said / max(len(tags), 1)


def main() -> None:
    from bench.cache import EmbeddingCache
    from bench.captioner import FitContext
    from bench.config import default_cache_dir
    from bench.encoders import create_encoder
    from bench.generated import embed_generated
    from bench.generators import GENERATORS
    from bench.plugins import create_dataset, load_plugins
    from bench.shapes.captions import parse
    from bench.shapes.world import SHAPES
    from bench.taggers import TAGGERS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", default=str(default_cache_dir()))
    cache = Path(parser.parse_args().cache_dir).expanduser()
    load_plugins()
    encoder = create_encoder("shapes", cache_dir=cache, log=lambda m: None)
    tagger = TAGGERS.get("clip")(encoder, SHAPES, top_k=3, threshold=0.1)
    dataset = create_dataset("shapes-coco", None, cache_dir=cache)

    def shapes(text: str) -> set[str]:
        return {m.shape for m in parse(text)[0]}

    captions = dataset.load("train").captions()
    ctx = FitContext(encoder=encoder, cache=EmbeddingCache(cache, log=lambda m: None), cache_dir=cache)
    _, generated = embed_generated(captions, GENERATORS.get("shapes")(), ctx, "shapes-coco")
    rows = [("generated training images", tagger.tag_embeddings(np.asarray(generated)), [shapes(c) for c in captions])]
    test = dataset.load("test")
    embeddings, _ = encoder.encode_images(test.require_images())
    rows.append(("real test images", tagger.tag_embeddings(embeddings),
                 [set().union(*(shapes(c) for c in item.captions)) for item in test.items]))
    chance = np.mean([len(s) for s in rows[1][2]]) / len(SHAPES)
    for name, tags, truth in rows:
        p, r, n = precision_recall(tags, truth)
        print(f"{name:<26} precision {p:.3f}  recall {r:.3f}  tags/image {n:.2f}")
    print(f"{'chance precision':<26} {chance:.3f}")


if __name__ == "__main__":
    main()
