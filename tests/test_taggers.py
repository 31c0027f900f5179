"""Object taggers: CLIP zero-shot over a vocabulary, a transformers detector, and the tag cache."""

import pytest
from PIL import Image

from bench.encoders import create_encoder
from bench.errors import BenchError
from bench.taggers import TAGGERS, TagCache


@pytest.fixture
def images(tmp_path):
    paths = []
    for i, colour in enumerate(["red", "blue", "green"]):
        path = tmp_path / f"{i}.png"
        Image.new("RGB", (40, 30), colour).save(path)
        paths.append(path)
    return paths


def tiny_detector(folder):
    import torch
    from transformers import DetrConfig, DetrForObjectDetection, DetrImageProcessor, ResNetConfig

    labels = {0: "circle", 1: "square", 2: "star"}
    cfg = DetrConfig(use_timm_backbone=False, use_pretrained_backbone=False,
                     backbone_config=ResNetConfig(embedding_size=8, hidden_sizes=[8, 8, 8, 8], depths=[1, 1, 1, 1],
                                                  out_features=["stage4"]),
                     d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
                     encoder_ffn_dim=16, decoder_ffn_dim=16, num_queries=5, id2label=labels,
                     label2id={v: k for k, v in labels.items()})
    torch.manual_seed(0)
    DetrForObjectDetection(cfg).save_pretrained(folder)
    DetrImageProcessor(size={"shortest_edge": 32, "longest_edge": 32}).save_pretrained(folder)
    return folder


def test_clip_zero_shot_tagger(tiny_clip_checkpoint, images):
    enc = create_encoder(tiny_clip_checkpoint, log=lambda m: None)
    tagger = TAGGERS.get("clip")(enc, ["circle", "square", "star", "heart"], top_k=2, threshold=0.0)
    tags = tagger.tag(images)
    assert len(tags) == 3 and all(len(t) == 2 and set(t) <= {"circle", "square", "star", "heart"} for t in tags)
    emb, _ = enc.encode_images(images, progress=None)
    assert tagger.tag_embeddings(emb) == tags
    strict = TAGGERS.get("clip")(enc, ["circle", "square"], top_k=2, threshold=1.0)
    assert all(len(t) <= 1 for t in strict.tag(images))  # probabilities sum to 1: at most one word reaches 1
    with pytest.raises(BenchError, match="threshold in"):
        TAGGERS.get("clip")(enc, ["circle"], threshold=1.5)


def test_empty_or_repeated_vocabulary_is_refused(tiny_clip_checkpoint):
    enc = create_encoder(tiny_clip_checkpoint, log=lambda m: None)
    with pytest.raises(BenchError, match="tag vocabulary is empty"):
        TAGGERS.get("clip")(enc, [])
    with pytest.raises(BenchError, match="twice"):
        TAGGERS.get("clip")(enc, ["star", "star"])


def test_detector_from_a_local_folder(tmp_path, images):
    tagger = TAGGERS.get("detr")(tiny_detector(tmp_path / "detr"), threshold=0.0, batch_size=2)
    tags = tagger.tag(images)
    assert len(tags) == 3 and all(t and set(t) <= {"circle", "square", "star"} and len(set(t)) == len(t) for t in tags)
    none = TAGGERS.get("detr")(tmp_path / "detr", threshold=1.01).tag(images)
    assert none == [[], [], []]


def test_detector_bad_folders(tmp_path):
    with pytest.raises(BenchError, match="does not exist"):
        TAGGERS.get("detr")(tmp_path / "missing")
    from transformers import GPT2Config, GPT2LMHeadModel

    GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=8, vocab_size=10)).save_pretrained(tmp_path / "gpt2")
    with pytest.raises(BenchError, match="does not hold an object-detection model"):
        TAGGERS.get("detr")(tmp_path / "gpt2")


def test_tags_are_cached_per_image(tmp_path, images):
    calls = []

    class Counting(TAGGERS.get("detr")):
        def tag(self, paths):
            calls.append(len(paths))
            return super().tag(paths)

    tagger = Counting(tiny_detector(tmp_path / "detr"), threshold=0.0)
    first = TagCache(tmp_path, tagger).tags(images)
    again = TagCache(tmp_path, tagger).tags(images + images[:1])
    assert again[:3] == first and again[3] == first[0]
    assert calls == [3]  # the second cache read everything from disk


def test_a_detectors_id_covers_its_weights(tmp_path):
    """Tags are cached under the detector's id: other weights in the same folder (same config)
    must be another id, or stale tags would be served."""
    from bench.taggers import TAGGERS

    folder = tiny_detector(tmp_path / "detr")
    first = TAGGERS.get("detr")(folder, threshold=0.0, batch_size=2).id
    weights = next(p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin"))
    data = bytearray(weights.read_bytes())
    data[-16:] = bytes(16)  # other weight values, same size, same config.json
    weights.write_bytes(bytes(data))
    assert TAGGERS.get("detr")(folder, threshold=0.0, batch_size=2).id != first
