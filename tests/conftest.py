import os
from pathlib import Path

import pytest

# Nothing in the tests may reach a model hub: a missing weight must fail fast.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ["BENCH_PROGRESS"] = "0"

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """The sample real captions beside the checkout; tests using them skip when absent."""
    if not (SHARED_DATA / "coco_karpathy_val.json").is_file():
        pytest.skip(f"sample real captions not found in {SHARED_DATA} (real COCO / Flickr30k Karpathy val captions, kept "
                    "outside the repository; the loaders are also tested on Karpathy files the tests write themselves)")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def one_local_worker(monkeypatch):
    """Runs in tests compute in the test's own process (plugins registered in it, faster), unless a
    test asks for ``--workers``; the worker pool has its own tests."""
    monkeypatch.setattr("bench.executors.local.auto_workers", lambda device, cpus=None: 1)


@pytest.fixture
def run_cli(capsys):
    """Call the real CLI in-process; returns (exit code, stdout, stderr)."""
    from bench.cli import main

    def run(*argv: str):
        try:
            code = main(list(argv))
        except SystemExit as exc:  # argparse usage errors
            code = exc.code
        out, err = capsys.readouterr()
        return code, out, err

    return run


# -- tiny real models and data for the pipeline tests ---------------------------------------

TINY_CLIP_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 40, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="session")
def tiny_clip_checkpoint(tmp_path_factory) -> str:
    """A random-weight open_clip model saved to a file: the encoder spec ``TinyCLIP-Test:FILE``.

    It goes through the same loading path as a real ViT-B/32 checkpoint file."""
    import json

    import open_clip
    import torch

    folder = tmp_path_factory.mktemp("tiny_clip")
    configs = folder / "configs"
    configs.mkdir()
    (configs / "TinyCLIP-Test.json").write_text(json.dumps(TINY_CLIP_CONFIG))
    open_clip.add_model_config(configs)
    torch.manual_seed(0)
    model = open_clip.create_model("TinyCLIP-Test")
    path = folder / "tiny_clip.pt"
    torch.save(model.state_dict(), path)
    return f"TinyCLIP-Test:{path}"


def write_tiny_clip_folder(folder: Path, seed: int = 0) -> str:
    """A random-weight open_clip model as a ``local-dir:`` folder (config + weights): usable by a
    ``bench`` subprocess with no model config registered."""
    import json

    import open_clip
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_CLIP_CONFIG, "preprocess_cfg": {}}))
    torch.manual_seed(seed)
    torch.save(open_clip.CLIP(**TINY_CLIP_CONFIG).state_dict(), folder / "open_clip_pytorch_model.bin")
    return f"local-dir:{folder}"


@pytest.fixture(scope="session")
def tiny_clip_folder(tmp_path_factory) -> str:
    return write_tiny_clip_folder(tmp_path_factory.mktemp("tiny_clip_dir") / "model")


@pytest.fixture
def karpathy_root(tmp_path) -> Path:
    """A data root with tiny Karpathy-format ``coco`` and ``flickr30k`` datasets and their image files."""
    from tests.fixtures import karpathy_images, write_images, write_karpathy

    root = tmp_path / "data"
    for name in ("coco", "flickr30k"):
        images = karpathy_images()
        write_karpathy(root, name, images)
        write_images(root, images, name)
    return root


@pytest.fixture(scope="session")
def tiny_datasets():
    """Two tiny shapes domains registered as datasets ``tiny-coco`` and ``tiny-flickr``."""
    from bench.plugins import DATASETS, load_plugins
    from bench.shapes.domains import WorldConfig

    load_plugins()
    from bench.plugins.datasets.shapes import Shapes

    world = WorldConfig(coco_sizes=(30, 4, 12), flickr_sizes=(20, 4, 10), style_sizes=(10, 4, 6), pretrain_images=32)

    class TinyShapes(Shapes):
        def __init__(self, root=None, **options):
            super().__init__(root, **{**options, "world": world})

    classes = {}
    for name, domain in (("tiny-coco", "coco"), ("tiny-flickr", "flickr")):
        cls = type(name, (TinyShapes,), {"name": f"shapes-{domain}", "domain": domain, "__module__": __name__})
        if name not in DATASETS:
            DATASETS.register(name, cls, style=None)
        classes[name] = cls
    return world


TINY_DECODER = {"decoder": {"width": 32, "layers": 1, "heads": 2, "epochs": 40, "batch_size": 16, "warmup": 5, "lr": 3e-3,
                            "max_length": 24, "dropout": 0.0}}


SHAPE_CAPTIONS = [
    "a red circle next to a blue square",
    "a small green triangle above a yellow star",
    "a large purple heart",
    "an orange cross left of a white ring",
    "a pink pentagon and a black arrow",
    "a brown crescent below a blue diamond",
]


@pytest.fixture(scope="module")
def world_context(tiny_clip_checkpoint, tmp_path_factory):
    """A corpus of shapes captions embedded by a tiny random CLIP, and a fit context with that
    encoder and real caches: what a run gives a method (image-generating ones included)."""
    from bench.cache import EmbeddingCache
    from bench.captioner import Corpus, FitContext
    from bench.encoders import create_encoder
    from bench.shapes.world import SHAPES

    encoder = create_encoder(tiny_clip_checkpoint, log=lambda m: None)
    captions = [c for c in SHAPE_CAPTIONS for _ in range(4)]
    corpus = Corpus(captions, encoder.encode_texts(captions, progress=None), "tiny-shapes", "train",
                    objects=SHAPES, generator="shapes")
    root = tmp_path_factory.mktemp("method_cache")

    def context(seed=0):
        return FitContext(encoder=encoder, cache=EmbeddingCache(root, log=lambda m: None), seed=seed, cache_dir=root)

    queries = encoder.encode_texts(SHAPE_CAPTIONS[:3], progress=None)
    return corpus, context, queries
