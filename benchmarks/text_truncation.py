"""How much cutting the text tokens after a batch's longest caption saves (``bench.clip_encoder.encode_text``).

A CLIP text tower is causal and reads the end-of-text position, so the positions after the
longest caption of a batch change nothing (``tests/test_gap.py`` checks equality); this measures
the time of the cut forward against the full-context forward on the same batches:

    python benchmarks/text_truncation.py --clip-cache DIR          # the world's CLIP (context 40)
    python benchmarks/text_truncation.py --model ViT-B-32          # ViT-B/32 from config, random weights (context 77)

Captions: the shapes-coco training captions (about 13 tokens each), in batches of 256.
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    import torch

    from bench.clip_encoder import encode_text
    from bench.config import default_cache_dir
    from bench.encoders import create_encoder
    from bench.plugins import create_dataset, load_plugins

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip-cache", help="cache folder with the world's CLIP (default: $TEXTCAP_BENCH_CACHE)")
    parser.add_argument("--model", help="an open_clip model name built from config instead of the world's CLIP")
    parser.add_argument("--captions", type=int, default=4096)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_plugins()
    cache = args.clip_cache or default_cache_dir()
    captions = create_dataset("shapes-coco", None, cache_dir=cache).load("train").captions()[: args.captions]
    if args.model:
        import open_clip

        model = open_clip.create_model(args.model).eval()
        tokenizer = open_clip.get_tokenizer(args.model)
    else:
        encoder = create_encoder("shapes", cache_dir=cache, log=lambda m: None)
        model, tokenizer = encoder.model, encoder.tokenize
    batches = [tokenizer(captions[s:s + args.batch]) for s in range(0, len(captions), args.batch)]
    timings = {}
    with torch.inference_mode():
        for name, run in (("full context", model.encode_text), ("cut after the longest caption", lambda t: encode_text(model, t))):
            run(batches[0])  # warm-up
            start = time.perf_counter()
            for tokens in batches:
                run(tokens)
            timings[name] = time.perf_counter() - start
    longest = max(int((t != 0).sum(1).max()) for t in batches)
    print(f"{len(captions)} captions, batch {args.batch}, context {batches[0].shape[1]}, longest caption {longest} tokens")
    for name, seconds in timings.items():
        print(f"{name:<32} {seconds:7.2f} s  {len(captions) / seconds:8.0f} captions/s")
    print(f"speed-up {timings['full context'] / timings['cut after the longest caption']:.2f}x")


if __name__ == "__main__":
    main()
