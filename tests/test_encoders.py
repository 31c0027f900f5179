"""Encoders (through open_clip's real loading paths) and the embedding cache."""

import numpy as np
import pytest

from bench.cache import CacheKey, EmbeddingCache, fingerprint
from bench.encoders import create_encoder
from bench.errors import BenchError


def test_local_checkpoint_file_loads_and_encodes(tiny_clip_checkpoint, tmp_path):
    enc = create_encoder(tiny_clip_checkpoint, log=lambda m: None)
    assert enc.id.startswith(tiny_clip_checkpoint + "@") and len(enc.weights_hash) == 64
    texts = ["a red circle", "a big blue box to the left of a star"]
    emb = enc.encode_texts(texts, progress=None)
    assert emb.shape == (2, 32) and emb.dtype == np.float32
    assert np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    # The same weights loaded again give the same embeddings and the same id.
    again = create_encoder(tiny_clip_checkpoint, log=lambda m: None)
    assert again.id == enc.id and np.array_equal(again.encode_texts(texts, progress=None), emb)


def test_images_are_preprocessed_with_the_models_transforms(tiny_clip_checkpoint, tmp_path):
    from PIL import Image

    enc = create_encoder(tiny_clip_checkpoint, log=lambda m: None)
    paths = []
    for i, colour in enumerate(["red", "blue", "green"]):
        path = tmp_path / f"{i}.png"
        Image.new("RGB", (50 + 10 * i, 40), colour).save(path)  # sizes differ: the transforms resize
        paths.append(path)
    emb, kept = enc.encode_images(paths, batch_size=2, progress=None)
    assert kept == [0, 1, 2] and emb.shape == (3, 32)
    single, _ = enc.encode_images(paths[1:2], progress=None)
    assert np.allclose(single[0], emb[1], atol=1e-5)  # batching does not change an embedding


def test_unreadable_images_are_skipped_or_refused(tiny_clip_checkpoint, tmp_path):
    from PIL import Image

    enc = create_encoder(tiny_clip_checkpoint, log=lambda m: None)
    good = tmp_path / "good.png"
    Image.new("RGB", (32, 32), "red").save(good)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    emb, kept = enc.encode_images([bad, good], progress=None, skip_unreadable=True)
    assert kept == [1] and emb.shape == (1, 32)
    with pytest.raises(BenchError, match="cannot read image .*bad.png"):
        enc.encode_images([bad, good], progress=None)


def test_long_captions_are_truncated_and_counted(tiny_clip_checkpoint):
    messages = []
    enc = create_encoder(tiny_clip_checkpoint, log=messages.append)
    long = " ".join(["red circle"] * 40)
    emb = enc.encode_texts([long, "a star"], progress=None)
    assert emb.shape == (2, 32)
    assert any("1 of 2 captions are longer than the encoder's context (40 tokens)" in m for m in messages)


@pytest.mark.parametrize("spec, fragment", [
    ("ViT-B-33:openai", "unknown open_clip model 'ViT-B-33'; did you mean"),
    ("ViT-B-32:openaii", "unknown pretrained tag 'openaii' for ViT-B-32; valid tags: openai"),
    ("ViT-B-32:/no/such/file.pt", "checkpoint file /no/such/file.pt does not exist"),
    ("ViT-B-32", "must be 'shapes', NAME:TAG"),
    ("local-dir:/no/such/dir", "does not exist"),
])
def test_bad_encoder_specs(spec, fragment):
    with pytest.raises(BenchError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        create_encoder(spec, log=lambda m: None)


def test_weights_that_cannot_be_fetched_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(BenchError, match="cannot be fetched .*pass the file instead: --encoder RN50:/path/to/"):
        create_encoder("RN50:openai", cache_dir=tmp_path, log=lambda m: None)


def test_cuda_without_cuda_is_refused(monkeypatch, tiny_clip_checkpoint):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(BenchError, match="CUDA is not available"):
        create_encoder(tiny_clip_checkpoint, device="cuda", log=lambda m: None)


# -- the cache ------------------------------------------------------------------------------

def test_cache_computes_once_and_hits_after(tmp_path):
    cache = EmbeddingCache(tmp_path, log=lambda m: None)
    calls = []

    def compute():
        calls.append(1)
        return np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)

    key = CacheKey("enc@abc", "coco", "train", "text", fingerprint(["a", "b"]))
    first = cache.get(key, compute)
    second = EmbeddingCache(tmp_path, log=lambda m: None).get(key, compute)
    assert len(calls) == 1 and np.array_equal(first, second)
    assert isinstance(second, np.memmap)
    manifest = (cache.folder(key) / "manifest.json").read_text()
    for field in ('"count": 5', '"dim": 4', '"dtype": "float32"', '"normalized": true', '"sha256"'):
        assert field in manifest


def test_cache_key_covers_encoder_content_and_modality(tmp_path):
    base = CacheKey("enc@abc", "coco", "train", "text", fingerprint(["a"]))
    variants = [CacheKey("enc@abd", "coco", "train", "text", fingerprint(["a"])),
                CacheKey("enc@abc", "coco", "train", "text", fingerprint(["b"])),
                CacheKey("enc@abc", "coco", "train", "image", fingerprint(["a"])),
                CacheKey("enc@abc", "coco", "val", "text", fingerprint(["a"])),
                CacheKey("enc@abc", "coco", "train", "text", fingerprint(["a"]), compute="cuda:NVIDIA H200|batch 1024")]
    assert len({base.digest(), *(v.digest() for v in variants)}) == 6


def test_embeddings_are_cached_per_device_kind_and_batch_size(tiny_clip_checkpoint, tmp_path):
    """Another batch size changes an embedding's last bits, and a GPU's convolutions (TF32) more:
    one cache shared by two configurations or machines keeps their embeddings apart."""
    from bench.cache import encoder_key
    from bench.clip_encoder import EncoderConfig, device_kind

    enc = create_encoder(tiny_clip_checkpoint, log=lambda m: None)
    other = create_encoder(EncoderConfig(name=tiny_clip_checkpoint, text_batch_size=7), log=lambda m: None)
    assert enc.id == other.id  # the same weights
    assert enc.compute_id("text") == "cpu|batch 1024" and other.compute_id("text") == "cpu|batch 7"
    assert enc.compute_id("image") == other.compute_id("image") == "cpu|batch 256"
    cache = EmbeddingCache(tmp_path, log=lambda m: None)
    texts = [f"a red circle number {i}" for i in range(20)]
    keys = [encoder_key(e, "d", "train", "text", fingerprint(texts)) for e in (enc, other)]
    assert keys[0].digest() != keys[1].digest()
    first = cache.get(keys[0], lambda: enc.encode_texts(texts, progress=None))
    second = cache.get(keys[1], lambda: other.encode_texts(texts, progress=None))
    assert cache.misses == 2 and np.allclose(first, second, atol=1e-5)
    cache.get(keys[0], lambda: pytest.fail("a cached entry was computed again"))
    assert device_kind("cpu") == "cpu" and device_kind("mps") == "mps"


def test_a_gpu_is_named_by_its_model_in_cache_keys(monkeypatch):
    """Cards of one model compute alike; another model's TF32 convolutions do not."""
    import torch

    from bench.clip_encoder import device_kind

    names = {0: "NVIDIA H200", 1: "NVIDIA A100-SXM4-80GB"}
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=None: names[index])
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    assert device_kind("cuda:0") == "cuda:NVIDIA H200"
    assert device_kind("cuda") == "cuda:NVIDIA A100-SXM4-80GB"  # the current device


def test_a_read_only_cache_serves_its_entries_and_computes_the_rest_without_storing(tmp_path, monkeypatch):
    """A cache prepared once and shared read-only (a cluster's, or one made on another device,
    whose keys differ): hits are read, a missing entry is computed for this run, said once."""
    messages = []
    cache = EmbeddingCache(tmp_path, log=messages.append)
    stored = CacheKey("enc@abc", "coco", "train", "text", "x")
    cache.get(stored, lambda: np.ones((3, 2), np.float32))
    assert cache.writable()
    monkeypatch.setattr("bench.cache.os.access", lambda path, mode: False)
    assert not cache.writable()
    assert np.all(np.asarray(cache.get(stored, lambda: pytest.fail("a stored entry was computed again"))) == 1.0)
    missing = [CacheKey("enc@abc", "coco", "train", "text", c) for c in ("y", "z")]
    for key in missing:
        assert np.all(cache.get(key, lambda: np.full((2, 2), 5.0)) == 5.0)
        assert not cache.folder(key).exists()
    assert sum("read-only" in m for m in messages) == 1 and cache.misses == 3
    with pytest.raises(ValueError, match="2-D"):
        cache.get(CacheKey("enc@abc", "coco", "train", "text", "w"), lambda: np.ones(3))


def test_a_cache_that_says_it_is_writable_but_refuses_writes_still_answers(tmp_path, monkeypatch):
    """Root on a root-squashed NFS mount: os.access says yes, the lock or the write says no. The
    entry is computed for the run; a failure that is not a permission (a full disk) is raised."""
    import builtins
    import errno

    import bench.cache

    real_open = builtins.open

    def no_locks(path, *args, **kwargs):
        if str(path).endswith(".lock"):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    messages = []
    cache = EmbeddingCache(tmp_path, log=messages.append)
    monkeypatch.setattr(builtins, "open", no_locks)
    key = CacheKey("enc@abc", "coco", "train", "text", "x")
    assert cache.writable() and np.all(cache.get(key, lambda: np.ones((2, 2))) == 1.0)
    assert not cache.folder(key).exists() and sum("read-only" in m for m in messages) == 1
    monkeypatch.setattr(builtins, "open", real_open)

    def refuse(errno_value):
        def atomic(path):
            raise OSError(errno_value, "refused", str(path))
        return atomic

    monkeypatch.setattr(bench.cache, "atomic_path", refuse(errno.EROFS))
    assert np.all(cache.get(CacheKey("enc@abc", "coco", "train", "text", "y"), lambda: np.full((2, 2), 3.0)) == 3.0)
    monkeypatch.setattr(bench.cache, "atomic_path", refuse(errno.ENOSPC))
    with pytest.raises(OSError, match="refused"):
        cache.get(CacheKey("enc@abc", "coco", "train", "text", "z"), lambda: np.ones((2, 2)))


def test_cache_rebuilds_an_entry_that_does_not_match_its_manifest(tmp_path):
    messages = []
    cache = EmbeddingCache(tmp_path, log=messages.append)
    key = CacheKey("enc@abc", "coco", "train", "text", "x")
    cache.get(key, lambda: np.ones((3, 2), np.float32))
    np.save(cache.folder(key) / "embeddings.npy", np.zeros((3, 2), np.float32))  # tampered with
    again = cache.get(key, lambda: np.full((3, 2), 2.0, np.float32))
    assert np.all(np.asarray(again) == 2.0) and cache.misses == 2
    assert any("does not match its manifest" in m for m in messages)
    # a 0-d array under the manifest: rebuilt like any other mismatch, not an IndexError
    np.save(cache.folder(key) / "embeddings.npy", np.float32(1.0))
    assert np.all(np.asarray(cache.get(key, lambda: np.full((3, 2), 3.0, np.float32))) == 3.0)
    # a folder where the entry's array belongs: computed and used, not stored, and said so
    (cache.folder(key) / "embeddings.npy").unlink()
    (cache.folder(key) / "embeddings.npy").mkdir()
    assert np.all(np.asarray(cache.get(key, lambda: np.full((3, 2), 4.0, np.float32))) == 4.0)
    assert any("cannot be written" in m for m in messages) and (cache.folder(key) / "embeddings.npy").is_dir()


def test_a_local_dir_encoders_id_covers_its_config_as_well_as_its_weights(tmp_path):
    """The config decides the preprocessing (mean, std, size): the same weights behind another
    image_mean embed every image elsewhere, so the id, and with it the cache key and every cell
    id, must change with it."""
    import json

    from tests.conftest import write_tiny_clip_folder

    spec = write_tiny_clip_folder(tmp_path / "model")
    first = create_encoder(spec, cache_dir=tmp_path / "cache", log=lambda m: None).id
    assert create_encoder(spec, cache_dir=tmp_path / "cache", log=lambda m: None).id == first
    config_file = tmp_path / "model" / "open_clip_config.json"
    config = json.loads(config_file.read_text())
    config_file.write_text(json.dumps({**config, "preprocess_cfg": {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}}))
    assert create_encoder(spec, cache_dir=tmp_path / "cache", log=lambda m: None).id != first
