import math

import numpy as np
import pytest

from bench import scoring
from bench.errors import ScorerError
from bench.scoring import METRICS, score


def test_identical_candidate_and_references_give_bleu4_100():
    refs = {"1": ["a man is riding a red bicycle"] * 5, "2": ["two dogs are playing in the snow"] * 5}
    preds = {"1": "a man is riding a red bicycle", "2": "two dogs are playing in the snow"}
    result = score(preds, refs, spice=False)
    assert result.metrics["bleu4"] == pytest.approx(100.0, abs=1e-3)
    assert result.metrics["bleu1"] == pytest.approx(100.0, abs=1e-3)
    assert result.metrics["rouge_l"] == pytest.approx(100.0, abs=1e-6)
    assert result.metrics["meteor"] > 90


def test_matches_pycocoevalcap_called_directly():
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    refs = {
        "a": ["A dog runs on the grass.", "A brown dog running across a lawn!", "The dog is running outside"],
        "b": ["A man rides a bicycle down the street.", "A cyclist on a city road", "man riding a bike"],
        "c": ["Two cats sleep on a red sofa.", "cats sleeping on a couch", "two kittens napping together"],
    }
    preds = {"a": "a dog running on grass", "b": "a man riding a bike on a road", "c": "a cat on a sofa"}
    tok = PTBTokenizer()
    gts = tok.tokenize({k: [{"caption": c} for c in v] for k, v in refs.items()})
    res = tok.tokenize({k: [{"caption": v}] for k, v in preds.items()})
    bleu, bleu_per = Bleu(4).compute_score(gts, res, verbose=0)
    meteor = Meteor()
    expected = {
        **{f"bleu{n + 1}": 100 * bleu[n] for n in range(4)},
        "meteor": 100 * meteor.compute_score(gts, res)[0],
        "rouge_l": 100 * Rouge().compute_score(gts, res)[0],
        "cider": 100 * Cider().compute_score(gts, res)[0],
    }
    del meteor
    result = score(preds, refs, spice=False)
    for name in METRICS:
        assert result.metrics[name] == pytest.approx(expected[name], rel=1e-6, abs=1e-6), name
    assert result.per_image["bleu4"] == pytest.approx([100 * s for s in bleu_per[3]])
    assert result.image_ids == ["a", "b", "c"]
    assert all(len(v) == 3 for v in result.per_image.values())


def test_tokens_match_pycocoevalcaps_tokenizer_and_leave_no_file(monkeypatch):
    """The captions reach Java on standard input, not through a temporary file: the same tokens
    as pycocoevalcap's own tokenizer (non-ASCII and punctuation included), and nothing left in
    the temporary folder for a killed worker to leak."""
    import tempfile

    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    captions = {"a": ["Un café à Paris — naïve “quotes”, ok?", "It's 3.5 m. long... (really) [sic] {x}"],
                "b": ["Ünïcödé ß ø and 日本語", "tabs\tand  double  spaces!", "a dog; a cat: a bird - the end"]}
    expected = PTBTokenizer().tokenize({k: [{"caption": c} for c in v] for k, v in captions.items()})

    def no_temporary_files(*args, **kwargs):
        raise AssertionError("the tokenizer made a temporary file")

    for name in ("mkdtemp", "mkstemp", "NamedTemporaryFile"):
        monkeypatch.setattr(tempfile, name, no_temporary_files)
    assert scoring.tokenize(captions) == expected


def test_cider_is_the_mean_of_per_image_scores():
    refs = {str(i): [f"a {c} square on the left", f"the {c} box", f"a small {c} shape"] for i, c in enumerate(["red", "blue", "green", "pink"])}
    preds = {"0": "a red square", "1": "a blue circle", "2": "a green shape on the left", "3": "nothing"}
    result = score(preds, refs, spice=False)
    assert result.metrics["cider"] == pytest.approx(sum(result.per_image["cider"]) / 4)


def test_empty_and_multiline_predictions_keep_alignment():
    refs = {"1": ["a red square"], "2": ["a blue circle on the right"], "3": ["a green triangle"]}
    preds = {"1": "", "2": "a blue\ncircle on\r\nthe right", "3": "a green triangle"}
    result = score(preds, refs, spice=False)
    assert result.per_image["bleu1"][0] == pytest.approx(0.0, abs=1e-6)
    assert result.per_image["rouge_l"][1] == pytest.approx(100.0)
    assert result.per_image["rouge_l"][2] == pytest.approx(100.0)


def test_spice_unavailable_is_reported_not_raised(monkeypatch):
    monkeypatch.setattr(scoring, "spice_status", lambda: "jars missing")
    two = {"1": "a red square", "2": "a blue circle"}, {"1": ["a red square"], "2": ["one blue circle"]}
    result = score(*two)
    assert "spice" not in result.metrics
    assert result.unavailable == {"spice": "jars missing"}
    assert result.to_json()["unavailable"] == {"spice": "jars missing"}
    with pytest.raises(ScorerError, match="SPICE cannot run: jars missing"):
        score(*two, spice=True)
    assert "unavailable" not in score(*two, spice=False).to_json()


def test_cider_of_one_image_is_unavailable_not_zero():
    """CIDEr weighs n-grams by their document frequency over the scored images' references: with
    one image every weight is log(1/1) = 0, so it would print 0.00 whatever the caption."""
    result = score({"1": "a red square"}, {"1": ["a red square", "one red square"]}, spice=False)
    assert "cider" not in result.metrics and "at least 2 images" in result.unavailable["cider"]
    assert "cider" not in result.per_image and result.metrics["bleu1"] > 90
    two = score({"1": "a red square", "2": "a cat"}, {"1": ["a red square"], "2": ["a dog"]}, spice=False)
    assert two.metrics["cider"] > 0 and "cider" not in two.unavailable


def test_a_reference_with_no_word_is_refused_not_scored():
    """A reference that tokenises to nothing ("...") would be BLEU's closest reference length (0:
    no brevity penalty for a one-word caption) and breaks CIDEr's weights: one line, naming it."""
    with pytest.raises(ScorerError, match=r"image 2: the reference '\.\.\.' has no word once tokenised"):
        score({"1": "a cat", "2": "a"}, {"1": ["a cat"], "2": ["a dog on a mat", "..."]}, spice=False)


def test_missing_java_names_the_fix(monkeypatch):
    monkeypatch.setattr(scoring.shutil, "which", lambda name: None)
    with pytest.raises(ScorerError, match="needs Java.*apt-get install default-jre-headless"):
        score({"1": "a red square"}, {"1": ["a red square"]}, spice=False)


def test_predictions_without_references_fail():
    with pytest.raises(ScorerError, match="1 predictions are for images with no references"):
        score({"1": "x", "2": "y"}, {"1": ["x"]}, spice=False)
    with pytest.raises(ScorerError, match="nothing to score"):
        score({}, {"1": ["x"]}, spice=False)


def test_json_shape():
    result = score({"1": "a red square", "2": "a cat"}, {"1": ["a red square", "one red box"], "2": ["a cat"]}, spice=False)
    data = result.to_json()
    assert set(data) == set(METRICS) | {"n_images"}
    assert data["n_images"] == 2
    assert all(0 <= data[m] <= (1000 if m == "cider" else 100) and not math.isnan(data[m]) for m in METRICS)  # CIDEr-D: 10 an image


def test_a_meteor_process_a_failed_call_left_broken_is_stopped_and_its_lock_freed():
    """pycocoevalcap's compute_score keeps its lock on an error, and a flush into the dead pipe
    raises: stopping must end the process, free the lock (the wrapper's __del__ waits on it, so a
    held one hangs the interpreter at exit) and raise nothing."""
    import subprocess
    import threading
    import time
    import types

    process = subprocess.Popen(["sh", "-c", "exec 0<&-; sleep 30"], stdin=subprocess.PIPE)
    time.sleep(0.5)  # the shell has closed its end of the pipe
    process.stdin.write(b"x" * 100)  # buffered: closing flushes it into the closed pipe
    lock = threading.Lock()
    lock.acquire()
    meteor = types.SimpleNamespace(meteor_p=process, lock=lock)
    scoring._stop_meteor(meteor)
    assert process.poll() is not None and not lock.locked()
    scoring._stop_meteor(meteor)  # twice (at exit, and from __del__): nothing left to do, nothing raised


def test_spice_scores_are_put_back_on_their_own_images(monkeypatch):
    """pycocoevalcap's SPICE lists its per-image scores in sorted(image id) order, a string sort
    ("10" before "9"); each score must land on its own image (the samples, the gallery and
    `score --per-image` read them by position in the run's own order). A NaN F scores 0, and the
    corpus value is the mean of the per-image ones. (The jar is faked: it cannot be fetched here.)"""
    from pycocoevalcap.spice.spice import Spice

    def fake(self, gts, res):  # what the real one returns: scores by sorted id, the mean of F
        ids = sorted(gts)
        return float(np.mean([float(i) / 1000 for i in ids])), [{"All": {"f": float(i) / 1000}} for i in ids]

    monkeypatch.setattr(Spice, "compute_score", fake)
    gts = {"42": ["a cat"], "100": ["a dog"], "7": ["a cow"]}
    corpus, per = scoring._spice(gts, {k: ["a thing"] for k in gts})
    assert per == pytest.approx([4.2, 10.0, 0.7]) and corpus == pytest.approx(np.mean(per))
    monkeypatch.setattr(Spice, "compute_score", lambda self, gts, res: (float("nan"), [
        {"All": {"f": float("nan") if i == "7" else 0.5}} for i in sorted(gts)]))
    corpus, per = scoring._spice(gts, {k: ["a thing"] for k in gts})
    assert per == [50.0, 50.0, 0.0] and corpus == pytest.approx(100 / 3)
