"""benchmarks/gap_walk.py: decoding inputs moved from a caption's embedding to its image's."""


import numpy as np
import pytest

from bench.grid import RunConfig, build_grid
from bench.records import RecordStore, read_records
from bench.runner import Runner
from tests.conftest import TINY_DECODER
from tests.fixtures import load_benchmark


def _module():
    return load_benchmark("gap_walk")


def test_walk_inputs_are_unit_rows_from_the_caption_to_the_image():
    walk_inputs = _module().walk_inputs
    rng = np.random.default_rng(0)
    h, x = rng.normal(size=(5, 8)) * 3, rng.normal(size=(5, 8))
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    assert np.allclose(walk_inputs(h, x, 0.0), unit(h), atol=1e-6)
    assert np.allclose(walk_inputs(h, x, 1.0), unit(x), atol=1e-6)
    mid = walk_inputs(h, x, 0.5)
    assert np.allclose(np.linalg.norm(mid, axis=1), 1.0, atol=1e-6)
    # halfway between the unit vectors, not between the raw ones (h is three times as long)
    assert np.allclose(mid, unit(unit(h) + unit(x)), atol=1e-6)


def test_kept_inputs_lose_only_the_directions_the_captions_do_not_vary_in():
    module = _module()
    rng = np.random.default_rng(1)
    rotation, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    mean = np.array([2.0, 0, 0, 0, 0, 0]) @ rotation.T
    # captions vary a lot along the rotation's first column, less along its second (uncorrelated), not at all else
    angle = np.linspace(0, 2 * np.pi, 400, endpoint=False)[:, None]
    texts = mean + 3 * np.cos(angle) * rotation[:, 0] + np.sin(angle) * rotation[:, 1]
    found_mean, basis, variances = module.principal_directions(texts, 2, chunk=7)  # chunks of 7: the same as one
    assert np.allclose(variances, [4.5, 0.5, 0, 0, 0, 0], atol=1e-9)
    assert np.allclose(found_mean, texts.mean(axis=0))
    assert abs(abs(basis[:, 0] @ rotation[:, 0]) - 1) < 1e-6 and abs(abs(basis[:, 1] @ rotation[:, 1]) - 1) < 1e-6
    along, across = 0.7 * rotation[:, 0] - 0.4 * rotation[:, 1], 0.9 * rotation[:, 3] + 0.2 * rotation[:, 5]
    image = (found_mean + along + across)[None]
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    assert np.allclose(module.keep_inputs(image, found_mean, basis), unit((found_mean + along)[None]), atol=1e-6)
    assert np.allclose(module.keep_inputs(image, found_mean, basis[:, :1]), unit((found_mean + 0.7 * rotation[:, 0])[None]), atol=1e-6)
    captions_kept, image_kept = module.kept_shares(variances, image, found_mean, basis)
    assert captions_kept == pytest.approx(1.0) and image_kept == pytest.approx(0.65 / 1.5)
    assert module.kept_shares(variances, image, found_mean, basis[:, :1]) == pytest.approx((0.9, 0.49 / 1.5))
    everything = module.principal_directions(texts, 6)[1]
    assert np.allclose(module.keep_inputs(image, found_mean, everything), unit(image), atol=1e-6)


@pytest.fixture(scope="module")
def two_seed_run(tmp_path_factory, tiny_clip_checkpoint, tiny_datasets):
    tmp = tmp_path_factory.mktemp("walk")
    options = {f"decoder.{k}": v for k, v in TINY_DECODER["decoder"].items()}
    run = RunConfig(methods=("nonoise",), splits=("tiny-coco",), seeds=(0, 1), out=tmp / "run",
                    cache_dir=tmp / "cache", encoder=tiny_clip_checkpoint, method_options=options)
    Runner(run, log=lambda m: None).execute(build_grid(run))
    return run


def test_the_walk_ends_at_the_runs_own_captions_and_scores_without_the_input_caption(two_seed_run, tiny_datasets):
    from bench.plugins import create_dataset
    from bench.scoring import score

    module = _module()
    result = module.walk(two_seed_run.out, "nonoise", "tiny-coco", [0.0, 1.0])
    assert sorted(result.cider) == [0, 1] and all(len(v) == 2 for v in result.cider.values())
    items = create_dataset("tiny-coco").load("test").items
    others = {item.image_id: list(item.captions[1:]) for item in items}
    store = RecordStore(two_seed_run.out)
    for record in read_records(two_seed_run.out).records:
        stored = {s["image_id"]: s["prediction"] for s in store.samples(record.cell_id)}
        walked = dict(zip((item.image_id for item in items), result.predictions[(record.seed, 1.0)]))
        assert walked == stored  # t = 1 decodes what the cell decoded, with the cell's own fit
        expected = score(stored, others, spice=False).metrics["cider"]
        assert result.cider[record.seed][1] == pytest.approx(expected, abs=1e-6)


def test_keeping_every_direction_is_the_runs_own_cell(two_seed_run, tiny_datasets):
    from bench.plugins import create_dataset

    module = _module()
    items = create_dataset("tiny-coco").load("test").items
    dim = module._run_inputs(two_seed_run.out, None, lambda m: None).eval_images("tiny-coco").embeddings.shape[1]
    result = module.keep(two_seed_run.out, "nonoise", "tiny-coco", [1, dim])
    store = RecordStore(two_seed_run.out)
    records = read_records(two_seed_run.out).records
    assert sorted(result.cider) == sorted(r.seed for r in records) == [0, 1]
    for record in records:
        stored = {s["image_id"]: s["prediction"] for s in store.samples(record.cell_id)}
        kept_all = dict(zip((item.image_id for item in items), result.predictions[(record.seed, float(dim))]))
        assert kept_all == stored  # scored against all the references, as the cell was
        assert result.cider[record.seed][1] == pytest.approx(record.metrics["cider"], abs=1e-4)
        assert len(result.predictions[(record.seed, 1.0)]) == len(items)


@pytest.mark.parametrize("argv, fragment", [
    (["--keep", "a"], "--keep must be whole numbers"),
    (["--keep", "0,4"], "each must be at least 1"),
    (["--keep", "100000"], "the embeddings have only"),
    (["--keep", "4", "--steps", "0,1"], "give one of them"),
    (["--steps", "0,1.5"], "every step must lie in [0, 1]"),
    (["--steps", "a"], "--steps must be numbers"),
    (["--method", "decap"], "has no fitted decap cell trained and tested on tiny-coco"),
])
def test_bad_input_is_one_line_and_exit_2(two_seed_run, tiny_datasets, capsys, argv, fragment):
    code = _module().main([str(two_seed_run.out), "--dataset", "tiny-coco", *argv])
    err = capsys.readouterr().err
    assert code == 2 and fragment in err and len(err.strip().splitlines()) == 1


def test_a_folder_without_a_run_is_refused(tmp_path, capsys):
    assert _module().main([str(tmp_path)]) == 2
    assert "is not a run folder" in capsys.readouterr().err


@pytest.mark.parametrize("content", ["{}", "[1]", "not json", '{"run_config": {"encoder": 5, "cache_dir": "c"}}'])
def test_a_run_json_that_is_not_a_runs_is_one_line_and_exit_2(tmp_path, capsys, content):
    (tmp_path / "run.json").write_text(content)
    assert _module().main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "run.json" in err and len(err.strip().splitlines()) == 1
