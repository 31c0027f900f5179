import json
from collections import Counter

import numpy as np
import pytest

from bench.errors import BenchError
from bench.plugins import create_dataset
from bench.shapes.captions import PROFILES, captions, parse, tokens
from bench.shapes.clip import ClipTrainConfig, ensure_clip, train_clip
from bench.shapes.domains import SPLITS, WorldConfig, captions_of, object_vocabulary, scene_of
from bench.shapes.generator import ShapesGenerator
from bench.shapes.world import SHAPES, render, rng_for, sample_scene

TINY_WORLD = WorldConfig(coco_sizes=(60, 10, 100), flickr_sizes=(40, 10, 100), style_sizes=(30, 10, 20), pretrain_images=600)
# Without the text-side head: it trades retrieval for a wider cone of captions, a trade 150 steps
# on 600 scenes cannot afford; the head has tests of its own below.
TINY_CLIP = ClipTrainConfig(steps=150, batch_size=64, warmup=5, text_attribute_weight=0)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A tiny world and a CLIP trained on it for a few seconds, shared by the tests below."""
    cache = tmp_path_factory.mktemp("cache")
    manifest = create_dataset("shapes", world=TINY_WORLD).prepare(cache_dir=cache, clip=TINY_CLIP, log=lambda m: None)
    return cache, manifest


# -- the world ----------------------------------------------------------------------------

def test_scenes_and_renders_are_deterministic_for_a_seed():
    a = scene_of(TINY_WORLD, "coco", "test", 3)
    assert a == scene_of(TINY_WORLD, "coco", "test", 3)
    assert np.array_equal(np.asarray(render(a)), np.asarray(render(a)))
    assert a != scene_of(WorldConfig(seed=1), "coco", "test", 3)
    assert captions_of(TINY_WORLD, "flickr", "val", 2) == captions_of(TINY_WORLD, "flickr", "val", 2)


def test_photo_and_synthetic_styles_differ():
    scene = scene_of(TINY_WORLD, "coco", "test", 0)
    photo = np.asarray(render(scene, style="photo"), np.float32)
    synthetic = np.asarray(render(scene, style="synthetic"), np.float32)
    assert photo.shape == synthetic.shape == (64, 64, 3)
    # Synthetic images are clean: a flat background, so far less pixel variance in the corners.
    assert synthetic[:6, :6].std() < 1.0 < photo[:6, :6].std()


def test_every_caption_names_every_object():
    for domain, profile in PROFILES.items():
        for i in range(60):
            scene = sample_scene(TINY_WORLD.domains()["coco" if domain == "coco" else "flickr"].stats, rng_for("t", domain, i))
            for text in captions(scene, profile, rng_for("c", domain, i)):
                parsed = Counter(m.shape for m in parse(text)[0])
                assert parsed == Counter(o.shape for o in scene.objects), (text, scene.objects)


def test_captions_vary_like_human_references():
    scene = scene_of(TINY_WORLD, "coco", "test", 1)
    caps = captions_of(TINY_WORLD, "coco", "test", 1, scene)
    assert len(caps) == 5 and len(set(caps)) == 5


def test_domains_differ_in_wording_and_scenes():
    def words(domain):
        return Counter(w for i in range(200) for c in captions_of(WorldConfig(), domain, "train", i) for w in tokens(c))

    coco, flickr, romantic, humor = (words(d) for d in ("coco", "flickr", "romantic", "humor"))
    assert {"disc", "block", "seen"} <= set(flickr) and not {"disc", "block"} & set(coco)
    assert {"dot", "box"} <= set(coco) and not {"dot", "box"} & set(flickr)
    assert sum(flickr.values()) > 1.15 * sum(coco.values())  # flickr captions are longer
    assert {"love", "dreaming"} & set(romantic) and {"love", "dreaming"}.isdisjoint(coco)
    assert {"awkward", "escape", "coffee"} & set(humor)
    mean_objects = {d: np.mean([len(scene_of(WorldConfig(), d, "train", i).objects) for i in range(300)]) for d in ("coco", "flickr")}
    assert mean_objects["coco"] > mean_objects["flickr"] + 0.3


def test_splits_are_disjoint_from_each_other_and_from_pretraining():
    keys = {}
    for domain in ("coco", "flickr", "romantic", "humor"):
        for split, n in zip(SPLITS, TINY_WORLD.domains()[domain].sizes):
            keys[(domain, split)] = {scene_of(TINY_WORLD, domain, split, i).key() for i in range(n)}
    keys[("pretrain", "pretrain")] = {scene_of(TINY_WORLD, "pretrain", "pretrain", i).key() for i in range(TINY_WORLD.pretrain_images)}
    items = list(keys.items())
    for a in range(len(items)):
        for b in range(a + 1, len(items)):
            assert not items[a][1] & items[b][1], (items[a][0], items[b][0])


def test_object_vocabulary_is_exposed():
    assert object_vocabulary() == SHAPES
    assert 10 <= len(SHAPES) <= 40
    assert create_dataset("shapes-flickr").object_vocabulary == SHAPES


# -- the generator --------------------------------------------------------------------------

def test_generator_parses_captions_back_into_scenes():
    gen = ShapesGenerator()
    scene = gen.scene("a large red circle to the left of a small blue box", seed=0)
    assert [(o.colour, o.shape, o.size) for o in scene.objects] == [("red", "circle", "large"), ("blue", "square", "small")]
    assert scene.objects[0].x < scene.objects[1].x
    above = gen.scene("a green star above a yellow heart")
    assert above.objects[0].y < above.objects[1].y


def test_generator_is_deterministic_for_a_seed():
    gen = ShapesGenerator()
    prompts = ["a star and a ring", "a dark purple rhombus beneath a hoop"]
    first, again, other = gen.generate(prompts, seed=0), gen.generate(prompts, seed=0), gen.generate(prompts, seed=1)
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(first, again))
    assert any(not np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(first, other))
    # A prompt's image does not depend on the batch it came in.
    assert np.array_equal(np.asarray(gen.generate(prompts[1:], seed=0)[0]), np.asarray(first[1]))


# -- the datasets ---------------------------------------------------------------------------

def test_shapes_datasets_load_like_karpathy(prepared):
    cache, _ = prepared
    ds = create_dataset("shapes-coco", cache_dir=cache, world=TINY_WORLD)
    test = ds.load("test")
    assert len(test) == 100 and all(len(item.captions) == 5 for item in test.items)
    paths = test.require_images()  # rendered on first need
    assert all(p.is_file() for p in paths)
    assert len(create_dataset("shapes-humor", cache_dir=cache, world=TINY_WORLD).load("train")) == 30


def test_split_kinds_of_the_shapes_world():
    from bench.splits import parse_split

    assert parse_split("shapes").train == "shapes-coco"
    assert parse_split("shapes-coco->shapes-flickr").kind == "cross-domain"
    assert parse_split("shapes-romantic").kind == "style"


# -- the world's CLIP -----------------------------------------------------------------------

def test_tiny_clip_beats_chance_and_shows_a_gap(prepared):
    _, manifest = prepared
    card = manifest["model_card"]
    for domain, stats in card["retrieval"].items():
        # 100 test images: chance is 1% at R@1 and 5% at R@5.
        assert stats["i2t_r1"] > 3 * stats["chance_i2t_r1"], (domain, stats)
        assert stats["i2t_r5"] > 3 * 5 * stats["chance_i2t_r1"], (domain, stats)
        assert stats["t2i_r5"] > 3 * 5 * stats["chance_t2i_r1"], (domain, stats)
    gap = card["gap"]
    assert 0 < gap["true_pair_cosine"] < 0.95
    assert gap["centroid_gap"] > 0.1
    assert gap["mean_linf"] > 0 and gap["mean_l2"] > 0
    assert manifest["training"]["final_loss"] < manifest["training"]["first_loss"]
    # the joint space is as wide as the text tower: captions reach (almost) every direction the images use
    assert gap["dim"] == 128 and gap["caption_span_dims"] > 100 and gap["outside_caption_span"] < 0.25, gap


def test_world_clip_joint_space_is_no_wider_than_its_text_tower():
    """A joint space wider than the text tower leaves directions no caption reaches (a 512-d space
    over the 128-wide tower put 63% of the images' spread there); a decoder trained on captions
    then meets image inputs its training never shaped."""
    from bench.shapes.clip import MODEL_CONFIG_DIR, MODEL_NAME

    config = json.loads((MODEL_CONFIG_DIR / f"{MODEL_NAME}.json").read_text())
    assert config["embed_dim"] <= config["text_cfg"]["width"]


def test_checkpoint_reloads_to_identical_embeddings_and_training_is_deterministic(prepared):
    import torch

    cache, manifest = prepared
    ckpt = ensure_clip(TINY_WORLD, TINY_CLIP, cache, log=lambda m: None)  # cached: no training
    assert str(ckpt.weights) == manifest["checkpoint"]
    model_a, preprocess, tokenizer = ckpt.load()
    model_b, _, _ = ckpt.load()
    retrained, _ = train_clip(TINY_WORLD, TINY_CLIP, log=lambda m: None)
    texts = tokenizer(["a red circle", "a big blue box beside a star"])
    image = torch.stack([preprocess(render(scene_of(TINY_WORLD, "coco", "test", 0)))])
    with torch.inference_mode():
        for model in (model_b, retrained):
            assert torch.equal(model_a.encode_text(texts), model.encode_text(texts))
            assert torch.equal(model_a.encode_image(image), model.encode_image(image))


def test_corrupted_checkpoint_is_detected_and_rebuilt(tmp_path):
    clip = ClipTrainConfig(steps=2, batch_size=16, warmup=1)
    world = WorldConfig(coco_sizes=(4, 2, 4), flickr_sizes=(4, 2, 4), style_sizes=(4, 2, 4), pretrain_images=32)
    import torch

    ckpt = ensure_clip(world, clip, tmp_path, log=lambda m: None)
    good = torch.load(ckpt.weights, weights_only=True)
    identity = ckpt.manifest()["sha256"]
    data = bytearray(ckpt.weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    ckpt.weights.write_bytes(bytes(data))
    assert "hash does not match" in ckpt.problem()
    messages = []
    again = ensure_clip(world, clip, tmp_path, log=messages.append)
    assert any("not usable" in m and "rebuilding" in m for m in messages)
    assert again.problem() is None
    rebuilt = torch.load(again.weights, weights_only=True)  # a deterministic rebuild: the same weights
    assert rebuilt.keys() == good.keys() and all(torch.equal(rebuilt[k], good[k]) for k in good)
    # the same weights, the same file: the encoder's id (its weights' hash) survives a rebuild
    assert again.manifest()["sha256"] == identity


def test_a_cached_card_of_another_version_is_measured_again(prepared, tmp_path, monkeypatch):
    import errno
    import shutil

    import bench.io
    from bench.shapes.prepare import CARD_VERSION, prepare_world

    clip, world = TINY_CLIP, TINY_WORLD
    shutil.copytree(prepared[0], tmp_path, dirs_exist_ok=True)  # a copy of the trained cache: no training here
    first = prepare_world(tmp_path, world, clip, log=lambda m: None)
    assert first["model_card"]["version"] == CARD_VERSION
    ckpt = ensure_clip(world, clip, tmp_path, log=lambda m: None)
    weights = ckpt.weights.read_bytes()
    stale = ckpt.manifest()
    stale["model_card"]["version"] = CARD_VERSION - 1
    stale["model_card"]["gap"]["random_pair_cosine"] = 99.0
    ckpt.manifest_path.write_text(json.dumps(stale))
    # a read-only cache: the card is measured again for this process, the file stays as it was
    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(bench.io, "write_json_atomic", read_only)
    messages = []
    again = prepare_world(tmp_path, world, clip, log=messages.append)
    assert any("measuring the model card" in m for m in messages) and any("could not save" in m for m in messages)
    assert again["model_card"] == first["model_card"]
    assert json.loads(ckpt.manifest_path.read_text())["model_card"]["gap"]["random_pair_cosine"] == 99.0
    monkeypatch.undo()
    messages = []
    again = prepare_world(tmp_path, world, clip, log=messages.append)
    assert again["model_card"] == first["model_card"] and any("measuring the model card" in m for m in messages)
    assert ckpt.manifest()["model_card"] == first["model_card"] and ckpt.problem() is None
    assert ckpt.weights.read_bytes() == weights  # the CLIP itself is not retrained
    messages = []
    prepare_world(tmp_path, world, clip, log=messages.append)
    assert not any("measuring the model card" in m for m in messages)  # a current card is only read


def test_unwritable_cache_dir_is_one_line_error(run_cli, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code, _, err = run_cli("prepare", "shapes", "--cache-dir", str(blocker / "cache"))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "is not writable" in err and "--cache-dir" in err
    with pytest.raises(BenchError):
        create_dataset("shapes-flickr", cache_dir=blocker / "cache").load("train")


def test_model_card_is_written(prepared):
    _, manifest = prepared
    from pathlib import Path

    card = (Path(manifest["checkpoint"]).parent / "MODEL_CARD.md").read_text()
    assert "image->text R@1" in card and "zero-shot" in card
    # The gap section is `bench gap`'s own card, on the test pairs of both domains.
    from bench.gap import render_card

    gap = manifest["model_card"]["gap"]
    expected = render_card({"encoder": f"shapes@{manifest['sha256'][:12]}", "dataset": "shapes-coco+shapes-flickr", "split": "test", **gap})
    assert expected in card and f"{gap['true_pair_cosine']:9.5f}" in card
    assert json.loads((Path(manifest["checkpoint"]).parent / "manifest.json").read_text())["key"] == manifest["key"]


def test_attribute_loss_weights_line_up_with_the_scene_labels():
    """The colour weight must land on the colour columns of the targets, never on a shape's."""
    from bench.shapes.clip import _attribute_targets, _label_weights
    from bench.shapes.world import COLOURS, Obj, Scene

    scene = Scene((Obj("star", "red", "small", 0.3, 0.3), Obj("ring", "blue", "large", 0.7, 0.7)), "tiles")
    targets = _attribute_targets([scene])[0]
    weights = _label_weights(0.25)
    assert weights.shape == targets.shape
    on = {int(i) for i in targets.nonzero()}
    assert on == {SHAPES.index("star"), SHAPES.index("ring"), len(SHAPES) + list(COLOURS).index("red"),
                  len(SHAPES) + list(COLOURS).index("blue")}
    assert sorted(float(weights[i]) for i in on) == [0.25, 0.25, 1.0, 1.0]
    assert float(weights[SHAPES.index("star")]) == 1.0 and float(weights[len(SHAPES) + list(COLOURS).index("red")]) == 0.25


@pytest.mark.parametrize("text_weight", [0.0, 50.0])
def test_interrupted_training_resumes_to_the_same_weights(tmp_path, text_weight):
    import torch

    clip = ClipTrainConfig(steps=6, batch_size=16, warmup=1, text_attribute_weight=text_weight)
    world = WorldConfig(coco_sizes=(4, 2, 4), flickr_sizes=(4, 2, 4), style_sizes=(4, 2, 4), pretrain_images=32)
    reference, _ = train_clip(world, clip, log=lambda m: None)

    def interrupt_at_step_5(iterable, desc="", **kwargs):
        for step in iterable:
            if desc.startswith("training") and step == 4:
                raise KeyboardInterrupt
            yield step

    state = tmp_path / "training-state.pt"
    with pytest.raises(KeyboardInterrupt):
        train_clip(world, clip, progress=interrupt_at_step_5, log=lambda m: None, resume=state, checkpoint_every=2)
    assert torch.load(state, weights_only=False)["step"] == 4
    messages = []
    resumed, _ = train_clip(world, clip, log=messages.append, resume=state, checkpoint_every=2)
    assert any("resuming" in m and "step 4" in m for m in messages)
    ref, res = reference.state_dict(), resumed.state_dict()
    assert all(torch.equal(ref[k], res[k]) for k in ref)


def test_image_tower_is_a_timm_model_that_sees_a_shape_wherever_it_is():
    """The world CLIP's tower: built by timm's factory (as open_clip builds it), pooled over the
    whole image, so a shape moved by the tower's stride (8 px) on a flat background gives the
    same features; it has no classifier and no pretrained weights to download."""
    import timm
    import torch

    from bench.shapes.convnet import TIMM_NAME, register

    register()
    register()  # idempotent: no second registration
    net = timm.create_model(TIMM_NAME).eval()
    assert net.num_features == 128
    # Fully convolutional: a 160x160 canvas keeps the object's 50-pixel receptive field off the
    # zero-padded borders, where a position would change what the convolutions see.
    image = torch.zeros(1, 3, 160, 160)
    image[:, :, 64:76, 64:72] = 1.0
    moved = torch.roll(image, shifts=(8, 16), dims=(2, 3))
    with torch.inference_mode():
        assert torch.allclose(net(image), net(moved), atol=1e-6)
        assert not torch.allclose(net(image), net(torch.zeros(1, 3, 160, 160)), atol=1e-3)
    with pytest.raises(ValueError, match="no classifier"):
        net.reset_classifier(10)
    with pytest.raises(ValueError, match="pools by"):
        net.reset_classifier(0, global_pool="token")
    with pytest.raises(ValueError, match="no pretrained weights"):
        timm.create_model(TIMM_NAME, pretrained=True)


def test_the_text_side_head_is_a_setting_of_its_own_and_leaves_a_plain_clip():
    """On by default (weight 100), 0 turns it off, and each weight is its own cache key; it trains
    the text tower toward the scene's shapes and is dropped from the checkpoint."""
    import torch

    from bench.config import config_dict
    from bench.shapes.clip import cache_key

    assert config_dict(ClipTrainConfig())["text_attribute_weight"] == 100
    assert config_dict(ClipTrainConfig(text_attribute_weight=0))["text_attribute_weight"] == 0
    keys = {cache_key(TINY_WORLD, ClipTrainConfig(text_attribute_weight=w)) for w in (0, 50, 100)}
    assert len(keys) == 3 and cache_key(TINY_WORLD, ClipTrainConfig()) in keys
    # one recipe, one key, however its numbers are written
    assert cache_key(TINY_WORLD, ClipTrainConfig(text_attribute_weight=50)) == \
        cache_key(TINY_WORLD, ClipTrainConfig(text_attribute_weight=50.0))
    world = WorldConfig(coco_sizes=(4, 2, 4), flickr_sizes=(4, 2, 4), style_sizes=(4, 2, 4), pretrain_images=32)
    plain, _ = train_clip(world, ClipTrainConfig(steps=4, batch_size=16, warmup=1, text_attribute_weight=0), log=lambda m: None)
    headed, _ = train_clip(world, ClipTrainConfig(steps=4, batch_size=16, warmup=1, text_attribute_weight=50),
                           log=lambda m: None)
    a, b = plain.state_dict(), headed.state_dict()
    assert a.keys() == b.keys()  # a plain open_clip CLIP either way
    assert not torch.equal(a["text_projection"], b["text_projection"])


def test_the_text_side_head_widens_the_captions_cone():
    """What it is for: with it, two captions' embeddings sit further apart on average."""
    import open_clip
    import torch

    from bench.shapes.domains import pretrain_arrays

    world = WorldConfig(coco_sizes=(4, 2, 4), flickr_sizes=(4, 2, 4), style_sizes=(4, 2, 4), pretrain_images=400)
    _, texts, _ = pretrain_arrays(world)
    captions = [caps[0] for caps in texts[:200]]
    spread = {}
    for weight in (0.0, 200.0):
        model, _ = train_clip(world, ClipTrainConfig(steps=60, batch_size=32, warmup=5, text_attribute_weight=weight),
                              log=lambda m: None)
        tokens = open_clip.get_tokenizer("ShapesCLIP-CNN")(captions)
        with torch.no_grad():
            emb = torch.nn.functional.normalize(model.encode_text(tokens), dim=-1)
        n = len(emb)
        spread[weight] = float(((emb @ emb.T).sum() - n) / (n * (n - 1)))
    assert spread[200.0] < spread[0.0] - 0.05, spread


def test_a_prepare_stopped_while_the_card_is_measured_keeps_the_training_state(tmp_path, monkeypatch):
    """The weights are saved, then the model card is measured (minutes of rendering and encoding):
    a stop there must leave the training state, so that the next prepare resumes instead of
    training the CLIP again from step 0; the state goes once the manifest is written."""
    import torch

    import bench.shapes.clip as clip_module

    def fake_train(world, cfg, progress=None, log=print, resume=None, **kw):  # what a run leaves: a saved state
        resume.write_bytes(b"state")
        return torch.nn.Linear(2, 2), {"steps": cfg.steps, "pretrain_images": 8, "train_s": 0.1}

    monkeypatch.setattr(clip_module, "train_clip", fake_train)
    world, cfg = WorldConfig(), ClipTrainConfig(steps=6)

    def stopped(ckpt):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        clip_module.ensure_clip(world, cfg, tmp_path, log=lambda m: None, card=stopped)
    folder = next((tmp_path / "shapes").glob("clip-*"))
    assert (folder / "training-state.pt").is_file() and not (folder / "manifest.json").exists()
    ckpt = clip_module.ensure_clip(world, cfg, tmp_path, log=lambda m: None, card=lambda c: {"ok": 1})
    assert ckpt.problem() is None and not (folder / "training-state.pt").exists()


def test_an_interrupted_render_leaves_no_image_and_only_a_temporary_the_sweep_knows(tmp_path, monkeypatch):
    """The world's images are written under a temporary name and renamed once whole: a render
    interrupted before the rename leaves no image (the next prepare renders it again) and its
    temporary is removed; one a killed process leaves carries the name ``bench.io`` sweeps."""
    from bench.io import remove_stale_temporaries
    from bench.shapes.domains import image_name, render_images
    from tests.fixtures import save_then_die

    world = WorldConfig(coco_sizes=(2, 1, 2), flickr_sizes=(2, 1, 2), style_sizes=(2, 1, 2), pretrain_images=8)
    seen = save_then_die(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        render_images(world, "coco", "test", tmp_path)
    assert len(seen) == 1 and not list(tmp_path.iterdir())
    monkeypatch.undo()
    seen[0].write_bytes(b"half a png")  # what a kill -9 between write and rename leaves
    assert remove_stale_temporaries(tmp_path, older_than=0.0) == (1, len(b"half a png"))
    assert render_images(world, "coco", "test", tmp_path) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(image_name("coco", "test", i) for i in range(2))
