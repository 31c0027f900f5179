import json
import random
import subprocess
import sys

import pytest

from tests.fixtures import karpathy_images, write_flattened, write_images, write_karpathy


def test_ls_lists_everything(run_cli):
    code, out, err = run_cli("ls")
    assert code == 0, err
    for section in ("methods:", "datasets:", "splits:", "metrics:"):
        assert section in out
    assert "coco->flickr30k" in out and "cross-domain" in out
    assert "flickr30k" in out and "alias: flickr" in out


def test_ls_and_help_import_nothing_heavy():
    """In a fresh interpreter (an earlier test may have imported torch into this one)."""
    probe = ("import sys\nfrom bench.cli import main\nfor argv in (['ls'], ['run', '--help'], ['report', '--help']):\n"
             "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
             "heavy = sorted(m for m in ('torch', 'open_clip', 'transformers', 'diffusers', 'pandas', 'matplotlib') if m in sys.modules)\n"
             "print('HEAVY', heavy)\n")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stdout, result.stdout[-300:]


def test_ls_json_and_wildcard(run_cli):
    code, out, _ = run_cli("ls", "--json")
    data = json.loads(out)
    assert {d["name"] for d in data["datasets"]} >= {"coco", "flickr30k", "flickrstyle-romantic", "flickrstyle-humor"}
    assert [m["name"] for m in data["metrics"]][:7] == ["bleu1", "bleu2", "bleu3", "bleu4", "meteor", "rouge_l", "cider"]
    metrics = {m["name"]: m for m in data["metrics"]}
    assert metrics["spice"]["available"] or metrics["spice"]["reason"]
    assert "evaluation CLIP" in metrics["clip_s"]["needs"] and "refclip_s" in metrics
    code, out, _ = run_cli("ls", "flickr*", "--json")
    assert [d["name"] for d in json.loads(out)["datasets"]] == ["flickr30k", "flickrstyle-humor", "flickrstyle-romantic"]


def _one_line_error(code, err, *fragments):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.parametrize("argv, fragments", [
    (["run", "--methods", "capdecc"], ["unknown method 'capdecc'"]),
    (["run", "--split", "coco->"], ["no eval dataset"]),
    (["run", "--split=->flickr"], ["no train dataset"]),
    (["run", "--split", "a->b->c"], ["2 arrows"]),
    (["run", "--noise", "0,-1"], [">= 0"]),
    (["run", "--noise", "x"], ["must be a number"]),
    (["run", "--device", "tpu"], ["device"]),
    (["prepare", "cocoo"], ["unknown dataset 'cocoo'", "did you mean 'coco'"]),
    (["run", "--bogus"], ["unrecognized arguments"]),
    (["nosuchcommand"], ["invalid choice"]),
    (["check", "x", "--baseline", "y", "--tolerance", "cidr=1"], ["unknown metric 'cidr'"]),
    (["caption", "--method", "nope", "--checkpoint", ".", "--images", "."], ["unknown method 'nope'"]),
])
def test_bad_input_is_one_line_and_exit_2(run_cli, argv, fragments):
    code, _, err = run_cli(*argv)
    _one_line_error(code, err, *fragments)


def test_report_and_check_need_records(run_cli, tmp_path):
    code, _, err = run_cli("report", str(tmp_path))
    _one_line_error(code, err, "no records", "records.jsonl does not exist")
    code, _, err = run_cli("check", str(tmp_path), "--baseline", str(tmp_path))
    _one_line_error(code, err, "records.jsonl does not exist")


def test_prepare_indexes_real_data_and_checks_its_image_files(run_cli, tmp_path):
    images = karpathy_images()
    write_karpathy(tmp_path, "coco", images)
    code, _, err = run_cli("prepare", "coco", "--data-root", str(tmp_path))
    _one_line_error(code, err, "coco val: image folder", "does not exist")
    write_images(tmp_path, images)
    code, out, err = run_cli("prepare", "coco", "--data-root", str(tmp_path))
    assert code == 0, err
    assert ("coco: train 3 images / 15 captions; val 1 images / 5 captions (image files present); "
            "test 2 images / 10 captions (image files present)") in out
    next((tmp_path / "coco" / "images").rglob("*.jpg")).unlink()
    code, _, err = run_cli("prepare", "coco", "--data-root", str(tmp_path))
    _one_line_error(code, err, "image files are missing")


# -- bench score ---------------------------------------------------------------------------

def _shared_sample(shared_data, n=200, seed=0):
    data = json.loads((shared_data / "coco_karpathy_val.json").read_text())
    return random.Random(seed).sample(data, n)


def test_score_flattened_real_sample(run_cli, shared_data, tmp_path):
    sample = _shared_sample(shared_data)
    # Leave-one-out: each image's first caption is its prediction, the rest its references.
    flat = [{**d, "captions": d["captions"][1:], "prediction": d["captions"][0]} for d in sample]
    path = tmp_path / "preds.json"
    path.write_text(json.dumps(flat))
    code, out, err = run_cli("score", "--predictions", str(path), "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["n_images"] == 200
    assert set(result) >= {"bleu1", "bleu2", "bleu3", "bleu4", "meteor", "rouge_l", "cider"}
    # A human caption against the other humans: far above zero, far below perfect.
    assert 10 < result["bleu4"] < 60 and 40 < result["cider"] < 150 and 15 < result["meteor"] < 40
    assert "spice" in result or "spice" in result["unavailable"]


def test_score_coco_results_against_karpathy_file(run_cli, tmp_path):
    images = karpathy_images()
    refs = write_karpathy(tmp_path, "coco", images)
    test = [i for i in images if i["split"] == "test"]
    preds = tmp_path / "results.json"
    preds.write_text(json.dumps([{"image_id": i["cocoid"], "caption": i["sentences"][0]["raw"]} for i in test]))
    code, out, err = run_cli("score", "--predictions", str(preds), "--references", str(refs), "--split", "test", "--json")
    assert code == 0, err
    assert json.loads(out)["n_images"] == 2
    assert json.loads(out)["bleu4"] == pytest.approx(100.0, abs=1e-3)


def test_score_coco_results_against_coco_caption_file(run_cli, tmp_path):
    ann = {"images": [{"id": 7, "file_name": "COCO_val2014_000000000007.jpg"}, {"id": 8, "file_name": "b.jpg"}],
           "annotations": [{"image_id": 7, "caption": "a red car parked on a street"},
                           {"image_id": 7, "caption": "a car on the road"},
                           {"image_id": 8, "caption": "a bowl of fruit on a wooden table"}]}
    (tmp_path / "captions_val2014.json").write_text(json.dumps(ann))
    (tmp_path / "res.json").write_text(json.dumps([{"image_id": 7, "caption": "a red car parked on a street"}]))
    code, out, err = run_cli("score", "--predictions", str(tmp_path / "res.json"),
                             "--references", str(tmp_path / "captions_val2014.json"), "--json")
    assert code == 0, err
    assert json.loads(out)["n_images"] == 1


def test_score_human_readable_table_and_per_image(run_cli, tmp_path):
    images = karpathy_images()
    path = write_flattened(tmp_path / "p.json", images, {i["filename"]: "a dog on the grass" for i in images})
    code, out, err = run_cli("score", "--predictions", str(path), "--per-image", str(tmp_path / "per.json"))
    assert code == 0, err
    assert "cider" in out and "n_images" in out
    per = json.loads((tmp_path / "per.json").read_text())
    assert len(per["image_ids"]) == len(images) and len(per["scores"]["cider"]) == len(images)
    code, _, err = run_cli("score", "--predictions", str(path), "--split", "val")  # would be ignored: refused
    assert code == 2 and "--split picks a split of a --references file" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("content, fragment", [
    ("this is not json", "is not JSON"),
    ("", "is empty"),
    ("   \n", "is empty"),
    ("[]", "holds no predictions"),
    ('{"a": 1}', "unknown shape"),
    ('[{"image_id": 1}]', "lacks 'image_id' or a string 'caption'"),
])
def test_score_bad_prediction_files(run_cli, tmp_path, content, fragment):
    path = tmp_path / "p.json"
    path.write_text(content)
    refs = write_karpathy(tmp_path, "coco")
    code, _, err = run_cli("score", "--predictions", str(path), "--references", str(refs))
    _one_line_error(code, err, fragment)


def test_score_predictions_for_unknown_images(run_cli, tmp_path):
    refs = write_karpathy(tmp_path, "coco")
    path = tmp_path / "p.json"
    path.write_text(json.dumps([{"image_id": 1000, "caption": "x"}, {"image_id": 424242, "caption": "y"}]))
    code, _, err = run_cli("score", "--predictions", str(path), "--references", str(refs))
    _one_line_error(code, err, "1 of 2 predictions are for images with no references", "424242")


@pytest.mark.parametrize("refs_content, fragment", [
    ('{"images": [{"file": 1}]}', "unknown shape"),
    ('{"images": [{"filename": "a.jpg"}, {"sentences": []}]}', "unknown shape"),
    ('[{"image_name": "a.jpg", "captions": "not a list"}]', "lacks 'image_name'"),
    ('{"images": [], "annotations": [{"id": 1}]}', "need 'image_id' and 'caption'"),
    ('[1, 2, 3]', "unknown shape"),
])
def test_score_annotation_file_of_wrong_shape(run_cli, tmp_path, refs_content, fragment):
    preds = tmp_path / "p.json"
    preds.write_text(json.dumps([{"image_id": 1, "caption": "x"}]))
    refs = tmp_path / "refs.json"
    refs.write_text(refs_content)
    code, _, err = run_cli("score", "--predictions", str(preds), "--references", str(refs))
    _one_line_error(code, err, fragment)


def test_score_needs_references_somewhere(run_cli, tmp_path):
    preds = tmp_path / "p.json"
    preds.write_text(json.dumps([{"image_id": 1, "caption": "x"}]))
    code, _, err = run_cli("score", "--predictions", str(preds))
    _one_line_error(code, err, "pass --references")
    code, _, err = run_cli("score", "--predictions", str(tmp_path / "missing.json"))
    _one_line_error(code, err, "does not exist")


def test_sigterm_ends_a_command_as_ctrl_c_does(monkeypatch, capsys):
    """A scheduler's time limit sends SIGTERM: the command stops through the interrupt path
    (workers stopped, finished work kept, one line) with the shell's code for SIGTERM, and the
    process's own SIGTERM handling is restored afterwards."""
    import os
    import signal
    import time

    from bench import cli

    def killed(args):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(10)  # the handler raises before this ends
        return 0

    before = signal.getsignal(signal.SIGTERM)
    monkeypatch.setitem(cli.COMMANDS, "ls", killed)
    assert cli.main(["ls"]) == 143  # 0 had the signal not ended the command
    assert capsys.readouterr().err.strip() == "bench ls: terminated; completed work is kept"
    assert signal.getsignal(signal.SIGTERM) == before
