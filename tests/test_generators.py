"""Image generators (shapes, diffusers) and the generated-image cache."""

import json

import numpy as np
import pytest

from bench.errors import BenchError
from bench.generated import GeneratedImages
from bench.generators import GENERATORS
from bench.shapes.generator import ShapesGenerator
from tests.fixtures import save_then_die

PROMPTS = ["a red circle", "a blue box to the left of a green star", "a tiny yellow heart", "a red circle"]


def tiny_pipeline(folder):
    """A Stable Diffusion pipeline built from configs with random weights, saved to ``folder``."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import CLIPTextConfig, CLIPTextModel, PreTrainedTokenizerFast

    words = "a red blue green yellow circle box star heart tiny to the left of".split()
    vocab = {"<|endoftext|>": 0, "<unk>": 1, **{w: i + 2 for i, w in enumerate(words)}}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<|endoftext|>", eos_token="<|endoftext|>",
                                        model_max_length=16)
    text = CLIPTextModel(CLIPTextConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=37, num_hidden_layers=1,
                                        num_attention_heads=2, max_position_embeddings=16, projection_dim=32))
    unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 32),
                                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32,
                                attention_head_dim=8, norm_num_groups=8)
    vae = AutoencoderKL(block_out_channels=(8, 8), in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=8,
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2, sample_size=16)
    StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet, scheduler=DDIMScheduler(),
                            safety_checker=None, feature_extractor=None, requires_safety_checker=False).save_pretrained(folder)
    return folder


def test_generators_are_registered_lazily():
    assert set(GENERATORS.list()) >= {"shapes", "diffusers"}
    assert GENERATORS.get("shapes") is ShapesGenerator


def test_diffusers_backend_from_a_local_folder(tmp_path):
    gen = GENERATORS.get("diffusers")(str(tiny_pipeline(tmp_path / "sd")), steps=2, size=16, guidance=1.0, batch_size=3)
    images = gen.generate(PROMPTS, seed=0)
    assert len(images) == 4 and images[0].size == (16, 16) and images[0].mode == "RGB"
    arrays = [np.asarray(i) for i in images]
    assert np.array_equal(arrays[0], arrays[3])  # one prompt, one image, whatever its batch
    again = [np.asarray(i) for i in gen.generate(PROMPTS[:2], seed=0)]
    assert np.array_equal(again[1], arrays[1])
    assert not np.array_equal(np.asarray(gen.generate(PROMPTS[:1], seed=1)[0]), arrays[0])
    assert gen.id.startswith("diffusers-") and gen.id.endswith("2steps-16px-cfg1")


def test_a_diffusers_pipeline_is_identified_by_its_weights_not_their_sizes(tmp_path):
    folder = tiny_pipeline(tmp_path / "sd")
    before = GENERATORS.get("diffusers")(str(folder), steps=2, size=16).id
    weights = max((p for p in folder.rglob("*") if p.is_file() and p.suffix != ".json"), key=lambda p: p.stat().st_size)
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF  # a fine-tuned copy: the same files, the same sizes, other bytes
    weights.write_bytes(bytes(data))
    assert GENERATORS.get("diffusers")(str(folder), steps=2, size=16).id != before


def test_diffusers_bad_folders(tmp_path):
    with pytest.raises(BenchError, match="does not exist"):
        GENERATORS.get("diffusers")(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(BenchError, match="no model_index.json"):
        GENERATORS.get("diffusers")(str(tmp_path / "empty"))
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    DDPMPipeline(unet=UNet2DModel(sample_size=8, block_out_channels=(8, 8), norm_num_groups=4, layers_per_block=1,
                                  down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D")),
                 scheduler=DDPMScheduler()).save_pretrained(tmp_path / "ddpm")
    gen = GENERATORS.get("diffusers")(str(tmp_path / "ddpm"))
    with pytest.raises(BenchError, match="is not a text-to-image pipeline \\(it holds a DDPMPipeline\\)"):
        gen.generate(["a red circle"])


def test_generated_images_are_cached_by_prompt_and_resume(tmp_path):
    cache = GeneratedImages(tmp_path, ShapesGenerator())
    calls = []

    class Flaky(ShapesGenerator):
        def generate(self, prompts, seed=0):
            calls.append(len(prompts))
            if len(calls) == 2:
                raise KeyboardInterrupt  # the second batch is interrupted
            return super().generate(prompts, seed)

    flaky = GeneratedImages(tmp_path, Flaky())
    assert flaky.folder == cache.folder  # same generator id, same images
    with pytest.raises(KeyboardInterrupt):
        flaky.ensure(PROMPTS, batch_size=2)
    assert flaky.generated == 2  # the first batch was kept
    paths = cache.ensure(PROMPTS, batch_size=2)
    assert cache.generated == 1  # only the missing unique prompt was made
    assert paths[0] == paths[3] and all(p.is_file() for p in paths)
    assert json.loads((cache.folder / "generator.json").read_text())["id"] == ShapesGenerator().id
    assert GeneratedImages(tmp_path, ShapesGenerator()).ensure(PROMPTS) == paths
    other_seed = cache.ensure(PROMPTS[:1], seed=1)
    assert other_seed[0] != paths[0]


def test_generated_embeddings_follow_the_image_files_not_only_their_prompts(tmp_path):
    """An image replaced in the generated folder is encoded again: its embedding is never the one
    of the image it replaced, whatever the cache held."""
    import shutil
    from types import SimpleNamespace

    from PIL import Image

    from bench.cache import EmbeddingCache
    from bench.generated import embed_generated

    class MeanColour:  # an "encoder" whose embedding is each image's mean colour
        id = "mean-colour@1"

        def compute_id(self, modality):
            return "cpu|batch 2"

        def encode_images(self, paths, progress=None, desc=""):
            emb = np.stack([np.asarray(Image.open(p).convert("RGB"), dtype=np.float32).mean((0, 1)) for p in paths])
            return emb, list(range(len(paths)))

    ctx = SimpleNamespace(cache_dir=tmp_path, cache=EmbeddingCache(tmp_path, log=lambda m: None), encoder=MeanColour(),
                          progress=None, log=lambda m: None)
    prompts = ["a red circle", "a blue box"]
    paths, first = embed_generated(prompts, ShapesGenerator(), ctx, "d")
    again = embed_generated(prompts, ShapesGenerator(), ctx, "d")[1]
    assert np.array_equal(np.asarray(first), np.asarray(again)) and ctx.cache.hits == 1  # unchanged files: a hit
    shutil.copyfile(paths[1], paths[0])  # the red circle's file now holds the blue box
    _, after = embed_generated(prompts, ShapesGenerator(), ctx, "d")
    after = np.asarray(after)
    assert np.array_equal(after[0], after[1]) and not np.array_equal(after[0], np.asarray(first)[0])


def test_an_interrupted_image_write_leaves_no_image_and_only_a_temporary_the_sweep_knows(tmp_path, monkeypatch):
    """A generated image is written under a temporary name and renamed once whole: interrupted
    before the rename, no image is there (the next run makes it again) and the temporary is
    removed; one a killed process leaves behind carries the name ``bench.io`` sweeps."""
    from bench.io import remove_stale_temporaries

    seen = save_then_die(monkeypatch)
    store = GeneratedImages(tmp_path, ShapesGenerator())
    with pytest.raises(KeyboardInterrupt):
        store.ensure(PROMPTS[:1])
    assert len(seen) == 1 and seen[0] != store.path(PROMPTS[0])
    assert not store.path(PROMPTS[0]).exists() and not any(p.is_file() for p in store.folder.rglob("*") if p.name != "generator.json")
    monkeypatch.undo()
    seen[0].write_bytes(b"half a png")  # what a kill -9 between write and rename leaves
    assert remove_stale_temporaries(store.folder, older_than=0.0) == (1, len(b"half a png"))
    assert store.ensure(PROMPTS[:1])[0].stat().st_size > 100 and store.generated == 1
