"""Images/s of the shapes text-to-image generator, raw and through the generated-image cache.

    python benchmarks/generator_speed.py [--n 2000]
"""

from __future__ import annotations

import argparse
import tempfile
import time


def main() -> None:
    from bench.generated import GeneratedImages
    from bench.shapes.domains import WorldConfig, captions_of
    from bench.shapes.generator import ShapesGenerator

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    args = parser.parse_args()
    prompts = [captions_of(WorldConfig(), "coco", "train", i)[0] for i in range(args.n)]
    gen = ShapesGenerator()
    t = time.perf_counter()
    gen.generate(prompts)
    raw = args.n / (time.perf_counter() - t)
    with tempfile.TemporaryDirectory() as tmp:
        cache = GeneratedImages(tmp, gen)
        t = time.perf_counter()
        cache.ensure(prompts)
        cached = args.n / (time.perf_counter() - t)
        t = time.perf_counter()
        cache.ensure(prompts)
        again = args.n / (time.perf_counter() - t)
    print(f"shapes generator, {args.n} prompts: {raw:,.0f} images/s raw; {cached:,.0f} images/s generated and written "
          f"as PNG; {again:,.0f} prompts/s when all are cached")


if __name__ == "__main__":
    main()
