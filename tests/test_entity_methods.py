"""ViECap and IFCap: entities, hard prompts with masking, image-like retrieval, and that each
config switch changes only what it names (spied on what reaches the decoder)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.captioner import Corpus, TrainingData
from bench.entities import (
    EntityMatcher,
    EntityPrompts,
    classify,
    entity_vocabulary,
    hard_prompt,
    mask_entities,
)
from bench.errors import BenchError, ConfigError
from bench.noise import inject_noise
from bench.plugins import METHODS, create_method, load_plugins, method_config
from bench.retrieval import nearest
from tests.conftest import TINY_DECODER

load_plugins()

TINY = {"decoder": {**TINY_DECODER["decoder"], "epochs": 4}}


# -- entities ---------------------------------------------------------------------------------

def test_matcher_finds_words_plurals_and_aliases_in_order():
    m = EntityMatcher(["circle", "square", "person", "cell phone"], {"dot": "circle", "box": "square", "man": "person"})
    assert m("Two boxes beside a red dot.") == ["square", "circle"]
    assert m("a man holds a cell phone next to a circle") == ["person", "cell phone", "circle"]
    assert m.occurrences("a circle, a circle and a dot") == ["circle", "circle", "circle"]
    assert m("nothing here") == [] and hard_prompt([]) == "There are something in image."
    assert hard_prompt(["circle", "square"]) == "There are circle, square in image."
    with pytest.raises(BenchError, match="entity vocabulary is empty"):
        EntityMatcher([" ", ""])


def test_only_regular_plurals_match():
    from bench.vocabularies import COCO_ALIASES, COCO_OBJECTS

    m = EntityMatcher(COCO_OBJECTS, COCO_ALIASES)
    assert m("clear skies over the manes of horses while nobody cares") == ["horse"]
    assert m("two buses, three babies and some skis") == ["bus", "person", "skis"]
    assert m("a man and two women on bikes") == ["person", "bicycle"]


def test_an_empty_vocabulary_is_refused_before_training():
    with pytest.raises(BenchError, match="vocabulary is empty"):
        entity_vocabulary((), (), "mydata", "viecap")
    with pytest.raises(BenchError, match="viecap.vocabulary"):
        METHODS.get("viecap").check_training(method_config("viecap", {}), TrainingData("mydata", (), 100))
    # the captions given: one that names a word (through an alias) is enough, none is refused
    data = TrainingData("d", ("cat",), 3, texts=("a dog", "two kittens", "a tree"), aliases=(("kitten", "cat"),))
    for name in ("viecap", "ifcap"):
        METHODS.get(name).check_training(method_config(name, {"k": 1, "filter_l": 2} if name == "ifcap" else {}), data)
        with pytest.raises(BenchError, match=f"none of the 3 training captions names a word.*check {name}.vocabulary"):
            METHODS.get(name).check_training(method_config(name, {"k": 1, "filter_l": 2} if name == "ifcap" else {}),
                                             TrainingData("d", ("cat",), 3, texts=("a dog", "two kittens", "a tree")))
    assert entity_vocabulary((), ("cat", "dog"), "d", "viecap") == ("cat", "dog")
    assert entity_vocabulary(("bird",), ("cat",), "d", "viecap") == ("bird",)


@pytest.mark.parametrize("settings, fragment", [({"threshold": 1.5}, "threshold must be in [0, 1]"),
                                                ({"threshold": -0.1}, "threshold must be in [0, 1]"),
                                                ({"top_k": 0}, "top_k must be >= 1"),
                                                ({"mask_rate": 1.0}, "mask_rate must be in [0, 1)")])
def test_viecap_settings_out_of_range(settings, fragment):
    with pytest.raises(ConfigError, match=fragment.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        method_config("viecap", settings)


def test_ifcap_k_larger_than_the_corpus_is_refused():
    check = METHODS.get("ifcap").check_training
    with pytest.raises(BenchError, match="corpus holds 20"):
        check(method_config("ifcap", {"k": 50}), TrainingData("d", ("cat",), 20))
    with pytest.raises(BenchError, match="corpus holds 20"):  # a caption never retrieves itself: 19 others
        check(method_config("ifcap", {"k": 20}), TrainingData("d", ("cat",), 20))
    check(method_config("ifcap", {"k": 19, "filter_l": 20}), TrainingData("d", ("cat",), 20))


def test_masking_rate_is_respected_statistically():
    """Each entity is kept with probability 1 - rate, independently, afresh on every draw."""
    rng = np.random.default_rng(0)
    entities = ["a", "b", "c", "d"]
    for rate in (0.0, 0.4, 0.8):
        kept = np.array([[e in mask_entities(entities, rate, rng) for e in entities] for _ in range(5000)])
        n = kept.size
        sd = (rate * (1 - rate) / n) ** 0.5
        assert abs((1 - kept.mean()) - rate) <= 4 * sd + 1e-12, (rate, kept.mean())
        if 0 < rate:  # independent per entity: the pairwise correlation is near 0
            assert abs(np.corrcoef(kept[:, 0], kept[:, 1])[0, 1]) < 0.05


def test_training_prompts_mask_each_draw_through_the_decoder_vocabulary():
    class Vocab:
        def encode(self, text):
            return text.split()

    class Decoder:
        vocab = Vocab()

    prompts = EntityPrompts()
    prompts.prepare_prompts(["a circle and a square and a star"] * 2, ["circle", "square", "star"])
    draw = prompts.training_prompts(Decoder(), 0.4, seed=3)
    counts = []
    for _ in range(3000):
        words = draw([0, 1], None)
        assert all(w[:2] == ["There", "are"] and w[-2:] == ["in", "image."] for w in words)
        counts += [sum(e.strip(",") in ("circle", "square", "star") for e in w) for w in words]
    # 3 entities kept at 0.6 each: mean 1.8, binomial sd over 6000 draws
    assert abs(np.mean(counts) - 1.8) < 4 * (3 * 0.4 * 0.6 / len(counts)) ** 0.5
    again = EntityPrompts()
    again.prepare_prompts(["a circle and a square and a star"] * 2, ["circle", "square", "star"])
    first = [prompts.training_prompts(Decoder(), 0.4, seed=3)([0, 1], None) for _ in range(5)]
    assert first == [again.training_prompts(Decoder(), 0.4, seed=3)([0, 1], None) for _ in range(5)]  # seeded


def test_classify_takes_the_top_k_above_the_threshold_in_rank_order():
    vocab = ["a", "b", "c"]
    emb = np.eye(3, dtype=np.float32)
    image = np.array([[1.0, 0.99, 0.0], [0.0, 0.97, 1.0]], np.float32)
    # logits 100 x cosine: image 0 is split between a and b (0.73 / 0.27); image 1 is mostly c (0.95)
    assert classify(image, emb, vocab, top_k=3, threshold=0.0) == [["a", "b", "c"], ["c", "b", "a"]]
    assert classify(image, emb, vocab, top_k=3, threshold=0.4) == [["a"], ["c"]]
    assert classify(image, emb, vocab, top_k=1, threshold=0.0) == [["a"], ["c"]]
    assert classify(image, emb, vocab, top_k=3, threshold=1.0) == [[], []]


# -- image-like retrieval ---------------------------------------------------------------------

def test_nearest_matches_brute_force_across_chunks_and_excludes_self():
    rng = np.random.default_rng(1)
    memory = rng.normal(size=(53, 8)).astype(np.float32)
    memory /= np.linalg.norm(memory, axis=1, keepdims=True)
    queries = inject_noise(torch.from_numpy(memory), 0.04, torch.Generator().manual_seed(0)).numpy()
    sims = queries @ memory.T
    np.fill_diagonal(sims, -np.inf)
    expected = np.argsort(-sims, axis=1, kind="stable")[:, :5]
    got = nearest(queries, memory, 5, exclude_self=True, query_batch=7, memory_chunk=11)
    assert (got == expected).all()
    assert not (got == np.arange(53)[:, None]).any()
    plain = nearest(queries, memory, 5, query_batch=7, memory_chunk=11)
    assert (plain == np.argsort(-(queries @ memory.T), axis=1, kind="stable")[:, :5]).all()
    with pytest.raises(BenchError, match="cannot retrieve 53"):
        nearest(queries, memory, 53, exclude_self=True)


# -- switches, spied on what reaches the decoder ------------------------------------------------

@pytest.fixture
def spy(monkeypatch):
    """Records the keyword arguments of every decoder fit and every decode call."""
    import bench.decoders.fit_cache as fit_cache
    from bench.decoders.model import CaptionDecoder

    calls = {"fit": [], "decode": []}
    real_fit, real_decode = fit_cache.fit_decoder, CaptionDecoder.decode

    def fit_decoder(config, captions, embeddings, ctx, **kw):
        calls["fit"].append({"embeddings": np.array(embeddings), **kw})
        return real_fit(config, captions, embeddings, ctx, **kw)

    def decode(self, embeddings, *args, **kw):
        calls["decode"].append({"embeddings": np.array(embeddings), **kw})
        return real_decode(self, embeddings, *args, **kw)

    monkeypatch.setattr(fit_cache, "fit_decoder", fit_decoder)
    monkeypatch.setattr(CaptionDecoder, "decode", decode)
    return calls


def _run(name, settings, world_context):
    corpus, context, queries = world_context
    corpus = Corpus(corpus.captions, corpus.embeddings, corpus.dataset, objects=corpus.objects, aliases={"dot": "circle"})
    method = create_method(name, method_config(name, {**TINY, **settings}))
    method.fit(corpus, context())
    method.caption(queries)
    return method


def _prompt_draws(fit_call, method, n=50):
    draw = fit_call["prompts"](method.decoder, 0)
    return [tuple(map(tuple, draw(np.arange(8), None))) for _ in range(n)]


def test_viecap_hard_prompt_switch_changes_only_the_prompts(spy, world_context):
    on = _run("viecap", {}, world_context)
    off = _run("viecap", {"hard_prompt": False}, world_context)
    fit_on, fit_off = spy["fit"]
    dec_on, dec_off = spy["decode"]
    assert fit_on["prompts"] is not None and fit_off["prompts"] is None and fit_off["extra_texts"] == ()
    assert dec_on["prompts"] is not None and dec_off["prompts"] is None
    assert np.array_equal(fit_on["embeddings"], fit_off["embeddings"]) and np.array_equal(dec_on["embeddings"], dec_off["embeddings"])
    assert fit_on["transform_id"] == fit_off["transform_id"]  # the noise is the same
    assert on.fit_info["captions_with_entities"] > 0.9 and off.decoder.prompt_room == 0 < on.decoder.prompt_room


def test_viecap_noise_changes_only_the_transform(spy, world_context):
    _run("viecap", {"noise_variance": 0.0}, world_context)
    _run("viecap", {"noise_variance": 0.016}, world_context)
    quiet, noisy = spy["fit"]
    assert quiet["transform"] is None and noisy["transform_id"] == "capdec-noise:0.016"
    assert quiet["prompt_id"] == noisy["prompt_id"] and np.array_equal(quiet["embeddings"], noisy["embeddings"])
    assert spy["decode"][0]["prompts"] == spy["decode"][1]["prompts"]  # the same entities at test time


def test_viecap_mask_rate_changes_only_the_training_prompts(spy, world_context):
    zero = _run("viecap", {"mask_rate": 0.0}, world_context)
    high = _run("viecap", {"mask_rate": 0.9}, world_context)
    fit_zero, fit_high = spy["fit"]
    assert fit_zero["prompt_id"] != fit_high["prompt_id"] and fit_zero["transform_id"] == fit_high["transform_id"]
    whole = _prompt_draws(fit_zero, zero)
    assert len(set(whole)) == 1  # nothing masked: every draw is the caption's whole entity list
    masked = _prompt_draws(fit_high, high)
    assert len(set(masked)) > 1 and sum(map(len, masked[0])) < sum(map(len, whole[0]))
    assert spy["decode"][0]["prompts"] == spy["decode"][1]["prompts"]  # test-time entities do not depend on it


def test_viecap_top_k_and_threshold_change_only_the_test_prompts(spy, world_context):
    base = _run("viecap", {"top_k": 3, "threshold": 0.0}, world_context)
    _run("viecap", {"top_k": 1, "threshold": 0.0}, world_context)
    _run("viecap", {"top_k": 3, "threshold": 1.0}, world_context)
    assert len({c["prompt_id"] for c in spy["fit"]}) == 1  # training is the same fit
    three, one, none = (c["prompts"] for c in spy["decode"])
    blank = base.encode_prompts(base.decoder, [[]])[0]
    assert all(p == blank for p in none)  # threshold 1: no entity passes; the prompt says "something"
    assert all(len(a) <= len(b) for a, b in zip(one, three)) and one != three
    assert np.array_equal(spy["decode"][0]["embeddings"], spy["decode"][1]["embeddings"])


def test_ifcap_retrieves_with_the_noised_text_and_k_changes_only_the_retrieval(spy, world_context):
    corpus, _, queries = world_context
    method = _run("ifcap", {"k": 3, "retrieval_noise": 0.04}, world_context)
    _run("ifcap", {"k": 5, "retrieval_noise": 0.04}, world_context)
    k3, k5 = spy["fit"]
    memory = k3["embeddings"]
    noised = inject_noise(torch.from_numpy(memory), 0.04, torch.Generator().manual_seed(0)).numpy()
    assert (k3["tags"] == nearest(noised, memory, 3, exclude_self=True)).all()
    sims = noised @ memory.T  # the corpus repeats captions: compare similarities, ties may come in any order
    assert k5["tags"].shape[1] == 5
    assert np.allclose(np.take_along_axis(sims, k5["tags"][:, :3], 1), np.take_along_axis(sims, k3["tags"], 1))
    assert k3["prompt_id"] == k5["prompt_id"] and k3["transform_id"] == k5["transform_id"]
    d3, d5 = spy["decode"]
    image_neighbours = nearest(np.asarray(queries) / np.linalg.norm(queries, axis=1, keepdims=True), memory, 9)
    assert (d3["tags"] == image_neighbours[:, :3]).all() and (d5["tags"] == image_neighbours[:, :5]).all()
    assert np.array_equal(d3["embeddings"], d5["embeddings"])
    assert d3["prompts"] == d5["prompts"]  # entity filtering reads filter_l neighbours, not k
    assert method.memory.shape == memory.shape


def test_ifcap_filtering_keeps_entities_named_often_enough(world_context):
    method = create_method("ifcap", method_config("ifcap", {"filter_l": 4, "filter_k": 3}))
    method.memory_entities = [["circle"], ["circle", "square"], ["circle", "circle"], ["square"], ["star"]]
    assert method.filtered_entities(np.array([[0, 1, 2, 3], [1, 3, 4, 0], [4, 4, 4, 3]])) == [["circle"], [], ["star"]]


def test_run_on_data_without_object_words_is_one_line_exit_2(run_cli, tmp_path, monkeypatch):
    """A dataset that names no object words and no --set viecap.vocabulary: refused before the
    encoder loads."""
    import bench.encoders

    def no_encoder(*args, **kwargs):
        raise AssertionError("the encoder was loaded before the vocabulary was checked")

    monkeypatch.setattr(bench.encoders, "create_encoder", no_encoder)
    from bench.plugins.datasets.karpathy import KarpathyDataset

    from bench.plugins import DATASETS
    from tests.fixtures import karpathy_images, write_images, write_karpathy

    class Plain(KarpathyDataset):
        name = folder = "plaincaps"
        object_vocabulary = ()

    if "plaincaps" not in DATASETS:
        DATASETS.register("plaincaps", Plain, style=None)
    images = karpathy_images()
    write_karpathy(tmp_path / "data", "plaincaps", images)
    write_images(tmp_path / "data", images, "plaincaps")
    monkeypatch.setenv("TEXTCAP_BENCH_CACHE", str(tmp_path / "cache"))
    for method in ("viecap", "ifcap"):
        code, _, err = run_cli("run", "--methods", method, "--split", "plaincaps", "--data-root", str(tmp_path / "data"),
                               "--out", str(tmp_path / "run"))
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert "entity vocabulary is empty" in err and f"--set {method}.vocabulary" in err
        # a vocabulary that no training caption names, or with nothing to match: the same, before the encoder
        for words, fragment in (("zebra,unicorn", "training captions names a word of the entity vocabulary"), ("-,?", "has letters")):
            code, _, err = run_cli("run", "--methods", method, "--split", "plaincaps", "--data-root", str(tmp_path / "data"),
                                   "--out", str(tmp_path / "run"), "--set", f"{method}.vocabulary={words}")
            assert code == 2 and len(err.strip().splitlines()) == 1 and fragment in err, err


def test_full_preset_adds_viecap_and_ifcap_with_their_ablations():
    from bench.grid import ABLATION_SPLITS, DEFAULT_SEEDS, DEFAULT_SPLITS, RunConfig, build_grid

    default = build_grid(RunConfig())
    full = build_grid(RunConfig(preset="full"))
    assert not any(c.method in ("viecap", "ifcap") for c in default)
    assert set(default) <= set(full)
    for method in ("viecap", "ifcap"):
        main = [c for c in full if c.method == method and c.role == "main"]
        assert {(str(c.split), c.seed) for c in main} == {(s, seed) for s in DEFAULT_SPLITS for seed in DEFAULT_SEEDS}
    hard = {(str(c.split), c.config.hard_prompt) for c in full if c.method == "viecap" and c.seed == 0}
    assert hard == {(s, v) for s in ABLATION_SPLITS for v in (True, False)} | {("shapes-romantic", True)}
    ks = {c.config.k for c in full if c.method == "ifcap" and c.role == "ablation"}
    assert ks == {1, 3, 9}  # k = 5 is the main cell itself
    with pytest.raises(ConfigError, match="unknown preset"):
        RunConfig(preset="huge")
    with pytest.raises(ConfigError, match="leave out --methods"):
        RunConfig(preset="full", methods=("clipre",))


def test_a_prompt_longer_than_the_decoders_room_is_one_clear_error(world_context):
    method = _run("viecap", {}, world_context)
    _, _, queries = world_context
    room = method.decoder.prompt_room
    ok = method.decoder.decode(queries, prompts=[[1] * room] * len(queries))  # exactly the room: decodes
    assert len(ok) == len(queries)
    with pytest.raises(BenchError, match=f"does not fit the decoder's {room} positions"):
        method.decoder.decode(queries, prompts=[[1] * (room + 1)] * len(queries))
    plain = _run("viecap", {"hard_prompt": False}, world_context)
    with pytest.raises(BenchError, match="trained without prompts"):
        plain.decoder.decode(queries, prompts=[[1]] * len(queries))
    with pytest.raises(ConfigError, match="at most 10"):
        method_config("viecap", {"top_k": 11})


def test_mapper_layers_is_a_setting_of_the_transformer_mapper_and_keeps_old_ids():
    from bench.config import config_dict
    from bench.decoders import DecoderConfig, preset

    assert "mapper_layers" not in config_dict(DecoderConfig())  # at its default: ids and fit keys as before
    assert config_dict(preset("viecap"))["mapper_layers"] == 8
    with pytest.raises(ConfigError, match="mapper_layers"):
        DecoderConfig(mapper="mlp", mapper_layers=4)
    from bench.decoders.mappers import build_mapper

    deep = build_mapper("transformer", 16, 32, 2, 32, layers=8)
    assert len(deep.transformer.layers) == 8


@pytest.mark.parametrize("name", ["viecap", "ifcap"])
def test_prompted_methods_with_a_gpt2_decoder_save_and_load(name, world_context, tmp_path):
    """The GPT-2 decoder (from config, random weights) takes prompts too: fit, caption, reload."""
    corpus, context, queries = world_context
    gpt2 = {"decoder": {"kind": "gpt2", "layers": 1, "heads": 2, "width": 32, "prefix_length": 2, "mapper": "transformer",
                        "mapper_layers": 1, "epochs": 2, "batch_size": 16, "warmup": 2, "lr": 3e-3, "max_length": 24,
                        "dropout": 0.0}}
    method = create_method(name, method_config(name, gpt2))
    method.fit(corpus, context())
    captions = method.caption(queries)
    assert len(captions) == len(queries) and method.decoder.prompt_room > 0
    method.save(tmp_path / name)
    again = type(method).load(tmp_path / name)
    assert again.caption(queries) == captions


def test_words_of_any_script_match_and_a_vocabulary_that_matches_nothing_is_refused(world_context):
    assert EntityMatcher(["café", "t-shirt"])("Un café and two T-shirts") == ["café", "t-shirt"]
    # a word without letters matches nothing, its plural neither ("42s" would be the "s" of "it's")
    assert EntityMatcher(["42", "cat"], {"9": "cat"})("it's a cat, 42 9s") == ["cat"]
    corpus, context, _ = world_context
    method = create_method("viecap", method_config("viecap", {**TINY, "vocabulary": ("zebra", "ü")}))
    with pytest.raises(BenchError, match="none of the .* training captions names a word"):
        method.fit(corpus, context())
    assert entity_vocabulary(("Circle", "square"), (), "d", "viecap") == ("circle", "square")


def test_fusion_heads_that_do_not_divide_the_width_are_refused_once_the_encoder_is_known(tmp_path, tiny_clip_checkpoint,
                                                                                      tiny_datasets):
    from bench.grid import build_grid
    from bench.runner import Runner
    from tests.test_runner import tiny_run

    run = tiny_run(tmp_path, tiny_clip_checkpoint, methods=("ifcap",), splits=("tiny-coco",), method_options={},
                   sweep={})
    run = type(run)(**{**run.__dict__, "method_options": {"ifcap.fusion_heads": 3}})
    with pytest.raises(BenchError, match="fusion_heads = 3 does not divide the encoder's embedding width 32"):
        Runner(run, log=lambda m: None).resolve(build_grid(run))
    assert not (tmp_path / "run" / "records.jsonl").exists()


def test_viecap_ensemble_changes_only_the_entity_embeddings(spy, world_context):
    single = _run("viecap", {"ensemble": False}, world_context)
    ensembled = _run("viecap", {"ensemble": True}, world_context)
    a, b = spy["fit"]
    assert a["prompt_id"] == b["prompt_id"] and a["transform_id"] == b["transform_id"]
    assert np.array_equal(a["embeddings"], b["embeddings"])
    assert single.vocab_emb.shape == ensembled.vocab_emb.shape and not np.allclose(single.vocab_emb, ensembled.vocab_emb)
    assert np.array_equal(spy["decode"][0]["embeddings"], spy["decode"][1]["embeddings"])


def test_ifcap_retrieval_noise_changes_only_the_retrieved_captions_and_filter_k_only_the_test_prompts(spy, world_context):
    _run("ifcap", {"retrieval_noise": 0.0}, world_context)
    _run("ifcap", {"retrieval_noise": 0.5}, world_context)
    _run("ifcap", {"filter_k": 1}, world_context)
    clean, noisy, loose = spy["fit"]
    memory = clean["embeddings"]
    assert (clean["tags"] == nearest(memory, memory, 5, exclude_self=True)).all()  # σ² 0: the plain neighbours
    assert not (clean["tags"] == noisy["tags"]).all()
    assert clean["prompt_id"] == noisy["prompt_id"] == loose["prompt_id"] and clean["transform_id"] == noisy["transform_id"]
    d_clean, d_noisy, d_loose = spy["decode"]
    assert (d_clean["tags"] == d_noisy["tags"]).all() and d_clean["prompts"] == d_noisy["prompts"]  # test time: the image queries
    assert (d_clean["tags"] == d_loose["tags"]).all()
    assert all(len(a) >= len(b) for a, b in zip(d_loose["prompts"], d_clean["prompts"]))  # filter_k 1 keeps more entities
    assert d_loose["prompts"] != d_clean["prompts"]


def test_a_setting_an_ablated_switch_turns_off_leaves_the_off_cells_and_beside_a_fixed_off_switch_is_refused():
    """``--preset full --set viecap.top_k=5``: the hard-prompt-off ablation row does not use top_k, so that row
    runs without it (its config is the plain off cell's), not the whole run refused; set beside a switch that is
    off in every cell, the setting would do nothing anywhere and is refused."""
    from bench.grid import RunConfig, build_grid

    full = build_grid(RunConfig(preset="full", method_options={"viecap.top_k": 5, "syntic.tau": 0.05, "syntic.opt_lr": 1e-4}))
    viecap = [c for c in full if c.method == "viecap"]
    assert {c.config.top_k for c in viecap if c.config.hard_prompt} == {5}
    assert {c.config.top_k for c in viecap if not c.config.hard_prompt} == {3}  # the default: the prompt is off
    from bench.runner import _unused_extra

    assert {tuple(_unused_extra(c).get("unused_settings", ())) for c in viecap} == {
        (), ("ensemble", "mask_rate", "threshold", "top_k", "vocabulary")}  # what the record says, for the report
    syntic = [c for c in full if c.method == "syntic"]
    off = {c.config.auxiliary: _unused_extra(c).get("unused_settings", []) for c in syntic if c.config.optimise and c.config.project}
    assert "fusion_heads" in off[False] and "tagger.top_k" in off[False] and off[True] == []
    assert {(c.config.project, c.config.tau) for c in syntic} == {(True, 0.05), (False, None)}
    assert {(c.config.optimise, c.config.opt_lr) for c in syntic} == {(True, 1e-4), (False, 1e-5)}
    assert len(syntic) == len(set(syntic)) == len([c for c in build_grid(RunConfig(preset="full")) if c.method == "syntic"])
    # the switch swept beside the setting: the off cells are one cell, not three copies; the
    # switch's values as a user writes them ("off", 0) are off too
    for values in ([True, False], ["on", "off"], [1, 0]):
        cells = build_grid(RunConfig(methods=("viecap",), splits=("shapes-coco",),
                                     sweep={"viecap.hard_prompt": values, "viecap.top_k": [1, 3, 5]}))
        assert sorted((c.config.hard_prompt, c.config.top_k) for c in cells) == [(False, 3), (True, 1), (True, 3), (True, 5)]
    (off,) = [c for c in build_grid(RunConfig(methods=("syntic",), splits=("shapes-coco",), sweep={"syntic.project": ["1", "0"]},
                                              method_options={"syntic.tau": 0.05})) if not c.config.project]
    assert off.config.tau is None
    with pytest.raises(ConfigError, match=r"viecap.top_k is unused with viecap.hard_prompt=false"):
        build_grid(RunConfig(methods=("viecap",), splits=("shapes-coco",),
                             method_options={"viecap.hard_prompt": False, "viecap.top_k": 5}))
    for method, settings, unused in (("ifcap", {"hard_prompt": False, "filter_k": 2}, "filter_k"),
                                     ("syntic", {"project": False, "memory_size": 10}, "memory_size"),
                                     ("syntic", {"auxiliary": False, "tagger": {"top_k": 2}}, "tagger"),
                                     ("syntic", {"optimise": False, "opt_epochs": 2.0}, "opt_epochs")):
        with pytest.raises(ConfigError, match=rf"{method}.{unused} is unused with {method}.\w+=false"):
            method_config(method, settings)
