"""Text-to-image generators: the interface SynTIC-style methods generate their images with.

A generator turns prompts into PIL images, deterministically for a seed. ``id`` names the
generator and its settings; caches of generated images are keyed by it and the prompt.
Backends register in ``GENERATORS``: ``shapes`` (the world's own renderer) and ``diffusers``
(any text-to-image pipeline loaded with ``from_pretrained``). ``bench.generated`` caches their
images on disk by generator id, seed and prompt.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from bench.registry import Registry


class ImageGenerator(ABC):
    """Text -> image. ``generate(prompts, seed)`` returns one RGB PIL image per prompt."""

    @property
    @abstractmethod
    def id(self) -> str:
        """A stable name for this generator and its settings (part of cache keys)."""

    @abstractmethod
    def generate(self, prompts: Sequence[str], seed: int = 0) -> list[Any]:
        """One image per prompt; the same prompts and seed give the same images."""

    def prompt_seed(self, prompt: str, seed: int) -> int:
        """A per-prompt seed, so an image does not depend on which batch its prompt was in."""
        digest = hashlib.sha256(f"{self.id}|{seed}|{prompt}".encode()).digest()
        return int.from_bytes(digest[:8], "little")


GENERATORS: Registry[type[ImageGenerator]] = Registry("generator", ImageGenerator)
GENERATORS.register("shapes", "bench.shapes.generator:ShapesGenerator")
GENERATORS.register("diffusers", "bench.diffusers_generator:DiffusersGenerator")
