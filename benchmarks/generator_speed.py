"""Images/s of a text-to-image generator, raw and through the generated-image cache.

    python benchmarks/generator_speed.py [--n 2000]                       # the shapes generator
    python benchmarks/generator_speed.py --diffusers DIR --device cuda --n 64 [--steps 20 --size 512 --batch-size 8]
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
    parser.add_argument("--diffusers", metavar="DIR", help="a diffusers text-to-image folder instead of the shapes generator")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=4)
    args = parser.parse_args()
    prompts = [captions_of(WorldConfig(), "coco", "train", i)[0] for i in range(args.n)]
    if args.diffusers:
        from bench.diffusers_generator import DiffusersGenerator

        gen = DiffusersGenerator(args.diffusers, steps=args.steps, size=args.size, batch_size=args.batch_size,
                                 device=args.device)
        gen.generate(prompts[:1])  # load the pipeline outside the timing
    else:
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
    print(f"{gen.id}, {args.n} prompts on {args.device}: {raw:,.0f} images/s raw; {cached:,.0f} images/s generated and written "
          f"as PNG; {again:,.0f} prompts/s when all are cached")


if __name__ == "__main__":
    main()
