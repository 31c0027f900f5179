"""Generated images on disk, keyed by (generator id, seed, prompt).

Generating is the expensive stage of SynTIC-style methods: ``GeneratedImages.ensure`` makes
the images that are missing, in batches, writes each one atomically as soon as its batch is
done, and shows progress with an estimate of the time left. An interrupted call loses at most
one batch; the next call generates only what is still missing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.cache import GENERATED_FOLDER
from bench.generators import ImageGenerator
from bench.io import atomic_path, write_json_atomic


class GeneratedImages:
    def __init__(self, root: str | Path, generator: ImageGenerator) -> None:
        self.generator = generator
        self.folder = Path(root) / GENERATED_FOLDER / hashlib.sha256(generator.id.encode()).hexdigest()[:16]
        self.generated = 0  # images made by this instance (the rest came from disk)

    def path(self, prompt: str, seed: int = 0) -> Path:
        digest = hashlib.sha256(f"{seed}|{prompt}".encode()).hexdigest()
        return self.folder / digest[:2] / f"{digest}.png"

    def ensure(self, prompts: Sequence[str], seed: int = 0, batch_size: int = 64,
               progress: Callable | None = None) -> list[Path]:
        """The image path of every prompt (in order), generating the missing ones."""
        paths = [self.path(p, seed) for p in prompts]
        missing = list(dict.fromkeys(p for p, path in zip(prompts, paths) if not path.is_file()))
        if missing:
            write_json_atomic(self.folder / "generator.json", {"id": self.generator.id})
            bar = progress(total=len(missing), desc=f"generating images ({self.generator.id})", unit="img") if progress else None
            try:
                for s in range(0, len(missing), batch_size):
                    batch = missing[s:s + batch_size]
                    for prompt, image in zip(batch, self.generator.generate(batch, seed)):
                        target = self.path(prompt, seed)
                        with atomic_path(target, sync=False) as tmp:  # another process may write it too
                            image.save(tmp, format="PNG")
                        self.generated += 1
                    if bar is not None:
                        bar.update(len(batch))
            finally:
                if bar is not None:
                    bar.close()
        return paths


def embed_generated(prompts: Sequence[str], generator: ImageGenerator, ctx: Any, dataset: str,
                    batch_size: int = 64, seed: int = 0) -> tuple[list[Path], Any]:
    """Generate (or find on disk) one image per prompt, with the generation ``seed``, and embed
    them with ``ctx.encoder`` through the embedding cache; returns the image paths and their
    (N, D) embeddings. The generation seed is a setting of its own, not the fit's seed: a
    synthetic dataset is made once and its fits are repeated over seeds, as a paper would."""
    from bench.cache import encoder_key, fingerprint
    from bench.errors import BenchError

    if ctx.cache_dir is None:
        raise BenchError("generating images needs a cache folder (FitContext.cache_dir)")
    from bench.io import sha256_file

    store = GeneratedImages(ctx.cache_dir, generator)
    paths: list[Path] = []

    def encode() -> Any:
        emb, kept = ctx.encoder.encode_images(paths, progress=ctx.progress, desc="encoding generated images")
        if len(kept) != len(paths):
            raise BenchError(f"{len(paths) - len(kept)} generated images could not be read back")
        return emb

    paths.extend(store.ensure(prompts, seed, batch_size, progress=ctx.progress))
    if store.generated:
        ctx.log(f"generated {store.generated} images with {generator.id} into {store.folder}")
    # keyed by the images' bytes, not only by what made them: a file replaced in the generated
    # folder is encoded again rather than answered with the embedding of the image it replaced
    key = encoder_key(ctx.encoder, dataset, f"generated-{generator.id}-seed{seed}", "image",
                   fingerprint([f"{seed}|{p}|{sha256_file(path)}" for p, path in zip(prompts, paths)]))
    return paths, (ctx.cache.get(key, encode) if ctx.cache is not None else encode())
