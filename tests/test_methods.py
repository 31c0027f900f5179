"""The contract every registered method must meet, and the building blocks of the first methods."""

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from bench.captioner import Corpus, FitContext
from bench.errors import ConfigError
from bench.noise import inject_noise
from bench.plugins import METHODS, create_method, load_plugins, method_config
from tests.conftest import TINY_DECODER
from tests.fixtures import CAPTIONS

load_plugins()


def tiny_corpus(dim=16, seed=0):
    """Six captions repeated with variations; embeddings are random but fixed per caption."""
    rng = np.random.default_rng(seed)
    base = {c: rng.normal(size=dim) for c in CAPTIONS}
    captions = [c for c in CAPTIONS for _ in range(4)]
    emb = np.stack([base[c] + 0.05 * rng.normal(size=dim) for c in captions]).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return Corpus(captions, emb, "tiny", "train"), base


def tiny_config(name):
    fields = {f.name for f in dataclasses.fields(METHODS.get(name).Config)}
    return method_config(name, {k: v for k, v in TINY_DECODER.items() if k in fields})


@pytest.mark.parametrize("name", METHODS.list())
def test_every_method_meets_the_contract(name, tmp_path, world_context):
    corpus, context, queries = world_context
    method = create_method(name, tiny_config(name))
    method.fit(corpus, context())
    captions = method.caption(queries)
    assert isinstance(captions, list) and len(captions) == 3 and all(isinstance(c, str) for c in captions)
    assert method.caption(torch.from_numpy(queries)) == captions  # tensors and arrays alike
    assert method.caption_images(queries, [tmp_path / f"{i}.png" for i in range(3)]) == captions
    method.save(tmp_path / name)
    again = type(method).load(tmp_path / name)
    assert again.config == method.config
    assert again.caption(queries) == captions
    refit = create_method(name, tiny_config(name))
    refit.fit(corpus, context())
    assert refit.caption(queries) == captions  # deterministic for a seed


def test_nonoise_is_a_capdec_preset_not_a_class():
    assert METHODS.get("nonoise") is METHODS.get("capdec")
    assert create_method("nonoise").config.noise_variance == 0.0
    assert create_method("capdec").config.noise_variance == 0.016


def test_decoder_learns_the_tiny_corpus():
    corpus, base = tiny_corpus()
    method = create_method("nonoise", tiny_config("nonoise"))
    method.fit(corpus, FitContext(seed=0))
    queries = np.stack([base[c] for c in CAPTIONS]).astype(np.float32)
    hits = sum(p == c for p, c in zip(method.caption(queries), CAPTIONS))
    assert hits >= 4, method.caption(queries)
    assert method.fit_info["final_loss"] < method.fit_info["first_loss"]


def test_noise_injection_has_the_right_variance_and_unit_norm():
    d, n, var = 512, 4000, 0.016
    x = torch.nn.functional.normalize(torch.randn(n, d), dim=-1)
    z = inject_noise(x, var, torch.Generator().manual_seed(1))
    assert torch.allclose(z.norm(dim=-1), torch.ones(n), atol=1e-5)
    raw = torch.randn((n, d), generator=torch.Generator().manual_seed(1)) * var ** 0.5
    assert torch.allclose(z, torch.nn.functional.normalize(x + raw, dim=-1), atol=1e-6)
    assert raw.var().item() == pytest.approx(var, rel=0.02)
    # With noise of norm sqrt(d * var), the expected cosine to the clean vector is 1 / sqrt(1 + d * var).
    assert (z * x).sum(-1).mean().item() == pytest.approx(1 / (1 + d * var) ** 0.5, abs=0.01)
    assert torch.allclose(inject_noise(x, 0.0), x, atol=1e-6)  # σ² = 0: only the normalisation


def test_clipre_returns_training_captions_and_indexes_the_whole_corpus():
    corpus, base = tiny_corpus()
    method = create_method("clipre", method_config("clipre", {"image_batch_size": 2, "index_chunk_size": 5}))
    method.fit(corpus, FitContext())
    assert len(method.captions) == len(corpus) and method.memory.shape == (len(corpus), corpus.dim)
    assert method.captions == list(corpus.captions)  # every caption, once per occurrence, in order
    # Every corpus embedding retrieves itself, across image batches and index chunks.
    nearest = method.nearest(corpus.embeddings)
    assert list(nearest) == list(range(len(corpus)))
    queries = np.random.default_rng(3).normal(size=(7, corpus.dim)).astype(np.float32)
    assert set(method.caption(queries)) <= set(corpus.captions)


def test_nan_loss_stops_with_a_clear_error():
    from bench.decoders import NonFiniteLoss

    corpus, _ = tiny_corpus()
    bad = np.array(corpus.embeddings)
    bad[:] = np.nan
    method = create_method("nonoise", tiny_config("nonoise"))
    with pytest.raises(NonFiniteLoss, match="loss became nan"):
        method.fit(Corpus(corpus.captions, bad), FitContext())


def test_greedy_and_beam_search_agree_on_a_confident_model():
    corpus, base = tiny_corpus()
    method = create_method("nonoise", tiny_config("nonoise"))
    method.fit(corpus, FitContext(seed=0))
    queries = np.stack([base[c] for c in CAPTIONS]).astype(np.float32)
    greedy = method.decoder.decode(queries, beam_size=1)
    beam = method.decoder.decode(queries, beam_size=4)
    assert len(beam) == len(CAPTIONS)
    assert sum(g == b for g, b in zip(greedy, beam)) >= 4


def test_gpt2_decoder_from_a_local_folder(tmp_path):
    """The real loading path: from_pretrained(dir) on a tiny random GPT-2 saved by the test."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from bench.decoders.vocab import HFVocab

    corpus, base = tiny_corpus()
    vocab = HFVocab.train(corpus.captions, vocab_size=300)
    folder = tmp_path / "gpt2-tiny"
    GPT2LMHeadModel(GPT2Config(vocab_size=len(vocab), n_layer=1, n_head=2, n_embd=32, n_positions=64,
                               eos_token_id=vocab.eos, bos_token_id=vocab.eos)).save_pretrained(folder)
    vocab.tokenizer.save_pretrained(folder)
    overrides = {"decoder": {**TINY_DECODER["decoder"], "kind": "gpt2", "gpt2_path": str(folder), "prefix_length": 2,
                             "mapper": "mlp", "beam_size": 3, "epochs": 4}}
    method = create_method("capdec", method_config("capdec", overrides))
    method.fit(corpus, FitContext(seed=0))
    queries = np.stack([base[c] for c in CAPTIONS[:2]]).astype(np.float32)
    captions = method.caption(queries)
    assert len(captions) == 2 and all(isinstance(c, str) for c in captions)
    method.save(tmp_path / "fit")
    assert type(method).load(tmp_path / "fit").caption(queries) == captions


def test_gpt2_decoder_from_config_with_random_weights():
    corpus, base = tiny_corpus()
    overrides = {"decoder": {**TINY_DECODER["decoder"], "kind": "gpt2", "prefix_length": 2, "mapper": "transformer"}}
    method = create_method("capdec", method_config("capdec", overrides))
    method.fit(corpus, FitContext(seed=0))
    assert method.decoder.net.gpt.config.n_layer == 1
    assert len(method.caption(np.stack([base[CAPTIONS[0]]]).astype(np.float32))) == 1


def test_missing_gpt2_folder_is_one_line_error(tmp_path):
    from bench.errors import BenchError

    overrides = {"decoder": {**TINY_DECODER["decoder"], "kind": "gpt2", "gpt2_path": str(tmp_path / "nope")}}
    method = create_method("capdec", method_config("capdec", overrides))
    corpus, _ = tiny_corpus()
    with pytest.raises(BenchError, match="does not exist"):
        method.fit(corpus, FitContext())


def test_length_buckets_cover_every_item_once_and_cut_padding():
    from bench.decoders.batching import epoch_batches

    lengths = torch.randint(3, 30, (1000,), generator=torch.Generator().manual_seed(0))
    for pool in (1, 8):
        batches = epoch_batches(lengths, 32, torch.Generator().manual_seed(1), pool)
        assert sorted(torch.cat(batches).tolist()) == list(range(1000))
    padded = {pool: sum(int(lengths[b].max()) * len(b) for b in epoch_batches(lengths, 32, torch.Generator().manual_seed(1), pool))
              for pool in (1, 8)}
    assert padded[8] < 0.8 * padded[1]


def test_identical_decoder_fits_are_shared_between_methods(tmp_path):
    from bench.decoders.fit_cache import DecoderCache

    corpus, base = tiny_corpus()
    cache = DecoderCache(tmp_path / "decoders")
    context = lambda seed=0: FitContext(seed=seed, decoders=cache)  # noqa: E731
    nonoise = create_method("nonoise", tiny_config("nonoise"))
    nonoise.fit(corpus, context())
    decap = create_method("decap", tiny_config("decap"))
    decap.fit(corpus, context())
    assert not nonoise.fit_info["decoder_reused"] and decap.fit_info["decoder_reused"]
    assert decap.fit_info["decoder_key"] == nonoise.fit_info["decoder_key"]
    for a, b in zip(nonoise.decoder.net.state_dict().values(), decap.decoder.net.state_dict().values()):
        assert torch.equal(a, b)
    queries = np.stack([base[c] for c in CAPTIONS]).astype(np.float32)
    assert decap.decoder.decode(queries) == nonoise.decoder.decode(queries)
    # Anything the decoder sees makes another fit: noise, the seed, the decoder's settings.
    noisy = create_method("capdec", method_config("capdec", {**TINY_DECODER, "noise_variance": 0.01}))
    noisy.fit(corpus, context())
    other_seed = create_method("decap", tiny_config("decap"))
    other_seed.fit(corpus, context(seed=1))
    wider = create_method("decap", method_config("decap", {"decoder": {**TINY_DECODER["decoder"], "width": 48}}))
    wider.fit(corpus, context())
    assert not any(m.fit_info["decoder_reused"] for m in (noisy, other_seed, wider))
    assert len({m.fit_info["decoder_key"] for m in (nonoise, noisy, other_seed, wider)}) == 4
    # What only decoding reads does not: a wider beam reuses the fit, and decodes with its own beam.
    beam = create_method("decap", method_config("decap", {"decoder": {**TINY_DECODER["decoder"], "beam_size": 3,
                                                                      "length_penalty": 0.5, "decode_batch_size": 2}}))
    beam.fit(corpus, context())
    assert beam.fit_info["decoder_reused"] and beam.fit_info["decoder_key"] == nonoise.fit_info["decoder_key"]
    assert (beam.decoder.config.beam_size, beam.decoder.config.length_penalty, beam.decoder.config.decode_batch_size) == (3, 0.5, 2)
    for a, b in zip(nonoise.decoder.net.state_dict().values(), beam.decoder.net.state_dict().values()):
        assert torch.equal(a, b)
    # a beam wider than the vocabulary is refused on reuse as on a fresh fit, before the method is saved
    too_wide = create_method("decap", method_config("decap", {"decoder": {**TINY_DECODER["decoder"], "beam_size": 100_000}}))
    with pytest.raises(ConfigError, match=r"decoder.beam_size \(100000\) is larger than the decoder's vocabulary"):
        too_wide.fit(corpus, context())
    # A new run folder's cache finds the fit on disk.
    again = create_method("decap", method_config("decap", {**TINY_DECODER, "tau": 0.5}))
    torch.set_num_threads(torch.get_num_threads() + 1)  # reused in a process with other threads
    try:
        again.fit(corpus, FitContext(seed=0, decoders=DecoderCache(tmp_path / "decoders")))
    finally:
        torch.set_num_threads(torch.get_num_threads() - 1)
    assert again.fit_info["decoder_reused"] and again.decoder.decode(queries) == nonoise.decoder.decode(queries)
    # the fit's own threads and device travel with it
    assert again.fit_info["threads"] == nonoise.fit_info["threads"] and again.fit_info["device"] == "cpu"


def test_length_pieces_give_the_same_update_as_the_whole_batch():
    from bench.decoders import CaptionDecoder, DecoderConfig

    corpus, _ = tiny_corpus()
    nets = []
    for split in (1, 3):
        config = DecoderConfig(width=32, layers=1, heads=2, epochs=2, batch_size=len(corpus), warmup=1, dropout=0.0,
                               length_split=split)
        torch.manual_seed(0)
        decoder = CaptionDecoder(config, corpus.dim)
        encoded = decoder.build(corpus.captions)
        stats = decoder.fit(corpus.embeddings, encoded, seed=0, progress=None)
        nets.append((decoder.net.state_dict(), stats))
    (whole, whole_stats), (pieces, piece_stats) = nets
    assert piece_stats.tokens == whole_stats.tokens and piece_stats.final_loss == pytest.approx(whole_stats.final_loss, rel=1e-5)
    # The same gradients summed in another order differ in their last bits, and Adam's division
    # by the root of the squared gradients amplifies that where a gradient is small (the
    # zero-initialised mapper's first steps: up to 3e-6 here, 7e-7 with a random start); a
    # wrongly weighted piece moves a weight by about a step, lr = 2e-3.
    for name in whole:
        assert torch.allclose(whole[name], pieces[name], atol=1e-5), name


def test_the_moving_average_of_the_weights_replaces_them_after_the_same_training():
    """decoder.ema: training runs as without it (same losses), then each weight is its exponential
    moving average over the steps, with the decay ramped as (1 + t) / (10 + t) up to ema; at its
    default of 0 nothing changes and the setting stays out of config dicts (old keys hold)."""
    from torch.optim.optimizer import register_optimizer_step_post_hook

    from bench.config import config_dict
    from bench.decoders import CaptionDecoder, DecoderConfig

    corpus, _ = tiny_corpus()
    runs = {}
    for ema in (0.0, 0.5):
        torch.manual_seed(0)
        decoder = CaptionDecoder(DecoderConfig(width=32, layers=1, heads=2, epochs=3, batch_size=4, ema=ema), corpus.dim)
        encoded = decoder.build(corpus.captions)
        snapshots = [{n: p.detach().clone() for n, p in decoder.net.named_parameters()}]
        def keep(*_, net=decoder.net, into=snapshots):  # the weights after every optimiser step
            into.append({n: p.detach().clone() for n, p in net.named_parameters()})

        handle = register_optimizer_step_post_hook(keep)
        try:
            stats = decoder.fit(corpus.embeddings, encoded, seed=0, progress=None)
        finally:
            handle.remove()
        runs[ema] = (stats, snapshots, {n: p.detach().clone() for n, p in decoder.net.named_parameters()})
    (plain, plain_steps, plain_final), (averaged, steps, final) = runs[0.0], runs[0.5]
    assert averaged.final_loss == plain.final_loss and len(steps) == plain.steps + 1 > 3
    for name in plain_final:
        assert torch.equal(plain_final[name], plain_steps[-1][name])  # no average: the last step's weights
        expected = steps[0][name]
        for t, weights in enumerate(steps[1:]):
            keep = min(0.5, (1 + t) / (10 + t))
            expected = keep * expected + (1 - keep) * weights[name]
        assert torch.allclose(final[name], expected, atol=1e-6) and not torch.equal(final[name], steps[-1][name])
    assert "ema" not in config_dict(DecoderConfig()) and config_dict(DecoderConfig(ema=0.5))["ema"] == 0.5
    with pytest.raises(ConfigError, match=r"decoder.ema must be in \[0, 1\)"):
        DecoderConfig(ema=1.0)


def test_a_model_folder_replaced_in_place_is_another_cell_fit_and_decoder(tmp_path):
    """A GPT-2 folder retrained into the same path: the config string is the same, the cell, the
    fit and the shared decoder are not (so no old result or checkpoint is reused for it)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from bench.decoders.config import DecoderConfig
    from bench.decoders.fit_cache import fit_key as decoder_key
    from bench.grid import RunConfig, build_grid
    from bench.plugins import METHODS
    from bench.records import InputIdentity

    folder = tmp_path / "gpt2"

    def write(seed: int) -> None:  # one shape (the config states it), other weights
        torch.manual_seed(seed)
        GPT2LMHeadModel(GPT2Config(vocab_size=50, n_layer=1, n_head=2, n_embd=16, n_positions=64)).save_pretrained(folder)
        (folder / "tokenizer.json").write_text(json.dumps({"model": {"vocab": {"a": 0, "cat": 1}}}))

    shape = {"layers": 1, "heads": 2, "width": 16, "mlp_ratio": 4}

    def identities():
        options = {"decoder.kind": "gpt2", "decoder.gpt2_path": str(folder), **{f"decoder.{k}": v for k, v in shape.items()}}
        (cell,) = build_grid(RunConfig(methods=("capdec",), splits=("coco",), method_options=options))
        inputs = InputIdentity("e@1", "t", "v")
        config = DecoderConfig(kind="gpt2", gpt2_path=str(folder), **shape)
        return (cell.spec_id, cell.id(inputs), cell.fit_key(METHODS.get("capdec"), "e@1", "t"),
                decoder_key(config, ["a cat"], np.zeros((1, 4), np.float32), 0))

    write(0)
    before = identities()
    assert identities() == before  # the same files: the same identities
    write(1)  # another model in the same folder
    after = identities()
    assert all(a != b for a, b in zip(before, after))
    # a config naming no model folder keeps the ids it always had (no resource part)
    (plain,) = build_grid(RunConfig(methods=("capdec",), splits=("coco",)))
    from bench.records import cell_id

    assert plain.spec_id == cell_id("capdec", "coco", plain.seed, plain.noise_variance, plain.config_dict)


def test_a_pretrained_gpt2_must_be_the_shape_its_config_states(tmp_path):
    """A GPT-2 folder decides the decoder's layers, heads, width and feed-forward width; a config
    stating others would put them in every record, so it is refused (read from config.json, nothing
    loaded); gpt2_path without the gpt2 kind would be ignored, so it is refused too."""
    from bench.decoders.config import DecoderConfig, preset
    from bench.errors import BenchError

    folder = tmp_path / "gpt2"
    folder.mkdir()
    (folder / "tokenizer.json").write_text(json.dumps({"model": {"vocab": {"a": 0, "b": 1}}, "added_tokens": [{"id": 2}]}))
    (folder / "config.json").write_text(json.dumps({"n_layer": 12, "n_head": 12, "n_embd": 768, "n_inner": None}))
    preset("gpt2", gpt2_path=str(folder)).check_resources()  # GPT-2 124M is the preset's shape
    with pytest.raises(ConfigError, match=r"decoder.mlp_ratio=2 \(the folder's: 4\)"):
        DecoderConfig(kind="gpt2", layers=12, heads=12, width=768, gpt2_path=str(folder)).check_resources()
    (folder / "config.json").write_text(json.dumps({"n_layer": 24, "n_head": 16, "n_embd": 1024, "n_inner": 2048}))
    with pytest.raises(ConfigError, match=r"layers=12 \(the folder's: 24\).*width=768 \(the folder's: 1024\)"):
        preset("gpt2", gpt2_path=str(folder)).check_resources()
    preset("gpt2", gpt2_path=str(folder), layers=24, heads=16, width=1024, mlp_ratio=2).check_resources()
    (folder / "config.json").write_text("{not json")
    with pytest.raises(BenchError, match="is not a GPT-2 config"):
        preset("gpt2", gpt2_path=str(folder)).check_resources()
    with pytest.raises(ConfigError, match="needs decoder.kind=gpt2"):
        DecoderConfig(gpt2_path=str(folder))


def test_mlp_ratio_sets_the_feed_forward_width_and_old_decoders_load_as_saved(tmp_path):
    """The from-scratch decoder's feed-forward width is ``mlp_ratio`` x width (2 by default, GPT-2's
    4 in the GPT-2 presets); a decoder saved with another ratio than its config names (one saved
    before the setting existed has 4) loads with the ratio of its weights and captions as before."""
    from bench.config import config_dict
    from bench.decoders import DecoderConfig, preset
    from bench.plugins import METHODS

    assert DecoderConfig().mlp_ratio == 2 and config_dict(DecoderConfig())["mlp_ratio"] == 2  # part of every id
    assert preset("viecap").mlp_ratio == 4 and preset("gpt2").mlp_ratio == 4
    with pytest.raises(ConfigError, match="mlp_ratio"):
        DecoderConfig(mlp_ratio=0)
    corpus, base = tiny_corpus()
    overrides = {"decoder": {**TINY_DECODER["decoder"], "mlp_ratio": 4}}
    method = create_method("nonoise", method_config("nonoise", overrides))
    method.fit(corpus, FitContext(seed=0))
    width = method.config.decoder.width
    assert method.decoder.net.blocks[0].mlp[0].weight.shape == (4 * width, width)
    queries = np.stack([base[c] for c in CAPTIONS]).astype(np.float32)
    before = method.caption(queries)
    method.save(tmp_path / "fit")
    saved = tmp_path / "fit" / "config.json"
    meta = json.loads(saved.read_text())
    meta["config"]["decoder"].pop("mlp_ratio")  # as written before the setting existed
    saved.write_text(json.dumps(meta))
    loaded = METHODS.get("nonoise").load(tmp_path / "fit")
    assert loaded.decoder.config.mlp_ratio == 4
    assert loaded.caption(queries) == before

    small = create_method("nonoise", tiny_config("nonoise"))
    small.fit(corpus, FitContext(seed=0))
    assert small.decoder.net.blocks[0].mlp[0].weight.shape == (2 * width, width)
    gpt = create_method("capdec", method_config("capdec", {"decoder": {**TINY_DECODER["decoder"], "kind": "gpt2", "mlp_ratio": 3}}))
    gpt.fit(corpus, FitContext(seed=0))
    assert gpt.decoder.net.gpt.config.n_inner == 3 * gpt.config.decoder.width


def test_a_decoder_without_warm_up_trains_at_the_full_rate_from_its_first_step():
    """decoder.warmup=0 passes validation, so it must train (not divide by zero): the same fit as a
    one-step warm-up, which also starts at the full rate."""
    from bench.decoders import CaptionDecoder, DecoderConfig

    corpus, _ = tiny_corpus()
    fits = []
    for warmup in (0, 1):
        config = DecoderConfig(width=32, layers=1, heads=2, epochs=2, batch_size=8, warmup=warmup, dropout=0.0)
        torch.manual_seed(0)
        decoder = CaptionDecoder(config, corpus.dim)
        stats = decoder.fit(corpus.embeddings, decoder.build(corpus.captions), seed=0, progress=None)
        fits.append((decoder.net.state_dict(), stats.final_loss))
    (none, none_loss), (one, one_loss) = fits
    assert math.isfinite(none_loss) and none_loss == one_loss
    assert all(torch.equal(none[name], one[name]) for name in none)


def test_decoder_settings_the_decoder_cannot_honour_are_refused():
    """A beam wider than the vocabulary (once the corpus gives it) and a max_length with no room
    for a caption token: one-line errors, not a crash after the fit or empty captions."""
    from bench.decoders import CaptionDecoder, DecoderConfig

    with pytest.raises(ConfigError, match="decoder.max_length must be >= 2"):
        DecoderConfig(max_length=1)
    corpus, _ = tiny_corpus()
    decoder = CaptionDecoder(DecoderConfig(width=32, layers=1, heads=2, beam_size=100_000), corpus.dim)
    with pytest.raises(ConfigError, match=r"decoder.beam_size \(100000\) is larger than the decoder's vocabulary"):
        decoder.build(corpus.captions)
    fitted = CaptionDecoder(DecoderConfig(width=32, layers=1, heads=2, epochs=1, batch_size=8), corpus.dim)
    fitted.fit(corpus.embeddings, fitted.build(corpus.captions), seed=0, progress=None)
    with pytest.raises(ConfigError, match="larger than the decoder's vocabulary"):
        fitted.decode(corpus.embeddings[:2], beam_size=100_000, progress=None)


def test_a_pretrained_gpt2_takes_the_configs_dropout_and_must_hold_the_captions(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    from bench.decoders import CaptionDecoder, DecoderConfig
    from bench.decoders.vocab import HFVocab

    corpus, _ = tiny_corpus()
    vocab = HFVocab.train(corpus.captions, vocab_size=300)
    folder = tmp_path / "gpt2"
    GPT2LMHeadModel(GPT2Config(vocab_size=len(vocab), n_layer=1, n_head=2, n_embd=32, n_positions=24, resid_pdrop=0.1,
                               embd_pdrop=0.1, attn_pdrop=0.1)).save_pretrained(folder)
    vocab.tokenizer.save_pretrained(folder)
    shape = dict(kind="gpt2", gpt2_path=str(folder), layers=1, heads=2, width=32, mlp_ratio=4, prefix_length=1)
    # 24 positions cannot hold a prefix and 32 caption tokens: refused before anything loads
    with pytest.raises(ConfigError, match="has 24 positions; decoder.prefix_length=1 and decoder.max_length=32 need at least 34"):
        DecoderConfig(**shape).check_resources()
    config = DecoderConfig(**shape, max_length=16, dropout=0.0)
    config.check_resources()
    decoder = CaptionDecoder(config, corpus.dim)
    decoder.build(corpus.captions)
    gpt = decoder.net.gpt.config
    assert (gpt.resid_pdrop, gpt.embd_pdrop, gpt.attn_pdrop) == (0.0, 0.0, 0.0)  # the record's 0.0, not the folder's 0.1
    # checked again where the decoder is built (a method's prompt or second input adds positions)
    long_prefix = CaptionDecoder(DecoderConfig(**{**shape, "prefix_length": 8}, max_length=16, mapper="mlp"), corpus.dim)
    with pytest.raises(ConfigError, match="has 24 positions; this decoder needs 25"):
        long_prefix.build(corpus.captions)


def test_noise_of_any_finite_variance_gives_unit_vectors_and_small_variances_are_unchanged():
    """Above variance 1 the noise is added to x / σ (the same direction): a huge variance once
    overflowed float32 into NaN (1e300) or zero vectors (1e37). Up to 1, the sweep's range, the
    noise is the formula it always was, to the bit."""
    import torch.nn.functional as F

    x = torch.nn.functional.normalize(torch.randn(64, 16, generator=torch.Generator().manual_seed(1)), dim=-1)
    for variance in (1e37, 1e300, 4.0):
        out = inject_noise(x, variance, torch.Generator().manual_seed(0))
        assert torch.isfinite(out).all() and torch.allclose(out.norm(dim=-1), torch.ones(64), atol=1e-5)
    for variance in (0.016, 1.0):
        noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(0)) * variance ** 0.5
        assert torch.equal(inject_noise(x, variance, torch.Generator().manual_seed(0)), F.normalize(F.normalize(x, dim=-1) + noise, dim=-1))
    for bad in (float("inf"), float("nan"), -1.0):
        with pytest.raises(ConfigError, match="noise_variance must be a finite number"):
            method_config("capdec", {"noise_variance": bad})


def test_a_gpt2_folder_without_its_tokenizer_or_with_another_models_is_refused(tmp_path):
    """transformers gives a folder with no tokenizer files an empty tokenizer, under which every
    caption encodes to nothing (a decoder trained on nothing, empty captions, exit 0); and a
    tokenizer with more tokens than the model's embeddings fails deep in training. Both are one
    line, before anything loads, and again where the decoder is built."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from bench.decoders import CaptionDecoder, DecoderConfig
    from bench.decoders.vocab import HFVocab
    from bench.errors import BenchError

    corpus, _ = tiny_corpus()
    vocab = HFVocab.train(corpus.captions, vocab_size=300)
    folder = tmp_path / "gpt2"
    GPT2LMHeadModel(GPT2Config(vocab_size=len(vocab) - 20, n_layer=1, n_head=2, n_embd=32, n_positions=64)).save_pretrained(folder)
    config = DecoderConfig(kind="gpt2", gpt2_path=str(folder), layers=1, heads=2, width=32, mlp_ratio=4, max_length=16)
    with pytest.raises(BenchError, match="holds no tokenizer"):
        config.check_resources()
    with pytest.raises(BenchError, match="holds no tokenizer"):
        CaptionDecoder(config, corpus.dim).build(corpus.captions)
    vocab.tokenizer.save_pretrained(folder)
    with pytest.raises(ConfigError, match=rf"a vocabulary of ids up to {len(vocab) - 1}, but its GPT-2 has {len(vocab) - 20} token"):
        config.check_resources()
    with pytest.raises(ConfigError, match=rf"use token id \d+, but the GPT-2 in {folder} has {len(vocab) - 20} token embeddings"):
        CaptionDecoder(config, corpus.dim).build(corpus.captions)
    # a matching pair builds, and so does one with a <pad> added to the tokenizer only (no caption holds it)
    size = len(vocab)
    GPT2LMHeadModel(GPT2Config(vocab_size=size, n_layer=1, n_head=2, n_embd=32, n_positions=64)).save_pretrained(folder)
    vocab.tokenizer.add_special_tokens({"pad_token": "<pad>"})
    vocab.tokenizer.save_pretrained(folder)
    config.check_resources()
    decoder = CaptionDecoder(config, corpus.dim)
    assert len(decoder.build(corpus.captions)) == len(corpus.captions) and len(decoder.vocab) == size + 1
    # but a caption that holds it is refused where the decoder is built
    with pytest.raises(ConfigError, match=rf"use token id {size}, but the GPT-2 in {folder} has {size} token embeddings"):
        CaptionDecoder(config, corpus.dim).build([*corpus.captions, "a <pad> here"])
