"""The world's text-to-image generator.

It parses a caption back into a scene (objects with their colour and size, and the relations
the caption states) and renders it in the ``synthetic`` style: flat background, exact
colours, no noise, tidy layout. Its images therefore differ from the world's "photos" the way
Stable Diffusion images differ from real photographs: right content, other statistics.
Attributes a caption leaves out (a colour, a size) are drawn from the seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from bench.generators import ImageGenerator
from bench.shapes.captions import parse
from bench.shapes.world import COLOURS, SIZES, Obj, Scene, render


class ShapesGenerator(ImageGenerator):
    """Caption -> parsed scene -> clean render."""

    def __init__(self, image_size: int = 64, max_objects: int = 3) -> None:
        self.image_size = image_size
        self.max_objects = max_objects

    @property
    def id(self) -> str:
        return f"shapes-synthetic-{self.image_size}px-v1"

    def scene(self, prompt: str, seed: int = 0) -> Scene:
        rng = np.random.default_rng(self.prompt_seed(prompt, seed))
        mentions, relations = parse(prompt)
        mentions = mentions[: self.max_objects]
        n = len(mentions)
        # A tidy default layout: left to right in the order mentioned, then the stated
        # relations move objects where the caption puts them.
        radii = [sum(SIZES[m.size or "medium"]) / 2 for m in mentions]
        gap = (1.0 - 2 * sum(radii)) / (n + 1)
        if gap > 0:  # side by side without touching, each as wide as its size
            xs, left = [], gap
            for r in radii:
                xs.append(left + r)
                left += 2 * r + gap
        else:
            xs = [(k + 1) / (n + 1) for k in range(n)]
        ys = [0.5 + rng.uniform(-0.08, 0.08) for _ in range(n)]
        for i, rel, j in relations:
            if i >= n or j >= n:
                continue
            if rel in ("left", "right"):
                lo, hi = sorted((xs[i], xs[j]))
                xs[i], xs[j] = (lo, hi) if rel == "left" else (hi, lo)
            else:
                xs[i] = xs[j] = (xs[i] + xs[j]) / 2
                ys[i], ys[j] = (0.28, 0.72) if rel == "above" else (0.72, 0.28)
                for k in range(n):  # a third object gets the free side, not the stacked column
                    if k not in (i, j):
                        xs[i] = xs[j] = 0.35 if xs[k] > 0.5 else 0.65
                        xs[k] = 0.82 if xs[i] < 0.5 else 0.18
        objects = tuple(
            Obj(m.shape, m.colour or str(rng.choice(list(COLOURS))), m.size or "medium", float(x), float(y), 0.0)
            for m, x, y in zip(mentions, xs, ys)
        )
        return Scene(objects, background="plain", seed=int(rng.integers(2**31)))

    def generate(self, prompts: Sequence[str], seed: int = 0) -> list[Any]:
        return [render(self.scene(p, seed), self.image_size, style="synthetic") for p in prompts]

