"""Small data sets the tests build in a temp folder, in the real file formats."""

from __future__ import annotations

import json
import pickle
from pathlib import Path


def load_benchmark(name: str):
    """The script ``benchmarks/NAME.py`` as a module (registered in ``sys.modules``, where its
    dataclasses look their module up)."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parent.parent / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


CAPTIONS = [
    "a dog runs on the grass",
    "a brown dog running across a green lawn",
    "a man rides a bicycle down the street",
    "a cyclist on a city road",
    "two cats sleep on a red sofa",
    "a plate of food with broccoli and rice",
]


def karpathy_images(n: int = 6, with_restval: bool = True) -> list[dict]:
    splits = ["train", "restval", "val", "test", "test", "train"] if with_restval else ["train", "train", "val", "test", "test", "train"]
    images = []
    for i in range(n):
        caps = [CAPTIONS[(i + k) % len(CAPTIONS)] for k in range(5)]
        images.append({
            "filepath": "val2014" if i % 2 else "train2014",
            "filename": f"COCO_val2014_{1000 + i:012d}.jpg",
            "cocoid": 1000 + i,
            "imgid": i,
            "split": splits[i % len(splits)],
            "sentences": [{"raw": c, "tokens": c.split()} for c in caps],
        })
    return images


def write_karpathy(root: Path, name: str = "coco", images: list[dict] | None = None) -> Path:
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"dataset_{name}.json"
    path.write_text(json.dumps({"images": images or karpathy_images(), "dataset": name}))
    return path


def write_images(root: Path, images: list[dict], name: str = "coco") -> None:
    from PIL import Image

    for img in images:
        target = root / name / "images" / img.get("filepath", "") / img["filename"]
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8), (int(img.get("cocoid", 0)) % 255, 0, 0)).save(target)


def write_flattened(path: Path, images: list[dict], predictions: dict[str, str] | None = None) -> Path:
    items = []
    for img in images:
        item = {"split": img["split"], "image_name": img["filename"], "file_path": img.get("filepath", ""),
                "captions": [s["raw"] for s in img["sentences"]]}
        if predictions is not None and img["filename"] in predictions:
            item["prediction"] = predictions[img["filename"]]
        items.append(item)
    path.write_text(json.dumps(items))
    return path


def write_flickrstyle(root: Path, n: int = 40, pickled: bool = True) -> Path:
    folder = root / "flickrstyle10k"
    for style, caption_file in (("romantic", "romantic_train.txt"), ("humor", "funny_train.txt")):
        sub = folder / style
        sub.mkdir(parents=True, exist_ok=True)
        names = [f"{1000 + i}_abcdef.jpg" for i in range(n)]
        (sub / caption_file).write_text("\n".join(f"a {style} caption number {i}" for i in range(n)) + "\n")
        if pickled:
            with open(sub / "train.p", "wb") as fh:
                pickle.dump(names, fh, protocol=2)
        else:
            (sub / "train_images.txt").write_text("\n".join(names))
    return folder


def save_then_die(monkeypatch) -> list:
    """Make PIL's ``Image.save`` write the whole file and then raise KeyboardInterrupt, as a process
    killed between writing an image and renaming it into place; returns the list the paths it was
    given are appended to (``monkeypatch.undo()`` restores ``save``)."""
    from PIL import Image

    seen: list = []
    real_save = Image.Image.save

    def save(self, fp, *args, **kwargs):
        seen.append(fp)
        real_save(self, fp, *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(Image.Image, "save", save)
    return seen
