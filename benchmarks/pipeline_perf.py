"""Measure the pipeline's performance criteria in one run, on the shapes world.

    python benchmarks/pipeline_perf.py [--cache-dir DIR] [--device cpu]

1. encode: the encode stage (tokenise or decode + preprocess, forward, copy out) against the
   encoder's raw forward on pre-tokenised / preprocessed tensors, each at its best batch size;
2. a decoder training step: the share of its time in forward + backward, in batch assembly
   (data) and in the optimiser, and training tokens/s;
3. batched decoding: captions/s, greedy and beam 5.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("BENCH_PROGRESS", "0")


def best(fn, sizes, n):
    rates = {}
    for bs in sizes:
        fn(bs)  # warm-up
        t = time.perf_counter()
        fn(bs)
        rates[bs] = n / (time.perf_counter() - t)
    size = max(rates, key=rates.get)
    return size, rates[size], rates


def main() -> None:
    import numpy as np

    from bench.config import default_cache_dir
    from bench.decoders import PRESETS, CaptionDecoder
    from bench.encoders import create_encoder
    from bench.plugins import create_dataset

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", default=str(default_cache_dir()))
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    enc = create_encoder("shapes", device=args.device, cache_dir=Path(args.cache_dir), log=lambda m: None)
    train = create_dataset("shapes-coco", cache_dir=args.cache_dir).load("train")
    test = create_dataset("shapes-coco", cache_dir=args.cache_dir).load("test")
    captions = train.captions()[:8192]
    paths = test.require_images() * 4  # 2,000 image files

    def compare(name: str, unit: str, raw: Callable, stage: Callable, sizes: tuple[int, ...], n: int) -> None:
        """The encode stage against the raw forward on the same inputs, each at its best batch size."""
        raw_bs, raw_rate, _ = best(raw, sizes, n)
        stage_bs, stage_rate, _ = best(stage, sizes, n)
        print(f"{name} encode: raw forward {raw_rate:,.0f} {unit}/s (batch {raw_bs}); stage {stage_rate:,.0f} {unit}/s "
              f"(batch {stage_bs}); ratio {stage_rate / raw_rate:.2f}")

    tokens = enc.tokenize(captions)
    compare("text", "captions", lambda bs: [enc.encode_tokens(tokens[i:i + bs]) for i in range(0, len(tokens), bs)],
            lambda bs: enc.encode_texts(captions, batch_size=bs, progress=None), (256, 512, 1024, 2048), len(captions))
    pixels = enc.batch_images([enc.load_image(p) for p in paths])
    compare("image", "images", lambda bs: [enc.encode_pixels(pixels[i:i + bs]) for i in range(0, len(pixels), bs)],
            lambda bs: enc.encode_images(paths, batch_size=bs, progress=None), (64, 128, 256, 512), len(paths))

    all_captions = train.captions()
    emb = enc.encode_texts(all_captions, progress=None)
    dec = CaptionDecoder(PRESETS["transformer"], enc.dim)
    encoded = dec.build(all_captions)
    stats = dec.fit(emb, encoded, device=args.device, log=lambda m: None)
    d = stats.to_dict()
    print(f"decoder training ({d['steps']} steps of {dec.config.batch_size}, one epoch of {len(all_captions):,} captions): "
          f"{stats.seconds:.1f} s, {stats.tokens / stats.seconds:,.0f} tokens/s, {1000 * stats.seconds / stats.steps:.0f} ms/step; "
          f"forward+backward {d['forward_backward_fraction']:.1%}, data {d['data_fraction']:.1%}, optimiser {d['optimizer_fraction']:.1%}")

    images = np.asarray(enc.encode_images(test.require_images(), progress=None)[0])
    for beam in (1, 5):
        t = time.perf_counter()
        dec.decode(images, device=args.device, beam_size=beam)
        print(f"decoding {len(images)} images, beam {beam}: {len(images) / (time.perf_counter() - t):,.0f} captions/s")


if __name__ == "__main__":
    main()
