"""A contact sheet of the shapes world: ``python -m bench.shapes.samples OUT.png``.

One row per domain (photo-style renders, with the first caption of each image under it in
the README), and a last row of the generator's synthetic renders of the coco row's captions.
"""

from __future__ import annotations

import sys

from PIL import Image

from bench.shapes.domains import WorldConfig, captions_of, scene_of
from bench.shapes.generator import ShapesGenerator
from bench.shapes.world import render


def contact_sheet(n: int = 6, scale: int = 2, world: WorldConfig | None = None) -> tuple[Image.Image, list[list[str]]]:
    world = world or WorldConfig()
    size = world.image_size * scale
    rows = []
    texts = []
    for domain in ("coco", "flickr", "romantic", "humor"):
        rows.append([render(scene_of(world, domain, "test", i), world.image_size) for i in range(n)])
        texts.append([captions_of(world, domain, "test", i)[0] for i in range(n)])
    rows.append(ShapesGenerator(world.image_size).generate(texts[0]))
    texts.append(texts[0])
    sheet = Image.new("RGB", (n * size, len(rows) * size), "white")
    for r, row in enumerate(rows):
        for c, img in enumerate(row):
            sheet.paste(img.resize((size, size), Image.NEAREST), (c * size, r * size))
    return sheet, texts


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else "shapes.png"
    sheet, texts = contact_sheet()
    sheet.save(out)
    for name, row in zip(("shapes-coco", "shapes-flickr", "shapes-romantic", "shapes-humor", "generator"), texts):
        print(f"{name}: " + " | ".join(row[:3]))
