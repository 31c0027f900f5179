"""The scorer: every caption metric in one pass, on the 0-100 scale papers use.

Predictions and references are tokenised once, together, by the PTB tokenizer (one Java
process), and each pycocoevalcap scorer runs once. The result keeps per-image scores, so
that reports can bootstrap confidence intervals without scoring again.

CIDEr here is pycocoevalcap's ``Cider``, which is CIDEr-D (length penalty, clipped counts),
the number every captioning paper reports as "CIDEr".
"""

from __future__ import annotations

import atexit
import importlib.util
import math
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.errors import ScorerError

#: Metrics every score has, in report order.
METRICS: tuple[str, ...] = ("bleu1", "bleu2", "bleu3", "bleu4", "meteor", "rouge_l", "cider")
#: Metrics reported when they can run.
OPTIONAL_METRICS: tuple[str, ...] = ("spice",)
#: Metrics from an evaluation CLIP (``bench.clipscore``), which needs the images.
CLIP_METRICS: tuple[str, ...] = ("clip_s", "refclip_s")
ALL_METRICS = METRICS + OPTIONAL_METRICS + CLIP_METRICS

JAVA_HINT = "install a Java runtime (Debian/Ubuntu: apt-get install default-jre-headless; conda: conda install openjdk) and make sure `java` is on PATH"
SPICE_JARS = ("stanford-corenlp-3.6.0.jar", "stanford-corenlp-3.6.0-models.jar")


@dataclass
class ScoreResult:
    """Corpus metrics (0-100), per-image scores aligned with ``image_ids``, and what could not run."""

    metrics: dict[str, float]
    per_image: dict[str, list[float]]
    image_ids: list[str]
    unavailable: dict[str, str] = field(default_factory=dict)
    #: per image, BLEU's sufficient statistics (``bench.stats.BLEU_STATS``), aligned with image_ids
    bleu_stats: list[list[int]] = field(default_factory=list)

    @property
    def n_images(self) -> int:
        return len(self.image_ids)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: round(v, 4) for k, v in self.metrics.items()}
        out["n_images"] = self.n_images
        if self.unavailable:
            out["unavailable"] = dict(self.unavailable)
        return out


def pycocoevalcap_dir() -> Path:
    spec = importlib.util.find_spec("pycocoevalcap")
    if spec is None or not spec.submodule_search_locations:
        raise ScorerError("pycocoevalcap is not installed: pip install pycocoevalcap")
    return Path(list(spec.submodule_search_locations)[0])


def spice_status() -> str | None:
    """None when SPICE can run, else the reason it cannot (no import of the scorer needed)."""
    if shutil.which("java") is None:
        return "Java is not installed"
    try:
        lib = pycocoevalcap_dir() / "spice" / "lib"
    except ScorerError as exc:
        return str(exc)
    missing = [jar for jar in SPICE_JARS if not (lib / jar).is_file()]
    if missing:
        return (f"SPICE needs the Stanford CoreNLP 3.6.0 jars ({', '.join(missing)}) in {lib}; "
                "they are not there and cannot be downloaded offline")
    return None


def require_java() -> None:
    if shutil.which("java") is None:
        raise ScorerError(f"scoring needs Java for the PTB tokenizer and METEOR: {JAVA_HINT}")


def _check_text(value: Any, image_id: str, what: str) -> None:
    if not isinstance(value, str):
        raise ScorerError(f"image {image_id}: a {what} is not a string ({type(value).__name__})")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ScorerError(f"image {image_id}: a {what} is not valid text (an unpaired surrogate at position {exc.start})") from None


def _clean(text: str) -> str:
    return " ".join(str(text).split())


#: Tokens the PTB tokenizer emits that pycocoevalcap drops (punctuation).
_PUNCTUATION = {"''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--", "...", ";"}


def _ptb(lines: list[str]) -> list[str]:
    """Run Stanford's PTB tokenizer (the jar pycocoevalcap ships) on lines, one Java call.

    The same tokenizer and options as pycocoevalcap's ``PTBTokenizer``, which writes the lines
    to a temporary file; here they go through the process's standard input (the same tokens),
    so no file is left behind when a worker is killed mid-call and nothing is written to
    site-packages. Java's stderr is captured, so its chatter does not interleave with progress
    bars and its errors can be reported.
    """
    jar = pycocoevalcap_dir() / "tokenizer" / "stanford-corenlp-3.4.1.jar"
    cmd = ["java", "-cp", str(jar), "edu.stanford.nlp.process.PTBTokenizer", "-preserveLines", "-lowerCase",
           "-encoding", "utf-8"]
    try:
        proc = subprocess.run(cmd, input="\n".join(lines).encode("utf-8"), capture_output=True, check=False)
    except OSError as exc:
        raise ScorerError(f"the PTB tokenizer failed to start ({exc}); {JAVA_HINT}") from None
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip().splitlines()
        raise ScorerError(f"the PTB tokenizer failed: {err[-1] if err else f'exit code {proc.returncode}'}")
    out = proc.stdout.decode("utf-8").split("\n")
    if len(out) < len(lines) or any(extra.strip() for extra in out[len(lines):]):  # one line out per line in
        raise ScorerError(f"the PTB tokenizer returned {sum(1 for x in out if x.strip())} lines for {len(lines)} captions")
    return [" ".join(w for w in line.rstrip().split(" ") if w not in _PUNCTUATION) for line in out[: len(lines)]]


def tokenize(captions: Mapping[Any, Sequence[str]]) -> dict[Any, list[str]]:
    """PTB-tokenise (lower-case, punctuation removed) every caption in one Java call."""
    require_java()
    # One line per caption is the tokenizer's protocol: whitespace inside a caption is
    # collapsed, and empty captions never reach Java (an empty line could shift the rest).
    cleaned = {k: [_clean(c) for c in caps] for k, caps in captions.items()}
    lines = [c for caps in cleaned.values() for c in caps if c]
    tokens = iter(_ptb(lines) if lines else [])
    return {k: [next(tokens) if c else "" for c in caps] for k, caps in cleaned.items()}


def score(
    predictions: Mapping[str, str],
    references: Mapping[str, Sequence[str]],
    *,
    spice: bool | None = None,
    progress: Callable[..., Any] | None = None,
) -> ScoreResult:
    """Score ``predictions[image_id]`` against ``references[image_id]`` (lists of strings).

    Every prediction needs at least one reference; images with references but no prediction
    are ignored. ``spice``: True runs it (failing loudly), False skips it, None (default) runs
    it when its jars are present and otherwise records why not in ``unavailable``.
    """
    image_ids = [str(k) for k in predictions]
    if not image_ids:
        raise ScorerError("there is nothing to score: no predictions")
    refs = {str(k): list(v) for k, v in references.items()}
    missing = [i for i in image_ids if not refs.get(i)]
    for i in image_ids:  # text that is not a string, or not valid Unicode, is named here, not deep in Java
        _check_text(predictions_get(predictions, i), i, "prediction")
        for ref in refs.get(i, []):
            _check_text(ref, i, "reference")
    if missing:
        raise ScorerError(f"{len(missing)} predictions are for images with no references (first: {missing[0]})")

    stages = ["tokenize", "bleu", "meteor", "rouge_l", "cider"]
    unavailable: dict[str, str] = {}
    reason = spice_status() if spice is not False else "not requested"
    if spice and reason:
        raise ScorerError(f"SPICE cannot run: {reason}")
    if reason is None:
        stages.append("spice")
    elif spice is None:
        unavailable["spice"] = reason

    if len(image_ids) < 2:  # CIDEr's document frequencies come from the scored images' references
        stages.remove("cider")
        unavailable["cider"] = ("CIDEr needs at least 2 images: its n-gram weights come from the scored images' references, "
                                "and with one image every weight is 0")
    bar = progress(stages, total=len(stages), desc="scoring", unit="stage") if progress else stages
    metrics: dict[str, float] = {}
    per_image: dict[str, list[float]] = {}
    gts = res = None
    bleu_stats: list[list[int]] = []
    for stage in bar:
        if hasattr(bar, "set_postfix_str"):
            bar.set_postfix_str(stage)
        if stage == "tokenize":
            both = {("r", i): refs[i] for i in image_ids}
            both.update({("p", i): [str(predictions_get(predictions, i))] for i in image_ids})
            tok = tokenize(both)
            gts = {i: tok[("r", i)] for i in image_ids}
            res = {i: tok[("p", i)] for i in image_ids}
            for i in image_ids:  # a reference the tokenizer empties would be BLEU's "closest length" 0, and CIDEr's nothing
                for raw, ref in zip(refs[i], gts[i]):
                    if not ref.strip():
                        raise ScorerError(f"image {i}: the reference {raw[:40]!r} has no word once tokenised; "
                                          "remove it from the references")
        elif stage == "bleu":
            corpus, per, bleu_stats = _bleu(gts, res, image_ids)
            for n in range(4):
                metrics[f"bleu{n + 1}"] = 100.0 * corpus[n]
                per_image[f"bleu{n + 1}"] = [100.0 * s for s in per[n]]
        elif stage == "meteor":
            corpus, per = _meteor(gts, res)
            metrics["meteor"], per_image["meteor"] = 100.0 * corpus, [100.0 * s for s in per]
        elif stage == "rouge_l":
            from pycocoevalcap.rouge.rouge import Rouge

            corpus, per = Rouge().compute_score(gts, res)
            metrics["rouge_l"], per_image["rouge_l"] = 100.0 * float(corpus), [100.0 * float(s) for s in per]
        elif stage == "cider":
            from pycocoevalcap.cider.cider import Cider

            corpus, per = Cider().compute_score(gts, res)
            metrics["cider"], per_image["cider"] = 100.0 * float(corpus), [100.0 * float(s) for s in per]
        elif stage == "spice":
            try:
                corpus, per = _spice(gts, res)
            except ScorerError as exc:
                if spice:
                    raise
                unavailable["spice"] = str(exc)
            else:
                metrics["spice"], per_image["spice"] = corpus, per
    return ScoreResult(metrics=metrics, per_image=per_image, image_ids=image_ids, unavailable=unavailable,
                       bleu_stats=bleu_stats)


def _bleu(gts: dict[str, list[str]], res: dict[str, list[str]], image_ids: list[str]) -> tuple[list[float], list[list[float]], list[list[int]]]:
    """pycocoevalcap's BLEU (closest reference length), plus each image's sufficient statistics
    (``bench.stats.BLEU_STATS``) so that a report can recompute corpus BLEU on a resample."""
    from pycocoevalcap.bleu.bleu_scorer import BleuScorer

    scorer = BleuScorer(n=4)
    for i in image_ids:
        scorer += (res[i][0], gts[i])
    corpus, per = scorer.compute_score(option="closest", verbose=0)
    stats = []
    for comps in scorer.ctest:
        testlen = comps["testlen"]
        reflen = min((abs(length - testlen), length) for length in comps["reflen"])[1]
        stats.append([testlen, reflen, *comps["guess"], *comps["correct"]])
    return corpus, per, stats


def match_predictions(predictions: Mapping[Any, str], refs: Any) -> dict[str, str]:
    """Predictions keyed by the canonical image ids of ``refs`` (a ``bench.annotations.ReferenceIndex``),
    whatever key each prediction used (COCO id, file name, stem). A prediction for an image without
    references, or two for one image, is a one-line error."""
    from bench.errors import DataError

    matched: dict[str, str] = {}
    orphans = []
    for key, caption in predictions.items():
        image_id = refs.find(key)
        if image_id is None or not refs.references(image_id):
            orphans.append(key)
        elif image_id in matched:
            raise DataError(f"two predictions are for the same image {image_id} (second key: {key})")
        else:
            matched[image_id] = caption
    if orphans:
        raise DataError(f"{len(orphans)} of {len(predictions)} predictions are for images with no references (first: {orphans[0]})")
    return matched


def predictions_get(predictions: Mapping[Any, str], image_id: str) -> str:
    return predictions[image_id] if image_id in predictions else predictions[int(image_id)]  # type: ignore[index]


_METEOR: Any = None
#: Predictions longer than this are named when METEOR fails (it takes 30,000 words; 800 KB breaks its pipe).
LONG_CAPTION = 10_000


def _meteor_scorer() -> Any:
    """One METEOR Java process per Python process: it takes seconds to start (paraphrase
    tables), and a run scores many cells. Restarted if it died; stopped at exit."""
    global _METEOR
    require_java()
    if _METEOR is None or _METEOR.meteor_p.poll() is not None:
        from pycocoevalcap.meteor.meteor import Meteor

        class _Meteor(Meteor):
            def __del__(self) -> None:  # the wrapper's own waits for a lock that a failed call left held
                _stop_meteor(self)

        _METEOR = _Meteor()
        atexit.register(_stop_meteor, _METEOR)
    return _METEOR


def _stop_meteor(meteor: Any) -> None:
    """End a METEOR process, whatever state a failed call left it in (a broken pipe, its lock held)."""
    global _METEOR
    process = meteor.meteor_p
    if process.poll() is None:
        try:
            process.stdin.close()
        except OSError:  # a broken pipe: the process is ending anyway
            pass
        process.kill()
        process.wait()
    if meteor.lock.locked():  # compute_score releases it only when it succeeds
        meteor.lock.release()
    if _METEOR is meteor:
        _METEOR = None


def _meteor(gts: dict[str, list[str]], res: dict[str, list[str]]) -> tuple[float, list[float]]:
    meteor = _meteor_scorer()
    try:
        return meteor.compute_score(gts, res)
    except (ValueError, BrokenPipeError, OSError) as exc:
        _stop_meteor(meteor)
        longest = max((len(c) for captions in res.values() for c in captions), default=0)
        if longest > LONG_CAPTION:  # what a working Java still cannot take
            raise ScorerError(f"METEOR failed ({exc}) on a prediction of {longest:,} characters; "
                              "is a caption that long what the method meant to say?") from None
        raise ScorerError(f"METEOR failed ({exc}); is Java working? {JAVA_HINT}") from None


def _spice(gts: dict[str, list[str]], res: dict[str, list[str]]) -> tuple[float, list[float]]:
    from pycocoevalcap.spice.spice import Spice

    scorer = Spice.__new__(Spice)  # __init__ would try to download CoreNLP
    try:
        _, per = scorer.compute_score(gts, res)  # its corpus mean: see below
    except (subprocess.CalledProcessError, OSError, ValueError) as exc:
        raise ScorerError(f"SPICE failed to run: {exc}") from None
    # pycocoevalcap returns the images' scores in sorted(gts) order (string order: "10" before
    # "9"), not in gts's: put each back on its own image. An image whose F is NaN (a caption with
    # no scene-graph tuple) scores 0, and the corpus score is the mean of these, as for the other
    # metrics (pycocoevalcap's own mean would be NaN).
    if len(per) != len(gts):
        raise ScorerError(f"SPICE returned {len(per)} scores for {len(gts)} images")
    by_id = {image_id: 100.0 * float(p["All"]["f"]) for image_id, p in zip(sorted(gts), per)}
    values = [0.0 if math.isnan(by_id[image_id]) else by_id[image_id] for image_id in gts]
    return (math.fsum(values) / len(values)) if values else 0.0, values
