"""Every command answers bad input with one line on stderr and exit code 2, never a traceback,
and before anything heavy is loaded. One table, one row per bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fixtures import karpathy_images, write_images, write_karpathy


def _records(tmp: Path, line: str) -> Path:
    run = tmp / "run"
    run.mkdir(exist_ok=True)
    (run / "records.jsonl").write_text(line + "\n")
    return run


def _preds(tmp: Path, entries) -> str:
    path = tmp / "preds.json"
    path.write_text(json.dumps(entries) if not isinstance(entries, str) else entries)
    return str(path)


def _refs(tmp: Path) -> str:
    return str(write_karpathy(tmp, "coco", karpathy_images()))


def _data(tmp: Path, mutate=None, broken_image: bool = False) -> str:
    images = karpathy_images()
    if mutate:
        mutate(images)
    write_karpathy(tmp / "data", "coco", images)
    write_images(tmp / "data", images)
    if broken_image:  # a test image whose file holds text
        test = next(i for i in images if i["split"] == "test")
        next((tmp / "data").rglob(test["filename"])).write_text("not an image")
    return str(tmp / "data")


def _data_images(tmp: Path) -> str:
    """The folder of a written Karpathy dataset's images (every referenced image is there)."""
    root = Path(_data(tmp))
    return str(next(p for p in (root / "coco").rglob("*") if p.is_file() and p.suffix != ".json").parent)


def _truncated(tmp: Path) -> str:
    root = _data(tmp)
    path = Path(root) / "coco" / "dataset_coco.json"
    path.write_text(path.read_text()[:200])
    return root


def _duplicate_test_ids(images):
    test = [i for i in images if i["split"] == "test"]
    test[1]["cocoid"] = test[0]["cocoid"]


def _null_caption(images):
    images[0]["sentences"][0]["raw"] = None


def _empty_caption(images):
    images[0]["sentences"][0]["raw"] = "  "


def _file(tmp: Path, name: str, content: bytes | str) -> str:
    path = tmp / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return str(path)


def _gpt2_folder(tmp: Path, tokens: int = 0, **config) -> str:
    """A folder whose config.json is a GPT-2's (no weights: the shape check reads only that), with a
    tokenizer.json of ``tokens`` tokens when that is given."""
    folder = tmp / "gpt2-other"
    folder.mkdir(exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    if tokens:
        (folder / "tokenizer.json").write_text(json.dumps({"model": {"vocab": {f"t{i}": i for i in range(tokens)}}}))
    return str(folder)


def _folder(tmp: Path, name: str) -> str:
    (tmp / name).mkdir(exist_ok=True)
    return str(tmp / name)


VALID = {"method": "capdec", "split": "coco", "train": "coco", "eval": "coco", "kind": "in-domain", "seed": 0, "config": {},
         "metrics": {"cider": 1.0}, "encoder": "e@1", "train_fingerprint": "t", "eval_fingerprint": "v"}

CASES = [
    # bench run: the run folder, the config file, the encoder
    ("run --out is a file", lambda t: ["run", "--methods", "clipre", "--split", "coco", "--out", _file(t, "f", "x")],
     "run folder --out"),
    ("run --config is a folder", lambda t: ["run", "--config", _folder(t, "cfg.toml")], "is a folder"),
    ("run --config is binary", lambda t: ["run", "--config", _file(t, "cfg.toml", b"\xff\xfe\x00\x81")], "not UTF-8 text"),
    ("run --encoder NAME:/folder", lambda t: ["run", "--methods", "clipre", "--split", "coco",
                                              "--encoder", f"ViT-B-32:{_folder(t, 'weights')}"], "is a folder, not a weights file"),
    ("run --encoder NAME:/a.json", lambda t: ["run", "--methods", "clipre", "--split", "coco", "--data-root", _data(t),
                                              "--encoder", f"RN50:{_file(t, 'w.json', '{}')}"], "cannot load its weights"),
    ("run --encoder local-dir: without config", lambda t: ["run", "--encoder", f"local-dir:{_folder(t, 'clipdir')}"],
     "has no open_clip_config.json"),
    # bench run: lists that name nothing, numbers out of range
    ("run --methods ,", lambda t: ["run", "--methods", ","], "methods lists nothing"),
    ("run --seeds ,", lambda t: ["run", "--seeds", ","], "seeds lists nothing"),
    ("run NaN learning rate", lambda t: ["run", "--methods", "capdec", "--set", "decoder.lr=nan"], "finite number"),
    ("run infinite learning rate", lambda t: ["run", "--methods", "capdec", "--set", "decoder.lr=inf"], "finite number"),
    ("run dropout above 1", lambda t: ["run", "--methods", "capdec", "--set", "decoder.dropout=1.5"], "dropout must be in [0, 1)"),
    ("run seed 2^32", lambda t: ["run", "--seeds", str(2**32)], "seeds must be integers in [0, 2^32 - 1]"),
    ("run negative warm-up", lambda t: ["run", "--methods", "capdec", "--set", "decoder.warmup=-5"], "warmup must be >= 0"),
    ("run viecap's decoder with an mlp mapper", lambda t: ["run", "--methods", "capdec", "--decoder", "viecap", "--set",
                                                          "decoder.mapper=mlp"], "set decoder.mapper_layers=2 with it"),
    ("run weight decay past AdamW's range", lambda t: ["run", "--methods", "capdec", "--set", "decoder.weight_decay=600"],
     "decoder.lr x decoder.weight_decay must be < 1"),
    ("run max_length 1", lambda t: ["run", "--methods", "capdec", "--set", "decoder.max_length=1"], "max_length must be >= 2"),
    ("run tau that overflows float32", lambda t: ["run", "--methods", "decap", "--set", "decap.tau=1e-300"],
     "decap.tau must be a finite number >= 1e-06"),
    ("run negative weight decay", lambda t: ["run", "--methods", "capdec", "--set", "decoder.weight_decay=-1"],
     "weight_decay must be >= 0"),
    ("run negative grad clip", lambda t: ["run", "--methods", "capdec", "--set", "decoder.grad_clip=-1"], "grad_clip must be >= 0"),
    ("run NaN length penalty", lambda t: ["run", "--methods", "capdec", "--set", "decoder.length_penalty=nan"], "finite number"),
    ("run --noise without a noise method", lambda t: ["run", "--methods", "clipre", "--split", "coco", "--noise", "0.1"],
     "--noise applies to methods that inject noise"),
    # bench run: resources and data, found before any model loads
    ("run missing gpt2_path", lambda t: ["run", "--methods", "capdec", "--decoder", "gpt2", "--set",
                                         f"decoder.gpt2_path={t / 'no-gpt2'}"], "GPT-2 folder"),
    ("run gpt2_path without the gpt2 decoder", lambda t: ["run", "--methods", "capdec", "--set",
                                                         f"decoder.gpt2_path={t}"], "it needs decoder.kind=gpt2"),
    ("run GPT-2 folder of another shape",
     lambda t: ["run", "--methods", "capdec", "--decoder", "gpt2", "--set",
                f"decoder.gpt2_path={_gpt2_folder(t, n_layer=24, n_head=16, n_embd=1024)}"],
     "decoder.layers=12 (the folder's: 24)"),
    ("run GPT-2 folder without a tokenizer",
     lambda t: ["run", "--methods", "capdec", "--decoder", "gpt2", "--set",
                f"decoder.gpt2_path={_gpt2_folder(t, n_layer=12, n_head=12, n_embd=768, vocab_size=50257)}"],
     "holds no tokenizer"),
    ("run GPT-2 folder with another model's tokenizer",
     lambda t: ["run", "--methods", "capdec", "--decoder", "gpt2", "--set",
                f"decoder.gpt2_path={_gpt2_folder(t, n_layer=12, n_head=12, n_embd=768, vocab_size=100, tokens=500)}"],
     "has a vocabulary of ids up to 499, but its GPT-2 has 100 token embeddings"),
    ("run missing generator folder", lambda t: ["run", "--methods", "syntic", "--set", "syntic.generator.kind=diffusers",
                                                "--set", f"syntic.generator.path={t / 'no-sd'}"], "syntic.generator.path"),
    # models a fit would need that no setting names: refused before anything loads, not a failed cell
    ("run syntic on real data without a generator", lambda t: ["run", "--methods", "syntic", "--split", "coco",
                                                               "--data-root", _data(t)], "needs a text-to-image model"),
    ("run syntic's diffusers generator without its folder", lambda t: ["run", "--methods", "syntic", "--set",
                                                                       "syntic.generator.kind=diffusers"],
     "needs a text-to-image model"),
    ("run syntic's detr tagger without its folder", lambda t: ["run", "--methods", "syntic", "--set", "syntic.tagger.kind=detr"],
     "syntic.tagger.kind=detr needs a detector"),
    ("report --out with a newline", lambda t: ["report", str(t), "--out", "a\nb"], "holds a control character"),
    ("run --encoder local-dir: a file", lambda t: ["run", "--methods", "clipre", "--encoder", f"local-dir:{_file(t, 'w.pt', 'x')}"],
     "is a file, not a model folder"),
    ("run --decoder for methods without one", lambda t: ["run", "--methods", "clipre", "--decoder", "gpt2"],
     "--decoder (or --set) decoder: no selected method has a setting 'decoder'"),
    ("run a noise variance twice", lambda t: ["run", "--methods", "capdec", "--noise", "0.1,0.1"], "noise variances must be distinct"),
    ("run a split twice, spelt two ways", lambda t: ["run", "--methods", "clipre", "--split", "shapes-coco", "--split",
                                                     "shapes-coco->shapes-coco"], "names the split shapes-coco names already"),
    ("run decap memory larger than the corpus", lambda t: ["run", "--methods", "decap", "--split", "coco", "--data-root", _data(t),
                                                           "--set", "decap.memory_size=100000000"], "larger than the training corpus"),
    ("run syntic memory larger than the corpus", lambda t: ["run", "--methods", "syntic", "--split", "coco", "--data-root", _data(t),
                                                            "--set", "syntic.generator.kind=shapes", "--set",
                                                            "syntic.memory_size=100000000"], "syntic.memory_size 100000000 is larger"),
    ("run truncated annotation file", lambda t: ["run", "--methods", "clipre", "--split", "coco", "--data-root", _truncated(t)],
     "is not JSON"),
    ("run duplicate test image ids", lambda t: ["run", "--methods", "clipre", "--split", "coco",
                                                "--data-root", _data(t, _duplicate_test_ids)], "appears twice"),
    ("run an empty training caption", lambda t: ["run", "--methods", "clipre", "--split", "coco",
                                                 "--data-root", _data(t, _empty_caption)], "has an empty caption"),
    ("run a null training caption", lambda t: ["run", "--methods", "clipre", "--split", "coco",
                                               "--data-root", _data(t, _null_caption)], "has a caption that is not a string"),
    # bench run: ViECap and IFCap settings, checked against the training data before the encoder loads
    ("run viecap empty vocabulary", lambda t: ["run", "--methods", "viecap", "--split", "coco", "--data-root", _data(t),
                                               "--set", "viecap.vocabulary=,"], "viecap.vocabulary lists nothing"),
    ("run viecap threshold above 1", lambda t: ["run", "--methods", "viecap", "--set", "viecap.threshold=1.5"],
     "threshold must be in [0, 1]"),
    ("run viecap top-k 0", lambda t: ["run", "--methods", "viecap", "--set", "viecap.top_k=0"], "top_k must be >= 1"),
    ("run ifcap k above the corpus", lambda t: ["run", "--methods", "ifcap", "--split", "coco", "--data-root", _data(t),
                                                "--set", "ifcap.k=1000"], "corpus holds"),
    ("run --noise and --set of the noise", lambda t: ["run", "--methods", "viecap", "--noise", "0.01", "--set",
                                                      "viecap.noise_variance=0.02"], "both set viecap's noise variance"),
    ("run --noise and --sweep of the noise", lambda t: ["run", "--methods", "capdec", "--noise", "0.01", "--sweep",
                                                        "capdec.noise_variance=0.02,0.03"], "both set capdec's noise variance"),
    ("run a setting of an unselected method", lambda t: ["run", "--methods", "ifcap", "--set", "viecap.hard_prompt=false"],
     "viecap is not among the selected methods"),
    ("run viecap vocabulary listing a word twice", lambda t: ["run", "--methods", "viecap", "--set", "viecap.vocabulary=dot,dot"],
     "lists 'dot' twice"),
    # a value where a table of settings belongs, then a field inside it (it was a traceback)
    ("run a field inside a value that is not a table", lambda t: ["run", "--methods", "nonoise", "--set", "decoder=gpt2",
                                                                "--set", "decoder.width=3"], "not a table of settings"),
    ("run an empty quoted value", lambda t: ["run", "--methods", "nonoise", "--decoder", "gpt2", "--set",
                                             'decoder.gpt2_path=""'], "gives no value"),
    ("run a list swept on the command line", lambda t: ["run", "--methods", "viecap", "--sweep",
                                                        'viecap.vocabulary=["circle","square"],["star"]'],
     "cannot be swept on the command line"),
    ("run a value swept twice in two spellings", lambda t: ["run", "--methods", "syntic", "--sweep", "syntic.optimise=true,on"],
     "lists a value twice"),
    ("run a setting beside a switch swept to off alone", lambda t: ["run", "--methods", "syntic", "--sweep",
                                                                    "syntic.optimise=false", "--set", "syntic.opt_lr=0.001"],
     "syntic.opt_lr is unused with syntic.optimise=false"),
    ("run a config file's sweep beside --set of the key", lambda t: ["run", "--methods", "decap", "--config",
                                                                     _file(t, "s.json", '{"sweep": {"decap.tau": [0.01, 0.02]}}'),
                                                                     "--set", "decap.tau=0.05"], "is both set and swept"),
    ("run a null in a config file", lambda t: ["run", "--methods", "decap", "--config",
                                               _file(t, "n.json", '{"method_options": {"decap.tau": null}}')],
     "method_options.decap.tau is null"),
    ("run a key twice in a JSON config", lambda t: ["run", "--config", _file(t, "d.json", '{"methods": ["capdec"], "methods": ["decap"]}')],
     "'methods' is given twice"),
    ("run --decoder over a config file's decoder table", lambda t: ["run", "--methods", "nonoise", "--decoder", "gpt2", "--config",
                                                                   _file(t, "g.toml", '[method_options]\ndecoder = { epochs = 3 }\n')],
     "would replace the decoder settings of"),
    ("run viecap top_k without the hard prompt", lambda t: ["run", "--methods", "viecap", "--set", "viecap.hard_prompt=false",
                                                            "--set", "viecap.top_k=2"], "viecap.top_k is unused with viecap.hard_prompt=false"),
    ("run ifcap filter_k without the hard prompt", lambda t: ["run", "--methods", "ifcap", "--set", "ifcap.hard_prompt=false",
                                                              "--set", "ifcap.filter_k=2"], "ifcap.filter_k is unused with ifcap.hard_prompt=false"),
    ("run an empty --eval-encoder", lambda t: ["run", "--methods", "clipre", "--eval-encoder", ""], "--eval-encoder is empty"),
    # an empty path or value is a mistake, never "the default" (nor the current folder)
    ("prepare --cache-dir ''", lambda t: ["prepare", "shapes", "--cache-dir", ""], "--cache-dir is empty"),
    ("gap --cache-dir ''", lambda t: ["gap", "--encoder", "shapes", "--dataset", "shapes", "--cache-dir", ""], "--cache-dir is empty"),
    ("caption --cache-dir ''", lambda t: ["caption", "--method", "clipre", "--checkpoint", _folder(t, "ck"),
                                          "--images", _folder(t, "im"), "--cache-dir", ""], "--cache-dir is empty"),
    ("run --out ''", lambda t: ["run", "--methods", "clipre", "--out", ""], "--out is empty"),
    ("report ''", lambda t: ["report", ""], "RUN_DIR is empty"),
    ("run --set with no value", lambda t: ["run", "--methods", "capdec", "--decoder", "gpt2", "--set", "decoder.gpt2_path="],
     "--set decoder.gpt2_path= gives no value"),
    # bench score
    ("score --clip-score without images", lambda t: ["score", "--predictions", _preds(t, [{"image_id": 1003, "caption": "x"}]),
                                                     "--references", _refs(t), "--clip-score", "--eval-encoder", "shapes"],
     "--clip-score needs --images"),
    ("score --clip-score without an encoder", lambda t: ["score", "--predictions", _preds(t, [{"image_id": 1003, "caption": "x"}]),
                                                         "--references", _refs(t), "--clip-score", "--images", _folder(t, "im")],
     "--clip-score needs --eval-encoder"),
    ("score --images without --clip-score", lambda t: ["score", "--predictions", _preds(t, [{"image_id": 1003, "caption": "x"}]),
                                                       "--references", _refs(t), "--images", _folder(t, "im")],
     "--images only applies with --clip-score"),
    ("score --device without --clip-score", lambda t: ["score", "--predictions", _preds(t, [{"image_id": 1003, "caption": "x"}]),
                                                       "--references", _refs(t), "--device", "cuda"],
     "--device only applies with --clip-score"),
    ("score --clip-score an image missing", lambda t: ["score", "--predictions", _preds(t, [{"image_id": 1003, "caption": "x"}]),
                                                       "--references", _refs(t), "--clip-score", "--images", _folder(t, "im"),
                                                       "--eval-encoder", "shapes"], "has no image for 1003"),
    ("score predictions are a folder", lambda t: ["score", "--predictions", _folder(t, "p.json"), "--references", _refs(t)],
     "is a folder"),
    ("score image_id is a list", lambda t: ["score", "--predictions", _preds(t, [{"image_id": [1], "caption": "x"}]),
                                            "--references", _refs(t)], "neither a string nor an integer"),
    ("score image_id is a dict", lambda t: ["score", "--predictions", _preds(t, [{"image_id": {"a": 1}, "caption": "x"}]),
                                            "--references", _refs(t)], "neither a string nor an integer"),
    ("score a lone surrogate", lambda t: ["score", "--predictions", _preds(t, '[{"image_id": 1003, "caption": "a \\ud800 dog"}]'),
                                          "--references", _refs(t)], "unpaired surrogate"),
    ("score --per-image is a folder", lambda t: ["score", "--predictions", _preds(t, [{"image_id": 1003, "caption": "x"}]),
                                                 "--references", _refs(t), "--per-image", _folder(t, "out")], "is a folder"),
    ("score a null reference", lambda t: ["score", "--predictions", _preds(t, [{"image_name": "a.jpg", "captions": [None],
                                                                                "prediction": "x"}])],
     "has a caption that is not a string"),
    # bench check / report
    ("check null metrics", lambda t: ["check", str(_records(t, json.dumps({**VALID, "metrics": None}))), "--baseline",
                                      str(_records(t, json.dumps({**VALID, "metrics": None})))], "no complete records"),
    ("check records.jsonl is a folder", lambda t: ["check", str(_mkdir(t / "r1" / "records.jsonl").parent),
                                                   "--baseline", str(t)], "is not a file"),
    ("report records.jsonl is a folder", lambda t: ["report", str(_mkdir(t / "r2" / "records.jsonl").parent)], "is not a file"),
    # empty or malformed lists are refused, not read as "the default" or with items dropped
    ("run --methods ''", lambda t: ["run", "--methods", "", "--split", "shapes-coco"], "methods lists nothing"),
    ("run --split ''", lambda t: ["run", "--methods", "capdec", "--split", ""], "splits lists nothing"),
    ("run --seeds 1,,2", lambda t: ["run", "--methods", "capdec", "--seeds", "1,,2"], "seeds has an empty item"),
    ("run --seeds in other digits", lambda t: ["run", "--methods", "capdec", "--seeds", "\u0663"], "seeds must be an integer"),
    ("run --noise 1_0", lambda t: ["run", "--methods", "capdec", "--noise", "1_0"], "noise must be a number"),
    # settings that would be accepted and then ignored
    ("run --set encoder.name", lambda t: ["run", "--methods", "capdec", "--set", "encoder.name=xx"], "chosen with --encoder"),
    ("run a negative text-side head", lambda t: ["run", "--methods", "capdec", "--set",
                                                 "encoder.shapes_text_attribute_weight=-1"], "must be a finite number >= 0"),
    ("run a text-side head with no shapes encoder", lambda t: ["run", "--methods", "capdec", "--encoder", "ViT-B-32:openai",
                                                               "--no-clip-score", "--set", "encoder.shapes_text_attribute_weight=50"],
     "trains the shapes world's CLIP"),
    ("run --set a setting to null", lambda t: ["run", "--methods", "capdec", "--set", "decoder.width=null"],
     "cannot unset a setting"),
    ("run one setting set twice", lambda t: ["run", "--methods", "capdec", "--set", "capdec.decoder.width=32",
                                             "--set", "decoder.width=64"], "both set capdec's decoder.width"),
    ("run one setting swept twice", lambda t: ["run", "--methods", "capdec", "--sweep", "decoder.width=64,128",
                                               "--sweep", "capdec.decoder.width=32,16"], "both set capdec's decoder.width"),
    ("run --decoder ''", lambda t: ["run", "--methods", "capdec", "--decoder", ""], "unknown decoder ''"),
    ("run --sweep of no setting", lambda t: ["run", "--methods", "capdec", "--sweep", "foo=1,2"], "--sweep foo: no selected"),
    # the run folder and the device, before anything loads
    ("run --out holds a newline", lambda t: ["run", "--methods", "clipre", "--split", "coco", "--out", str(t / "a\nb")],
     "holds a control character"),
    ("run records.jsonl is a folder", lambda t: ["run", "--methods", "clipre", "--split", "coco",
                                                 "--out", str(_mkdir(t / "r3" / "records.jsonl").parent)], "is not a file"),
    ("run --workers 1000000", lambda t: ["run", "--methods", "clipre", "--workers", "1000000"], "--workers and --threads must be at most"),
    ("run --device gpu", lambda t: ["run", "--methods", "clipre", "--device", "gpu"], "device must be cpu, cuda or cuda:N"),
    ("gap --device gpu", lambda t: ["gap", "--encoder", "shapes", "--dataset", "shapes-coco", "--device", "gpu"],
     "--device must be cpu, cuda or cuda:N"),
    ("gap a file that is not an image", lambda t: ["gap", "--encoder", "shapes", "--dataset", "coco",
                                                   "--data-root", _data(t, None, broken_image=True)], "cannot be read as images"),
    ("score --clip-score --device gpu", lambda t: ["score", "--predictions", _preds(t, [{"image_id": 1003, "caption": "x"}]),
                                                   "--references", _refs(t), "--clip-score", "--images", _folder(t, "im"),
                                                   "--eval-encoder", "shapes", "--device", "gpu"], "--device must be"),
    ("score --clip-score cache is a file", lambda t: ["score", "--predictions", _preds(t, [{"image_id": 1003, "caption": "x"}]),
                                                      "--references", _refs(t), "--clip-score", "--images", _data_images(t),
                                                      "--eval-encoder", "shapes", "--cache-dir", _file(t, "cachefile", "x")],
     "is a file, not a folder"),
    ("score --per-image ''", lambda t: ["score", "--predictions", _preds(t, [{"image_id": 1003, "caption": "x"}]),
                                        "--references", _refs(t), "--per-image", ""], "--per-image is empty"),
    ("score predictions not UTF-8", lambda t: ["score", "--predictions",
                                               _file(t, "p.json", '[{"image_id": 1003, "caption": "caf\xe9"}]'.encode("latin-1")),
                                               "--references", _refs(t)], "is not UTF-8 text"),
    ("score JSON nested too deeply", lambda t: ["score", "--predictions", _file(t, "deep.json", "[" * 100000 + "]" * 100000),
                                                "--references", _refs(t)], "nests its JSON too deeply"),
    ("check a tolerance given twice", lambda t: ["check", str(_records(t, json.dumps(VALID))), "--baseline",
                                                 str(_records(t, json.dumps(VALID))), "--tolerance", "cider=1,cider=2"],
     "gives cider twice"),
    ("report --resamples too many", lambda t: ["report", str(_records(t, json.dumps(VALID))), "--resamples", "1000000000"],
     "--resamples must be at most"),
    ("report --out not writable", lambda t: ["report", str(_records(t, json.dumps(VALID))), "--out",
                                             str(Path(_file(t, "plain", "x")) / "sub")], "is not writable"),
    ("ls a misspelled section", lambda t: ["ls", "methds"], "did you mean 'methods'"),
    ("caption --device cuda:x", lambda t: ["caption", "--method", "clipre", "--checkpoint", _folder(t, "ck"),
                                           "--images", _folder(t, "im"), "--device", "cuda:x"], "--device must be"),
    # bench caption
    ("caption a folder that is not a fit", lambda t: ["caption", "--method", "clipre", "--checkpoint", _folder(t, "ck"),
                                                      "--images", _folder(t, "im")], "is not a fitted method"),
]


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.mark.parametrize("name, argv, fragment", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_exit_2(run_cli, tmp_path, monkeypatch, name, argv, fragment):
    monkeypatch.setenv("TEXTCAP_BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(*argv(tmp_path))
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert fragment in lines[0], lines[0]


def test_an_unreadable_file_is_one_line(run_cli, tmp_path, monkeypatch):
    """A file the process may not read (root reads everything, so the refusal is simulated)."""
    preds = _preds(tmp_path, [{"image_id": 1003, "caption": "x"}])
    original = Path.read_bytes

    def read_bytes(self, *args, **kwargs):
        if str(self) == preds:
            raise PermissionError(13, "Permission denied")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    code, _, err = run_cli("score", "--predictions", preds, "--references", _refs(tmp_path))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Permission denied" in err


def test_a_closed_pipe_is_not_a_traceback(tmp_path):
    """`bench ls | true`: the reader is gone before the listing is written."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    reader = subprocess.Popen([sys.executable, "-c", "pass"], stdin=subprocess.PIPE)
    reader.wait()  # exited without reading: its end of the pipe is closed
    proc = subprocess.run([sys.executable, "-m", "bench", "ls"], stdout=reader.stdin, stderr=subprocess.PIPE, text=True,
                          env=env, timeout=120)
    reader.stdin.close()
    assert proc.returncode == 141 and "Traceback" not in proc.stderr and not proc.stderr.strip(), proc.stderr


def test_ls_of_an_alias_lists_its_entry(run_cli):
    code, out, err = run_cli("ls", "flickr")
    assert code == 0 and "flickr30k" in out and "(alias: flickr)" in out, err


def test_ls_with_a_pattern_that_matches_nothing(run_cli):
    code, out, _ = run_cli("ls", "zzz*")
    assert code == 0 and "(none matching 'zzz*')" in out and "registered yet" not in out
