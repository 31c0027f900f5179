"""The modality-gap card (`bench gap`), exact text truncation, and the embedded default's grid."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench.gap import gap_statistics


def test_gap_statistics_by_hand():
    images = np.array([[1.0, 0.0], [0.0, 1.0]])
    texts = np.array([[0.6, 0.8], [0.8, 0.6], [0.0, 1.0]])
    owner = np.array([0, 0, 1])
    stats = gap_statistics(images, texts, owner)
    assert stats["true_pair_cosine"] == pytest.approx((0.6 + 0.8 + 1.0) / 3)
    # every caption against every image but its own: captions 0, 1 with image 1, caption 2 with image 0
    assert stats["random_pair_cosine"] == pytest.approx((0.8 + 0.6 + 0.0) / 3)
    assert stats["centroid_gap"] == pytest.approx(np.linalg.norm([0.5 - 14 / 30, 0.5 - 24 / 30]))
    diffs = np.array([[0.4, -0.8], [0.2, -0.6], [0.0, 0.0]])
    assert stats["mean_linf"] == pytest.approx((0.8 + 0.6 + 0.0) / 3)
    assert stats["sigma2_capdec_pairs"] == pytest.approx(stats["mean_linf"] ** 2)
    assert stats["diff_var_per_dim"] == pytest.approx(np.mean(diffs**2)) == stats["sigma2_variance"]
    assert stats["caption_linf"] == pytest.approx(0.2)  # captions 0 and 1 share image 0: |0.6 - 0.8|
    assert stats["sigma2_capdec_captions"] == pytest.approx(0.04)


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_random_pairs_and_capdec_rule_against_brute_force():
    rng = np.random.default_rng(3)
    counts = [5, 1, 3, 7, 2, 5, 4]  # images with one caption and with many
    owner = np.repeat(np.arange(len(counts)), counts)
    images, texts = _unit(rng.normal(size=(len(counts), 6))), _unit(rng.normal(size=(len(owner), 6)))
    stats = gap_statistics(images, texts, owner)
    others = [images[i] @ texts[j] for i in range(len(counts)) for j in range(len(owner)) if owner[j] != i]
    assert stats["random_pair_cosine"] == pytest.approx(np.mean(others), rel=1e-12)
    # CapDec's measure: every pair of one image's captions, averaged per image, then over images
    per_image = []
    for i, k in enumerate(counts):
        caps = texts[owner == i]
        pairs = [np.abs(caps[a] - caps[b]).max() for a in range(k) for b in range(a + 1, k)]
        if pairs:
            per_image.append(np.mean(pairs))
    assert stats["caption_linf"] == pytest.approx(np.mean(per_image), rel=1e-12)
    assert stats["sigma2_capdec_captions"] == pytest.approx(np.mean(per_image) ** 2, rel=1e-12)
    # neither depends on the order of the captions
    order = rng.permutation(len(owner))
    shuffled = gap_statistics(images, texts[order], owner[order])
    for key in ("random_pair_cosine", "caption_linf", "true_pair_cosine", "centroid_gap", "mean_linf"):
        assert shuffled[key] == pytest.approx(stats[key], rel=1e-12)


def test_a_split_of_single_captions_has_no_capdec_caption_rule():
    import math

    from bench.gap import json_card, render_card

    rng = np.random.default_rng(4)
    stats = gap_statistics(_unit(rng.normal(size=(4, 5))), _unit(rng.normal(size=(4, 5))), np.arange(4))
    assert math.isnan(stats["caption_linf"]) and math.isnan(stats["sigma2_capdec_captions"])
    card = {"encoder": "e", "dataset": "d", "split": "test", **stats}
    text = render_card(card)
    assert "nan" not in text and "n/a: no image of this split has two or more captions" in text
    strict = json.loads(json.dumps(json_card(card), allow_nan=False))
    assert strict["caption_linf"] is None and strict["true_pair_cosine"] == pytest.approx(stats["true_pair_cosine"])


def test_caption_span_measures_image_spread_the_captions_never_reach():
    from bench.gap import caption_span, render_card

    rng = np.random.default_rng(0)
    # captions confined to the first 4 of 16 dimensions (a text tower narrower than the joint space)
    texts = np.zeros((400, 16))
    texts[:, :4] = rng.normal(size=(400, 4))
    inside = np.zeros((50, 16))
    inside[:, :4] = rng.normal(size=(50, 4))
    span = caption_span(inside, texts)
    assert span["caption_span_dims"] == 4 and span["outside_caption_span"] == pytest.approx(0.0, abs=1e-9)
    # images with equal spread inside and outside the span: about half their energy is outside
    images = inside.copy()
    images[:, 8:12] = rng.normal(size=(50, 4))
    half = caption_span(images, texts)["outside_caption_span"]
    assert 0.35 < half < 0.65
    # captions that span every dimension leave nothing outside, wherever the images lie
    full = caption_span(images, rng.normal(size=(400, 16)))
    assert full["caption_span_dims"] >= 15 and full["outside_caption_span"] < 0.01
    texts_unit = texts / np.linalg.norm(texts, axis=1, keepdims=True)
    images_unit = images / np.linalg.norm(images, axis=1, keepdims=True)
    card = {"encoder": "e", "dataset": "d", "split": "test",
            **gap_statistics(images_unit, texts_unit[:100], np.arange(100) % 50)}
    assert card["outside_caption_span"] > 0.2
    assert "outside the captions' span" in render_card(card) and "the 4 of 16 principal directions" in render_card(card)


def test_text_truncation_gives_the_features_of_the_full_context(tiny_clip_checkpoint):
    import torch

    from bench.clip_encoder import encode_text, truncates_exactly
    from bench.encoders import create_encoder

    encoder = create_encoder(tiny_clip_checkpoint, log=lambda m: None)
    texts = ["a red circle", "a small green triangle above a large yellow star on a wooden table", "two"]
    tokens = encoder.tokenize(texts)
    assert truncates_exactly(encoder.model) and int((tokens != 0).sum(1).max()) < tokens.shape[1]
    with torch.no_grad():
        full = encoder.model.encode_text(tokens)
        cut = encode_text(encoder.model, tokens)
    assert torch.allclose(full, cut, atol=1e-5)
    # a model whose mask is not causal cannot be cut: the full forward runs
    encoder.model.attn_mask = None
    assert not truncates_exactly(encoder.model)
    encoder.model.attn_mask = torch.full((40, 40), float("-inf")).triu(1)


def test_bench_gap_prints_the_card(run_cli, tmp_path, karpathy_root, tiny_clip_folder):
    code, out, err = run_cli("gap", "--encoder", tiny_clip_folder, "--dataset", "coco", "--data-root", str(karpathy_root),
                             "--cache-dir", str(tmp_path / "cache"), "--json")
    assert code == 0, err
    card = json.loads(out)
    assert card["dataset"] == "coco" and card["images"] == 2 and card["captions"] == 10
    assert -1 <= card["true_pair_cosine"] <= 1 and card["sigma2_capdec_captions"] >= 0
    assert 0 <= card["outside_caption_span"] <= 1 and 1 <= card["caption_span_dims"] <= min(card["dim"], card["captions"] - 1)
    code, out, err = run_cli("gap", "--encoder", tiny_clip_folder, "--dataset", "coco", "--data-root", str(karpathy_root),
                             "--cache-dir", str(tmp_path / "cache"))
    assert code == 0 and "centroid gap" in out and "0.82" in out and "CapDec's rule" in out
    assert "outside the captions' span" in out


def test_an_image_replaced_by_one_of_the_same_size_is_encoded_again(run_cli, tmp_path, karpathy_root, tiny_clip_folder):
    args = ["gap", "--encoder", tiny_clip_folder, "--dataset", "coco", "--data-root", str(karpathy_root), "--json"]
    code, out, err = run_cli(*args, "--cache-dir", str(tmp_path / "cache"))
    assert code == 0, err
    before = json.loads(out)
    import io

    from PIL import Image

    target = next(f for f in (karpathy_root / "coco" / "images").rglob("*.jpg") if f.stem.endswith("1003"))  # a test image
    size = target.stat().st_size
    for quality in range(95, 0, -5):  # another picture (green, not red), padded to the same number of bytes
        buffer = io.BytesIO()
        Image.new("RGB", (8, 8), (0, 200, 0)).save(buffer, format="JPEG", quality=quality)
        if buffer.tell() <= size:
            break
    target.write_bytes(buffer.getvalue().ljust(size, b"\0"))
    assert target.stat().st_size == size
    code, out, err = run_cli(*args, "--cache-dir", str(tmp_path / "cache"))
    assert code == 0, err
    after = json.loads(out)
    code, out, _ = run_cli(*args, "--cache-dir", str(tmp_path / "fresh"))
    assert after == json.loads(out)  # what a fresh cache gives: the new picture, not the cached embedding
    assert after["true_pair_cosine"] != pytest.approx(before["true_pair_cosine"], abs=1e-6)


@pytest.mark.parametrize("argv, fragment", [
    (["--encoder", "NoSuchNet:openai", "--dataset", "coco"], "unknown open_clip model"),
    (["--encoder", "shapes", "--dataset", "cocoo"], "unknown dataset 'cocoo'"),
    (["--encoder", "shapes", "--dataset", "coco", "--split", "nope"], "has no split 'nope'"),
    (["--encoder", "ViT-B-32:openai", "--dataset", "coco", "--set", "encoder.shapes_text_attribute_weight=50"],
     "trains the shapes world's CLIP"),
    (["--encoder", "shapes", "--dataset", "coco", "--set", "encoder.shapes_text_attribute_weight=-1"], "finite number >= 0"),
    (["--encoder", "shapes", "--dataset", "coco", "--set", "decoder.width=3"], "takes encoder settings only"),
    (["--encoder", "shapes", "--dataset", "coco", "--set", "encoder.name=x"], "chosen with --encoder"),
])
def test_bench_gap_bad_input(run_cli, argv, fragment, tmp_path, karpathy_root):
    code, _, err = run_cli("gap", *argv, "--data-root", str(karpathy_root), "--cache-dir", str(tmp_path / "cache"))
    assert code == 2 and len(err.strip().splitlines()) == 1 and fragment in err


def test_bench_gap_needs_image_files_and_two_pairs(run_cli, tmp_path, tiny_clip_folder):
    from tests.fixtures import karpathy_images, write_karpathy

    images = karpathy_images()
    write_karpathy(tmp_path / "data", "coco", images)  # annotations, but no image files
    args = ["--encoder", tiny_clip_folder, "--dataset", "coco", "--data-root", str(tmp_path / "data"), "--cache-dir",
            str(tmp_path / "cache")]
    code, _, err = run_cli("gap", *args)
    assert code == 2 and "image folder" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli("gap", *args, "--split", "val")  # one image in val
    assert code == 2 and "needs at least 2 pairs" in err


def test_the_embedded_default_grid():
    from bench.grid import DEFAULT_SWEEP, RunConfig, build_grid

    cells = build_grid(RunConfig())
    main = [c for c in cells if c.role == "main"]
    assert {c.seed for c in main} == {0, 1, 2} and len(main) == 5 * 3 * 3
    sweep = sorted(c.noise_variance for c in cells if c.method == "capdec" and str(c.split) == "shapes-coco" and c.seed == 0)
    assert sweep == sorted(DEFAULT_SWEEP) and 0.0 in sweep and 0.016 in sweep
    positive = [v for v in sweep if v not in (0.0, 0.016)]
    steps = np.diff(np.log10(positive))
    assert len(positive) >= 7 and np.allclose(steps, steps[0], atol=0.05)  # log-spaced
    assert all(c.seed == 0 for c in cells if c.role in ("noise-sweep", "ablation"))
    assert len(build_grid(RunConfig(methods=("clipre",), splits=("coco",)))) == 1  # a custom grid: seed 0 only


def test_the_noise_curve_marks_the_gap(tmp_path):
    from bench.reporting.figures import gap_markers

    class Data:
        run_info = {"encoder": {"model_card": {"gap": {"diff_var_per_dim": 0.0024, "sigma2_capdec_captions": 0.0015}}}}

    assert gap_markers(Data()) == {"gap variance": 0.0024, "CapDec's rule": 0.0015}
    Data.run_info = {}
    assert gap_markers(Data()) == {}


def test_zero_shot_accuracy():
    from bench.shapes.card import zero_shot

    vectors = {"a": np.array([1.0, 0.0]), "b": np.array([0.0, 1.0])}
    images = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    accuracy = zero_shot(images, ["a", "b", "b"], {"a": ["pa"], "b": ["pb"]}, lambda prompts: [vectors[p[1]] for p in prompts])
    assert accuracy == pytest.approx(100 * 2 / 3)


def test_bench_gap_builds_the_shapes_clip_the_settings_name(run_cli, tmp_path, karpathy_root, monkeypatch):
    import bench.encoders
    from bench.errors import BenchError

    def fake_create(config, device="cpu", cache_dir=None, log=print):
        raise BenchError(f"built with weight {config.shapes_text_attribute_weight}")

    monkeypatch.setattr(bench.encoders, "create_encoder", fake_create)
    for extra, weight in ((["--set", "encoder.shapes_text_attribute_weight=0"], "0.0"), ([], "None")):
        code, _, err = run_cli("gap", "--encoder", "shapes", "--dataset", "coco", "--data-root", str(karpathy_root),
                               "--cache-dir", str(tmp_path / "cache"), *extra)
        assert code == 2 and f"built with weight {weight}" in err
