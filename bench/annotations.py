"""Reading caption annotation and prediction files in the formats this field releases.

* Karpathy ``dataset_coco.json`` / ``dataset_flickr30k.json``:
  ``{"images": [{"filename", "filepath"?, "split", "sentences": [{"raw"}], "cocoid"?}]}``
* the flattened list: ``[{"split", "image_name", "file_path"?, "captions": [...], "prediction"?}]``
* a COCO caption annotation file: ``{"images": [{"id", "file_name"}], "annotations": [{"image_id", "caption"}]}``
* COCO results (predictions): ``[{"image_id", "caption"}]``

Every image is known under several keys (COCO id, file name, file stem), so that predictions
keyed by any of them find their references. A key shared by two images is dropped as ambiguous.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.errors import DataError

_COCO_NAME_ID = re.compile(r"_0*(\d+)$")


@dataclass(frozen=True)
class AnnotatedImage:
    """One image with its reference captions (and, in a flattened file, a prediction)."""

    image_id: str
    captions: tuple[str, ...]
    split: str = ""
    filename: str = ""
    filepath: str = ""
    prediction: str | None = None
    aliases: tuple[str, ...] = ()

    @property
    def keys(self) -> tuple[str, ...]:
        return (self.image_id, *self.aliases)


def read_json(path: str | Path, what: str) -> Any:
    """Load a JSON file, turning every way it can be wrong into a one-line DataError."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{what} {path} does not exist")
    if path.is_dir():
        raise DataError(f"{what} {path} is a folder, expected a JSON file")
    try:
        # strict: a caption whose bytes are not UTF-8 would be scored with replacement characters
        content = path.read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise DataError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{what} {path} is not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    if not content.strip():
        raise DataError(f"{what} {path} is empty")
    try:
        return json.loads(content)
    except json.JSONDecodeError as exc:
        raise DataError(f"{what} {path} is not JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
    except RecursionError:
        raise DataError(f"{what} {path} nests its JSON too deeply to be a caption file") from None


def text(value: Any, source: str, image: Any, what: str = "caption") -> str:
    """A caption as a string, or a one-line error naming the file and the image: ``null``, a
    number, or text that is not valid Unicode (a lone surrogate) is never turned into words."""
    if not isinstance(value, str):
        raise DataError(f"{source}: image {image} has a {what} that is not a string ({json.dumps(value)[:40]})")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise DataError(f"{source}: image {image} has a {what} that is not valid text "
                        f"(an unpaired surrogate at position {exc.start})") from None
    if what == "caption" and not value.strip():  # a reference of no words (a prediction may be empty: it is scored 0)
        raise DataError(f"{source}: image {image} has an empty {what}")
    if what == "caption" and not any(ch.isalnum() for ch in value):  # "...": nothing left once tokenised
        raise DataError(f"{source}: image {image} has a {what} with no word in it ({value[:40]!r})")
    return value


def image_key(value: Any, source: str, index: int) -> str | int:
    """An image id as a file keys it: a string or an integer."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise DataError(f"{source}: entry #{index} has an image_id that is neither a string nor an integer "
                        f"({json.dumps(value)[:40]})")
    return value


def detect_format(data: Any) -> str:
    """``karpathy``, ``coco``, ``flattened``, ``coco-results``, or ``unknown``."""
    if isinstance(data, dict) and isinstance(data.get("images"), list):
        if isinstance(data.get("annotations"), list):
            return "coco"
        first = data["images"][0] if data["images"] else {}
        if isinstance(first, dict) and "sentences" in first:
            return "karpathy"
    if isinstance(data, list) and data and isinstance(data[0], dict):
        if "image_name" in data[0] or "captions" in data[0]:
            return "flattened"
        if "image_id" in data[0]:
            return "coco-results"
    return "unknown"


def _aliases_from_name(filename: str) -> list[str]:
    stem = Path(filename).stem
    out = [filename, stem]
    match = _COCO_NAME_ID.search(stem)
    if match and stem.upper().startswith("COCO"):
        out.append(str(int(match.group(1))))
    return out


def _image(image_id: str, captions: list[str], aliases: Iterable[str], **kw: Any) -> AnnotatedImage:
    uniq = tuple(dict.fromkeys(a for a in aliases if a and a != image_id))
    return AnnotatedImage(image_id=image_id, captions=tuple(captions), aliases=uniq, **kw)


def parse_karpathy(data: Any, source: str) -> list[AnnotatedImage]:
    if detect_format(data) != "karpathy":
        raise DataError(f"{source} is not a Karpathy split file: expected {{'images': [{{'filename', 'split', 'sentences': [{{'raw'}}]}}]}}")
    out = []
    for i, img in enumerate(data["images"]):
        try:
            filename = text(img["filename"], source, f"#{i}", "filename")  # null is no file name ("None")
            raws = [s["raw"] for s in img["sentences"]]
            split = str(img["split"])
        except (KeyError, TypeError):
            raise DataError(f"{source}: image #{i} lacks 'filename', 'split' or 'sentences[].raw'") from None
        captions = [text(r, source, filename).strip() for r in raws]
        if not captions:  # an image nothing describes: no reference to score against, no caption to train on
            raise DataError(f"{source}: image {filename} has no sentences")
        names = _aliases_from_name(filename)
        image_id = str(img["cocoid"]) if "cocoid" in img else names[1]
        out.append(_image(image_id, captions, names, split=split, filename=filename, filepath=str(img.get("filepath", ""))))
    return out


def parse_flattened(data: Any, source: str) -> list[AnnotatedImage]:
    if not isinstance(data, list) or not data or not all(isinstance(d, dict) for d in data):
        raise DataError(f"{source} is not a flattened caption list: expected [{{'image_name', 'captions': [...]}}]")
    out = []
    for i, item in enumerate(data):
        name = item.get("image_name")
        captions = item.get("captions")
        if not isinstance(name, str) or not isinstance(captions, list):
            raise DataError(f"{source}: entry #{i} lacks 'image_name' (a string) or 'captions' (a list)")
        prediction = item.get("prediction")
        if prediction is not None:
            text(prediction, source, name, "prediction")
        if not captions:
            raise DataError(f"{source}: image {name} has no captions")
        names = _aliases_from_name(name)
        image_id = names[2] if len(names) > 2 else names[1]
        out.append(_image(image_id, [text(c, source, name).strip() for c in captions], names, split=str(item.get("split", "")),
                          filename=name, filepath=str(item.get("file_path", "")), prediction=prediction))
    return out


def parse_coco_captions(data: Any, source: str) -> list[AnnotatedImage]:
    if detect_format(data) != "coco":
        raise DataError(f"{source} is not a COCO caption file: expected {{'images': [...], 'annotations': [{{'image_id', 'caption'}}]}}")
    caps: dict[str, list[str]] = {}
    try:
        for ann in data["annotations"]:
            caps.setdefault(str(ann["image_id"]), []).append(text(ann["caption"], source, ann["image_id"]).strip())
        files = {str(img["id"]): str(img.get("file_name", "")) for img in data["images"]}
    except (KeyError, TypeError):
        raise DataError(f"{source}: annotations need 'image_id' and 'caption', images need 'id'") from None
    return [_image(i, c, _aliases_from_name(files[i]) if files.get(i) else [], filename=files.get(i, ""))
            for i, c in caps.items()]


def read_annotations(path: str | Path, what: str = "annotation file") -> tuple[str, list[AnnotatedImage]]:
    """Read any reference format; returns (format name, images)."""
    data = read_json(path, what)
    fmt = detect_format(data)
    parser = {"karpathy": parse_karpathy, "flattened": parse_flattened, "coco": parse_coco_captions}.get(fmt)
    if parser is None:
        raise DataError(
            f"{what} {path} has an unknown shape: expected a Karpathy dataset_*.json, "
            "a COCO caption annotation file, or a flattened [{image_name, captions}] list"
        )
    return fmt, parser(data, str(path))


def load_references(path: str | Path, split: str | None = None) -> ReferenceIndex:
    """The references of any annotation format; with ``split``, only that split's images of a
    Karpathy file (``train`` includes ``restval``)."""
    fmt, images = read_annotations(path, "reference file")
    if split:
        if fmt != "karpathy":
            raise DataError(f"--split needs a Karpathy dataset_*.json reference file; {path} is a {fmt} file")
        images = [i for i in images if i.split == split or (split == "train" and i.split == "restval")]
        if not images:
            raise DataError(f"reference file {path} has no images in split {split!r}")
    return ReferenceIndex(images)


class ReferenceIndex:
    """Reference captions by image, findable under any of an image's keys."""

    def __init__(self, images: Iterable[AnnotatedImage]) -> None:
        self.images: dict[str, AnnotatedImage] = {}
        owners: dict[str, set[str]] = {}
        for img in images:
            if img.image_id in self.images:
                # Several annotation files list an image twice; merge its captions.
                prev = self.images[img.image_id]
                img = AnnotatedImage(**{**prev.__dict__, "captions": prev.captions + img.captions})
            self.images[img.image_id] = img
            for key in img.keys:
                owners.setdefault(key, set()).add(img.image_id)
        self._lookup = {k: next(iter(v)) for k, v in owners.items() if len(v) == 1}
        for image_id in self.images:  # a primary id always wins over another image's alias
            self._lookup[image_id] = image_id

    def __len__(self) -> int:
        return len(self.images)

    def find(self, key: Any) -> str | None:
        """The canonical image id for ``key`` (an id, file name or stem), or None."""
        if isinstance(key, float) and key.is_integer():
            key = int(key)
        return self._lookup.get(str(key).strip())

    def references(self, image_id: str) -> list[str]:
        return list(self.images[image_id].captions)


def read_predictions(path: str | Path) -> tuple[dict[Any, str], ReferenceIndex | None]:
    """Predictions keyed as the file keys them, plus references when they travel with them."""
    data = read_json(path, "prediction file")
    fmt = detect_format(data)
    if fmt == "coco-results":
        preds: dict[Any, str] = {}
        for i, item in enumerate(data):
            if not isinstance(item, dict) or "image_id" not in item or not isinstance(item.get("caption"), str):
                raise DataError(f"prediction file {path}: entry #{i} lacks 'image_id' or a string 'caption'")
            key = image_key(item["image_id"], f"prediction file {path}", i)
            text(item["caption"], f"prediction file {path}", key, "prediction")
            if key in preds and preds[key] != item["caption"]:
                raise DataError(f"prediction file {path} has two different captions for image {key}")
            preds[key] = item["caption"]
        return preds, None
    if fmt == "flattened":
        images = parse_flattened(data, str(path))
        missing = [img.filename for img in images if img.prediction is None]
        if missing:
            raise DataError(f"prediction file {path}: {len(missing)} entries have no 'prediction' (first: {missing[0]})")
        preds = {}
        for img in images:
            if img.filename in preds:
                raise DataError(f"prediction file {path} lists image {img.filename} twice")
            preds[img.filename] = img.prediction  # type: ignore[assignment]
        refs = ReferenceIndex(images) if any(img.captions for img in images) else None
        return preds, refs
    if isinstance(data, list) and not data:
        raise DataError(f"prediction file {path} holds no predictions")
    raise DataError(
        f"prediction file {path} has an unknown shape: expected COCO results [{{image_id, caption}}] "
        "or a flattened [{image_name, captions, prediction}] list"
    )
