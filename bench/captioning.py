"""``bench caption``: caption a folder of your own images with a fit that a run saved."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.errors import BenchError
from bench.fits import FIT_FILES, fit_problem, load_fit

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


@dataclass
class FolderCaptions:
    """A caption per readable image file (by file name), and the files that could not be read."""

    captions: dict[str, str] = field(default_factory=dict)
    skipped: list[Path] = field(default_factory=list)
    total: int = 0


def image_files(folder: Path) -> list[Path]:
    files = sorted(p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise BenchError(f"{folder} has no image files ({', '.join(IMAGE_SUFFIXES)})")
    return files


def caption_folder(method_name: str, checkpoint: Path, images: Path, device: str = "cpu", cache_dir: Path | None = None,
                   log: Callable[[str], None] = print) -> FolderCaptions:
    """Caption every image file in ``images`` with the fit in ``checkpoint`` (a folder a run wrote
    under ``RUN_DIR/checkpoints/``); unreadable files are skipped and listed. The encoder is the
    one the fit names, from the cache folder it was fitted with unless ``cache_dir`` says
    otherwise; one that has to be built first (the shapes CLIP) is announced through ``log``."""
    from bench.encoders import EncoderConfig, check_device, create_encoder
    from bench.fits import read_meta
    from bench.plugins import METHODS, load_plugins
    from bench.progress import progress

    load_plugins()
    name = METHODS.canonical(method_name)
    check_device(device)
    checkpoint, images = Path(checkpoint), Path(images)
    for flag, path in (("--checkpoint", checkpoint), ("--images", images)):
        if not path.is_dir():
            raise BenchError(f"{flag} {path} is not a folder")
    problem = fit_problem(checkpoint)
    if problem == "missing":
        raise BenchError(f"{checkpoint} is not a fitted method (expected {', '.join(FIT_FILES)}, "
                         "as a run writes under RUN_DIR/checkpoints/)")
    if problem is not None:
        raise BenchError(f"{checkpoint} cannot be used: {problem}")
    meta = read_meta(checkpoint)
    for key in ("method", "cache_dir", "encoder_id"):  # fit.json is not under its own hashes: read it warily
        if key in meta and not isinstance(meta[key], str):
            raise BenchError(f"{checkpoint / 'fit.json'}: {key} is not a string")
    cls = METHODS.get(name)
    saved = meta.get("method")
    if not saved:
        raise BenchError(f"{checkpoint / 'fit.json'} names no method: the fit's method cannot be checked against --method {name}")
    if saved not in METHODS or METHODS.get(saved) is not cls:
        raise BenchError(f"{checkpoint} holds a {saved} fit, not {name}")
    files = image_files(images)
    if cache_dir is None and meta.get("cache_dir"):  # the cache the fit was made with holds its encoder
        cache_dir = Path(meta["cache_dir"])
    if not isinstance(meta.get("encoder"), str):
        raise BenchError(f"{checkpoint / 'fit.json'} names no encoder")
    options = meta.get("encoder_options", {})
    weight = options.get("shapes_text_attribute_weight") if isinstance(options, dict) else None  # None: the default CLIP
    if not isinstance(options, dict) or set(options) - {"shapes_text_attribute_weight"} \
            or ("shapes_text_attribute_weight" in options and (isinstance(weight, bool) or not isinstance(weight, (int, float)))):
        raise BenchError(f"{checkpoint / 'fit.json'}: encoder_options is not what a run writes ({options!r})")
    encoder = create_encoder(EncoderConfig(name=meta["encoder"],
                                           shapes_text_attribute_weight=None if weight is None else float(weight)),
                             device, cache_dir, log=log)
    if encoder.id != meta.get("encoder_id"):  # other weights: its embeddings are not the space the method learnt
        raise BenchError(f"the encoder {meta['encoder']} now resolves to {encoder.id}, but the method was fitted with "
                         f"{meta.get('encoder_id') or '(none recorded)'}: its captions would come from another embedding space")
    method, _ = load_fit(checkpoint, cls)
    # one class, two names (nonoise is capdec at σ² 0): the fit must be what the name fixes
    for key, value in METHODS.entry(name).tags.get("preset", {}).items():
        if getattr(method.config, key, value) != value:
            raise BenchError(f"{checkpoint} holds a {saved} fit with {key}={getattr(method.config, key)}, "
                             f"not {name} ({key}={value})")
    emb, kept = encoder.encode_images(files, progress=progress, skip_unreadable=True)
    if not len(kept):  # nothing to caption is not a result
        raise BenchError(f"none of the {len(files)} image files in {images} could be read (first: {files[0].name})")
    captions = method.caption_images(emb, [files[i] for i in kept])
    return FolderCaptions({files[i].name: c for i, c in zip(kept, captions)},
                          [files[i] for i in sorted(set(range(len(files))) - set(kept))], len(files))
