"""The diffusers backend of the image-generator interface.

Any text-to-image pipeline that ``diffusers.AutoPipelineForText2Image.from_pretrained`` loads
(Stable Diffusion v1-5, as SynTIC uses, or any other), from a local folder or a hub id.
Steps, size, guidance and batch size are settings; each prompt gets its own seeded generator,
so an image does not depend on the batch its prompt was in.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.errors import BenchError
from bench.generators import ImageGenerator


class DiffusersGenerator(ImageGenerator):
    """A diffusers text-to-image pipeline behind the ``ImageGenerator`` interface."""

    def __init__(self, model: str, steps: int = 20, size: int = 512, guidance: float = 7.5, batch_size: int = 4,
                 device: str = "cpu") -> None:
        for name, value in (("steps", steps), ("size", size), ("batch_size", batch_size)):
            if value < 1:
                raise BenchError(f"diffusers generator: {name} must be >= 1, got {value}")
        self.model, self.steps, self.size, self.guidance = model, steps, size, guidance
        self.batch_size, self.device = batch_size, device
        self._pipe: Any = None
        folder = Path(model).expanduser()
        self.folder = folder if folder.exists() else None
        if self.folder is None and (model.startswith((".", "/", "~")) or model.count("/") > 1):
            raise BenchError(f"diffusers pipeline folder {model} does not exist")
        if self.folder is not None and not (self.folder / "model_index.json").is_file():
            raise BenchError(f"{self.folder} is not a diffusers pipeline folder (no model_index.json)")

    @property
    def id(self) -> str:
        digest = hashlib.sha256(self.model.encode())
        if self.folder is not None:  # the pipeline's configs and its weight files' contents identify it
            from bench.io import sha256_file

            for path in sorted(self.folder.rglob("*")):  # a fine-tuned copy has the same file sizes, not the same bytes
                if path.suffix == ".json":
                    digest.update(path.read_bytes())
                elif path.is_file():
                    digest.update(f"{path.relative_to(self.folder)}:{sha256_file(path)}".encode())
        return f"diffusers-{digest.hexdigest()[:12]}-{self.steps}steps-{self.size}px-cfg{self.guidance:g}"

    @property
    def pipeline(self) -> Any:
        if self._pipe is None:
            import diffusers

            try:
                pipe = diffusers.AutoPipelineForText2Image.from_pretrained(str(self.folder or self.model))
            except (ValueError, KeyError, AttributeError) as exc:
                kind = ""
                if self.folder is not None:
                    kind = json.loads((self.folder / "model_index.json").read_text()).get("_class_name", "")
                raise BenchError(f"{self.model} is not a text-to-image pipeline"
                                 f"{f' (it holds a {kind})' if kind else ''}: {str(exc).splitlines()[0][:160]}") from None
            except OSError as exc:
                raise BenchError(f"cannot load the diffusers pipeline {self.model} (offline or missing: "
                                 f"{str(exc).splitlines()[0][:160]}); pass a local folder") from None
            pipe.set_progress_bar_config(disable=True)
            self._pipe = pipe.to(self.device)
        return self._pipe

    def generate(self, prompts: Sequence[str], seed: int = 0) -> list[Any]:
        import torch

        out: list[Any] = []
        for s in range(0, len(prompts), self.batch_size):
            batch = list(prompts[s:s + self.batch_size])
            generators = [torch.Generator(device="cpu").manual_seed(self.prompt_seed(p, seed)) for p in batch]
            result = self.pipeline(prompt=batch, num_inference_steps=self.steps, height=self.size, width=self.size,
                                   guidance_scale=self.guidance, generator=generators, output_type="pil")
            out.extend(img.convert("RGB") for img in result.images)
        return out
