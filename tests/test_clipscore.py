"""CLIP-S and RefCLIP-S: by hand on two-vector cases, through the cache, in runs, reports,
`bench check` and `bench score --clip-score`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench.clipscore import PREFIX, ClipScorer, clip_s, harmonic_mean, ref_clip_s, reference_similarity
from bench.errors import ScorerError

S = 2 ** -0.5


def test_clip_s_by_hand_on_two_vector_cases():
    image = np.array([[1.0, 0.0]] * 4)
    captions = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [S, S]])
    assert clip_s(image, captions) == pytest.approx([2.5, 0.0, 0.0, 2.5 * S])  # w · max(cos, 0)
    assert clip_s(image * 3, captions * 7) == pytest.approx([2.5, 0.0, 0.0, 2.5 * S])  # scale does not matter
    assert clip_s(image[:1], captions[3:], w=1.0) == pytest.approx([S])
    with pytest.raises(ScorerError):
        clip_s(image[:2], captions)


def test_refclip_s_is_the_harmonic_mean_of_clip_s_and_the_best_reference():
    image = np.array([[1.0, 0.0], [1.0, 0.0]])
    captions = np.array([[S, S], [0.0, 1.0]])
    refs = np.array([[0.0, 1.0], [1.0, 0.0], [-1.0, 0.0]])
    owner = [0, 0, 1]  # image 0 has two references, image 1 one
    best = reference_similarity(captions, refs, owner)
    assert best == pytest.approx([S, 0.0])  # max over its references, clipped at 0 (cos -> 0 for image 1)
    cs = clip_s(image, captions)
    expected = [2 * cs[0] * S / (cs[0] + S), 0.0]
    assert ref_clip_s(cs, captions, refs, owner) == pytest.approx(expected)
    assert harmonic_mean([2.0, 0.0, 3.0], [2.0, 0.0, 0.0]) == pytest.approx([2.0, 0.0, 0.0])
    with pytest.raises(ScorerError, match="no reference"):
        reference_similarity(captions, refs[:1], [0])


class _Encoder:
    id = "fake@1"

    def __init__(self, table):
        self.table, self.calls = table, []

    def compute_id(self, modality):
        return "cpu|batch 2"

    def encode_texts(self, texts, progress=None, desc=""):
        self.calls.append(list(texts))
        return np.array([self.table[t[len(PREFIX):]] for t in texts], np.float32)


def test_scorer_prefixes_batches_and_caches_caption_embeddings(tmp_path):
    from bench.cache import EmbeddingCache

    table = {"a dog": [1.0, 0.0], "a cat": [0.0, 1.0], "two dogs": [S, S]}
    encoder = _Encoder(table)
    scorer = ClipScorer(encoder, EmbeddingCache(tmp_path, log=lambda m: None))
    images = np.array([[1.0, 0.0], [0.0, 1.0]])
    metrics, per = scorer.score(images, ["a dog", "a dog"], [["two dogs"], ["a cat", "a dog"]], "d")
    assert per["clip_s"] == pytest.approx([250.0, 0.0]) and metrics["clip_s"] == pytest.approx(125.0)
    cs0, ref0 = 2.5, S
    assert per["refclip_s"] == pytest.approx([100 * 2 * cs0 * ref0 / (cs0 + ref0), 0.0])
    assert all(t.startswith(PREFIX) for call in encoder.calls for t in call)
    assert len(encoder.calls) == 2  # one batch of captions, one of references
    again = ClipScorer(_Encoder(table), EmbeddingCache(tmp_path, log=lambda m: None))
    assert again.score(images, ["a dog", "a dog"], [["two dogs"], ["a cat", "a dog"]], "d") == (metrics, per)
    assert again.encoder.calls == []  # both read from the cache


def test_a_run_records_clip_s_with_its_eval_encoder_and_reports_it(tmp_path, tiny_clip_checkpoint, tiny_datasets,
                                                                     tiny_clip_folder, run_cli):
    from bench.check import check
    from bench.grid import build_grid
    from bench.records import read_records
    from bench.reporting import render_report
    from bench.runner import Runner
    from tests.test_runner import tiny_run

    run = tiny_run(tmp_path, tiny_clip_checkpoint, methods=("clipre",), splits=("tiny-coco",), method_options={})
    runner = Runner(run, log=lambda m: None)
    runner.execute(build_grid(run))
    (record,) = read_records(run.out).records
    assert record.eval_encoder == record.encoder  # the default: the run's own encoder
    import torch

    assert record.threads == torch.get_num_threads() >= 1
    samples = runner.store.samples(record.cell_id)
    for metric in ("clip_s", "refclip_s"):
        assert np.mean([s[metric] for s in samples]) == pytest.approx(record.metrics[metric], abs=1e-3)
    assert all(0 <= s["clip_s"] <= 250 for s in samples)
    # by hand, for the first image: its embedding and its caption's, from the same encoder
    test = runner.inputs.eval_images("tiny-coco")
    caption = runner.encoder.encode_texts([PREFIX + samples[0]["prediction"]], progress=None)
    assert samples[0]["clip_s"] == pytest.approx(100 * clip_s(test.embeddings[:1], caption)[0], abs=1e-3)
    from bench.summary import summary_table

    table = summary_table([record])
    assert "CLIP-S" in table.splitlines()[0] and f"{record.metrics['clip_s']:7.2f}" in table.splitlines()[2]
    report = render_report(run.out)
    assert "CLIP-S" in report.markdown.read_text() and "RefCLIP-S" in report.markdown.read_text()
    # a baseline whose CLIP-S was higher by more than the tolerance is a regression
    base = tmp_path / "base.jsonl"
    base.write_text(json.dumps({**record.to_dict(), "metrics": {**record.metrics, "clip_s": record.metrics["clip_s"] + 1}}) + "\n")
    result = check(run.out, base, {})
    assert not result.ok and [d.metric for d in result.drops] == ["clip_s"]
    # another evaluation encoder into the same folder: refused, not mixed
    other = tiny_run(tmp_path, tiny_clip_checkpoint, methods=("clipre",), splits=("tiny-coco",), method_options={},
                     eval_encoder=tiny_clip_folder)
    from bench.errors import BenchError

    with pytest.raises(BenchError, match="evaluation encoder"):
        Runner(other, log=lambda m: None).resolve(build_grid(other))


def test_score_clip_score_from_the_cli(tmp_path, run_cli, tiny_clip_folder, monkeypatch):
    from tests.fixtures import karpathy_images, write_images, write_karpathy

    monkeypatch.setenv("TEXTCAP_BENCH_CACHE", str(tmp_path / "cache"))
    images = karpathy_images()
    refs = write_karpathy(tmp_path / "data", "coco", images)
    write_images(tmp_path / "data", images)
    test = [i for i in images if i["split"] == "test"]
    preds = tmp_path / "preds.json"
    preds.write_text(json.dumps([{"image_id": i["cocoid"], "caption": i["sentences"][0]["raw"]} for i in test]))
    spec = tiny_clip_folder  # local-dir:FOLDER
    per_image = tmp_path / "per.json"
    code, out, err = run_cli("score", "--predictions", str(preds), "--references", str(refs), "--split", "test", "--json",
                             "--clip-score", "--images", str(tmp_path / "data" / "coco" / "images"), "--eval-encoder", spec,
                             "--per-image", str(per_image))
    assert code == 0, err
    result = json.loads(out)
    assert 0 <= result["clip_s"] <= 250 and 0 <= result["refclip_s"] <= 250
    assert result["eval_encoder"].startswith(spec)
    scores = json.loads(per_image.read_text())["scores"]
    assert np.mean(scores["clip_s"]) == pytest.approx(result["clip_s"], abs=1e-3)
    assert len(scores["refclip_s"]) == len(test)


def test_check_never_compares_clip_s_of_two_encoders(tmp_path):
    from bench.check import check
    from bench.records import Record

    def write(path, eval_encoder, clip):
        record = Record(method="clipre", split="coco", train="coco", eval="coco", kind="in-domain", seed=0, config={},
                        metrics={"cider": 50.0, "clip_s": clip, "refclip_s": clip}, encoder="e@1", train_fingerprint="t",
                        eval_fingerprint="v", eval_encoder=eval_encoder)
        path.mkdir()
        (path / "records.jsonl").write_text(json.dumps(record.to_dict()) + "\n")
        return path

    base = write(tmp_path / "base", "ViT-B-32@abc", 80.0)
    same = check(write(tmp_path / "same", "ViT-B-32@abc", 70.0), base, {})
    assert [d.metric for d in same.drops] == ["clip_s", "refclip_s"]
    other = check(write(tmp_path / "other", "shapes@def", 40.0), base, {})
    assert other.ok and other.metrics_compared == 1  # CIDEr only
    assert any("not checked" in m and "ViT-B-32@abc" in m for m in other.missing_metrics)
    # a run without CLIP-S (--no-clip-score) has not changed scale: it lost the metrics the baseline guards

    def without(path):
        record = Record(method="clipre", split="coco", train="coco", eval="coco", kind="in-domain", seed=0, config={},
                        metrics={"cider": 50.0}, encoder="e@1", train_fingerprint="t", eval_fingerprint="v")
        path.mkdir()
        (path / "records.jsonl").write_text(json.dumps(record.to_dict()) + "\n")
        return path

    lost = check(without(tmp_path / "none"), base, {})
    assert not lost.ok and [(d.metric, d.current) for d in lost.drops] == [("clip_s", None), ("refclip_s", None)]


def test_a_folder_holds_one_clip_score_setting(tmp_path, tiny_clip_checkpoint, tiny_datasets):
    from bench.errors import BenchError, ConfigError
    from bench.grid import RunConfig, build_grid
    from bench.runner import Runner
    from tests.test_runner import tiny_run

    run = tiny_run(tmp_path, tiny_clip_checkpoint, methods=("clipre",), splits=("tiny-coco",), method_options={},
                   clip_score=False)
    Runner(run, log=lambda m: None).execute(build_grid(run))
    scored = tiny_run(tmp_path, tiny_clip_checkpoint, methods=("clipre",), splits=("tiny-coco",), method_options={})
    with pytest.raises(BenchError, match="results without CLIP-S"):
        Runner(scored, log=lambda m: None).resolve(build_grid(scored))
    with pytest.raises(ConfigError, match="--no-clip-score"):
        RunConfig(eval_encoder="shapes", clip_score=False)
