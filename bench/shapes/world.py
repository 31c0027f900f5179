"""Scenes of a few coloured shapes: sampling and rendering.

A scene is a background plus one to three objects (shape, colour, size, position). Sampling
is seeded per image, so any image can be rebuilt from (domain, split, index, world seed)
alone. Rendering has two styles: ``photo`` (textured or cluttered backgrounds, lighting and
colour jitter, sensor noise, objects that occlude each other or leave the frame) and
``synthetic`` (flat background, exact colours, no noise), the latter for the world's
text-to-image generator.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

#: Canonical object words: the world's tag vocabulary.
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "heart", "cross",
                           "diamond", "hexagon", "ring", "crescent", "pentagon", "arrow")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (210, 40, 40), "green": (40, 160, 60), "blue": (40, 70, 210), "yellow": (235, 210, 40),
    "orange": (240, 130, 30), "purple": (130, 50, 170), "pink": (240, 120, 180), "white": (245, 245, 245),
    "black": (25, 25, 25), "brown": (120, 75, 40),
}
SIZES: dict[str, tuple[float, float]] = {"small": (0.10, 0.14), "medium": (0.16, 0.21), "large": (0.24, 0.30)}
BACKGROUNDS_INDOOR = ("tiles", "stripes", "wood", "carpet")
BACKGROUNDS_OUTDOOR = ("sky", "grass", "sand", "water")
BACKGROUNDS = BACKGROUNDS_INDOOR + BACKGROUNDS_OUTDOOR


@dataclass(frozen=True)
class Obj:
    shape: str
    colour: str
    size: str
    x: float  # centre, as a fraction of the image width
    y: float  # centre, as a fraction of the image height (0 = top)
    angle: float = 0.0  # degrees

    @property
    def radius(self) -> float:
        lo, hi = SIZES[self.size]
        return (lo + hi) / 2


@dataclass(frozen=True)
class Scene:
    objects: tuple[Obj, ...]
    background: str
    light: float = 1.0  # brightness multiplier
    tint: tuple[float, float, float] = (1.0, 1.0, 1.0)
    seed: int = 0  # drives texture and noise

    def key(self) -> str:
        text = repr((self.objects, self.background, round(self.light, 4), self.tint))
        return hashlib.sha1(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class SceneStats:
    """How a domain's scenes are distributed (so domains differ in content, not only words)."""

    n_objects: tuple[float, float, float]  # P(1), P(2), P(3)
    backgrounds: tuple[str, ...]
    shape_weights: tuple[float, ...] = field(default_factory=lambda: (1.0,) * len(SHAPES))
    colour_weights: tuple[float, ...] = field(default_factory=lambda: (1.0,) * len(COLOURS))
    size_weights: tuple[float, float, float] = (1.0, 1.0, 1.0)


def rng_for(*parts: object) -> np.random.Generator:
    """A generator seeded by a stable hash of ``parts`` (not Python's salted ``hash``)."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _pick(rng: np.random.Generator, items, weights) -> str:
    p = np.asarray(weights, dtype=float)
    return items[int(rng.choice(len(items), p=p / p.sum()))]


def sample_scene(stats: SceneStats, rng: np.random.Generator) -> Scene:
    """Draw a scene: objects spread out enough that relations between them are well defined."""
    n = 1 + int(rng.choice(3, p=np.asarray(stats.n_objects) / sum(stats.n_objects)))
    objects: list[Obj] = []
    used: set[tuple[str, str]] = set()
    for _ in range(n):
        for _attempt in range(30):
            shape = _pick(rng, SHAPES, stats.shape_weights)
            colour = _pick(rng, tuple(COLOURS), stats.colour_weights)
            size = _pick(rng, tuple(SIZES), stats.size_weights)
            r = (SIZES[size][0] + SIZES[size][1]) / 2
            x, y = rng.uniform(0.12, 0.88), rng.uniform(0.12, 0.88)
            # Two objects alike in shape and colour would make captions ambiguous; centres
            # far enough apart that "left of" / "above" mean something, close enough to
            # occlude now and then.
            if (shape, colour) in used:
                continue
            if any(math.hypot(x - o.x, y - o.y) < 0.6 * (r + o.radius) for o in objects):
                continue
            objects.append(Obj(shape, colour, size, float(x), float(y), float(rng.uniform(-20, 20))))
            used.add((shape, colour))
            break
    background = _pick(rng, stats.backgrounds, [1.0] * len(stats.backgrounds))
    light = float(rng.uniform(0.7, 1.25))
    tint = tuple(float(v) for v in rng.uniform(0.85, 1.15, size=3))
    return Scene(tuple(objects), background, light, tint, int(rng.integers(2**31)))  # type: ignore[arg-type]


# -- rendering -------------------------------------------------------------------------------

def _polygon(shape: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]] | None:
    def rot(points):
        a = math.radians(angle)
        ca, sa = math.cos(a), math.sin(a)
        return [(cx + px * ca - py * sa, cy + px * sa + py * ca) for px, py in points]

    def regular(k, start=-90.0, scale=1.0):
        return [(scale * r * math.cos(math.radians(start + 360 * i / k)), scale * r * math.sin(math.radians(start + 360 * i / k)))
                for i in range(k)]

    if shape == "square":
        return rot([(-r * 0.85, -r * 0.85), (r * 0.85, -r * 0.85), (r * 0.85, r * 0.85), (-r * 0.85, r * 0.85)])
    if shape == "triangle":
        return rot(regular(3, scale=1.1))
    if shape == "pentagon":
        return rot(regular(5))
    if shape == "hexagon":
        return rot(regular(6, start=0))
    if shape == "diamond":
        return rot([(0, -r * 1.1), (r * 0.7, 0), (0, r * 1.1), (-r * 0.7, 0)])
    if shape == "star":
        pts = []
        for i in range(10):
            rad = r * (1.1 if i % 2 == 0 else 0.45)
            a = math.radians(-90 + 36 * i)
            pts.append((rad * math.cos(a), rad * math.sin(a)))
        return rot(pts)
    if shape == "cross":
        t = r * 0.33
        return rot([(-t, -r), (t, -r), (t, -t), (r, -t), (r, t), (t, t), (t, r), (-t, r), (-t, t), (-r, t), (-r, -t), (-t, -t)])
    if shape == "arrow":
        return rot([(-r, -r * 0.3), (r * 0.2, -r * 0.3), (r * 0.2, -r * 0.75), (r, 0), (r * 0.2, r * 0.75),
                    (r * 0.2, r * 0.3), (-r, r * 0.3)])
    if shape == "heart":
        pts = []
        for i in range(24):
            t = 2 * math.pi * i / 24
            hx = 16 * math.sin(t) ** 3
            hy = -(13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t))
            pts.append((hx * r / 16, hy * r / 16 + r * 0.1))
        return rot(pts)
    return None  # circle, ring, crescent are drawn with ellipses


def _mask(obj: Obj, size: int) -> Image.Image:
    """The object's silhouette (255 inside) on a ``size`` x ``size`` canvas."""
    mask = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(mask)
    cx, cy, r = obj.x * size, obj.y * size, obj.radius * size
    poly = _polygon(obj.shape, cx, cy, r, obj.angle)
    if poly is not None:
        draw.polygon(poly, fill=255)
        return mask
    draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
    if obj.shape == "ring":
        hole = r * 0.5
        draw.ellipse([cx - hole, cy - hole, cx + hole, cy + hole], fill=0)
    elif obj.shape == "crescent":
        a = math.radians(obj.angle)
        ox, oy = cx + r * 0.55 * math.cos(a), cy + r * 0.55 * math.sin(a)
        draw.ellipse([ox - r * 0.85, oy - r * 0.85, ox + r * 0.85, oy + r * 0.85], fill=0)
    return mask


def _background(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    base = {
        "tiles": (200, 195, 185), "stripes": (185, 190, 200), "wood": (170, 130, 90), "carpet": (150, 120, 130),
        "sky": (150, 190, 235), "grass": (90, 150, 70), "sand": (220, 200, 150), "water": (60, 120, 170),
    }[kind]
    img = np.ones((size, size, 3), np.float32) * np.asarray(base, np.float32)
    phase = rng.uniform(0, 2 * math.pi)
    if kind == "tiles":
        cells = ((xx * 6).astype(int) + (yy * 6).astype(int)) % 2
        img *= (0.88 + 0.12 * cells)[..., None]
    elif kind == "stripes":
        img *= (0.9 + 0.1 * np.sign(np.sin(xx * 24 + phase)))[..., None]
    elif kind == "wood":
        img *= (0.85 + 0.15 * np.sin(yy * 40 + 3 * np.sin(xx * 6 + phase)))[..., None]
    elif kind == "carpet":
        img *= (0.8 + 0.2 * rng.random((size, size)))[..., None]
    elif kind == "sky":
        img *= (0.8 + 0.3 * yy)[..., None]
    elif kind == "grass":
        img *= (0.75 + 0.35 * rng.random((size, size)) * (0.5 + yy))[..., None]
    elif kind == "sand":
        img *= (0.9 + 0.1 * np.sin(xx * 30 + yy * 10 + phase))[..., None]
    elif kind == "water":
        img *= (0.85 + 0.15 * np.sin(yy * 50 + 2 * np.sin(xx * 12 + phase)))[..., None]
    # Clutter: faint blobs that are not objects, so a model cannot count on a clean canvas.
    for _ in range(int(rng.integers(2, 7))):
        cx, cy, rad = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.02, 0.06)
        mask = ((xx - cx) ** 2 + (yy - cy) ** 2) < rad**2
        img[mask] *= rng.uniform(0.8, 1.2)
    return img


def render(scene: Scene, size: int = 64, style: str = "photo") -> Image.Image:
    """Render ``scene`` as an RGB image of ``size`` x ``size`` pixels.

    ``photo``: textured background, jittered colours, lighting, blur and noise.
    ``synthetic``: flat light-grey background, exact colours, no noise (the generator's look).
    """
    if style not in ("photo", "synthetic"):
        raise ValueError(f"style must be 'photo' or 'synthetic', got {style!r}")
    ss = 2  # draw at twice the size, then downsample: anti-aliased edges
    big = size * ss
    rng = np.random.default_rng(scene.seed)
    if style == "photo":
        bg = _background(scene.background, big, rng)
    else:
        bg = np.full((big, big, 3), 235.0, np.float32)
    canvas = Image.fromarray(np.clip(bg, 0, 255).astype(np.uint8))
    for obj in scene.objects:  # later objects occlude earlier ones
        colour = np.asarray(COLOURS[obj.colour], np.float32)
        if style == "photo":
            colour = colour + rng.normal(0, 12, 3)
        canvas.paste(tuple(int(v) for v in np.clip(colour, 0, 255)), (0, 0, big, big), _mask(obj, big))
    img = canvas.resize((size, size), Image.BILINEAR)
    if style == "photo":
        img = img.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.0, 0.6))))
        arr = np.asarray(img, np.float32) * scene.light * np.asarray(scene.tint, np.float32)
        arr += rng.normal(0, rng.uniform(3, 10), arr.shape)
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    return img
