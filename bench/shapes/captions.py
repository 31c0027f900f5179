"""Captions for shapes scenes: a grammar with synonyms, optional attributes, word orders,
relation phrasings and, per domain, its own vocabulary and register.

``shapes-coco`` captions are short and plain ("a red circle next to a blue box"), like COCO's;
``shapes-flickr`` captions are longer, use other synonyms and sentence frames ("A bright red
disc can be seen beside a blue block on the grass."), like Flickr30k's; ``romantic`` and
``humor`` wrap the same content in a style, like FlickrStyle10K. Every caption names every
object of its scene, so content words matter to the metrics as they do on real data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from bench.shapes.world import COLOURS, SHAPES, SIZES, Obj, Scene


@dataclass(frozen=True)
class Profile:
    """How one domain talks about scenes."""

    shape_words: dict[str, tuple[str, ...]]
    colour_prefix: tuple[str, ...]  # e.g. ("", "bright ", "dark ")
    size_words: dict[str, tuple[str, ...]]
    backgrounds: dict[str, tuple[str, ...]]
    relations: dict[str, tuple[str, ...]]
    one: tuple[str, ...]
    two: tuple[str, ...]
    three: tuple[str, ...]
    p_colour: float = 0.9
    p_size: float = 0.4
    p_background: float = 0.5
    capitalise: float = 0.5
    period: float = 0.5


_BG = {
    "tiles": ("on a tiled floor", "on a checkered floor"), "stripes": ("against a striped wall", "on a striped background"),
    "wood": ("on a wooden table", "on a wooden surface"), "carpet": ("on a carpet", "on a rug"),
    "sky": ("in front of a blue sky", "against the sky"), "grass": ("on the grass", "in a grassy field"),
    "sand": ("on the sand", "on a sandy beach"), "water": ("above the water", "near the water"),
}

COCO = Profile(
    shape_words={"circle": ("circle", "round shape", "dot"), "square": ("square", "box"), "triangle": ("triangle",),
                 "star": ("star",), "heart": ("heart",), "cross": ("cross", "plus sign"), "diamond": ("diamond",),
                 "hexagon": ("hexagon",), "ring": ("ring", "donut"), "crescent": ("crescent", "moon shape"),
                 "pentagon": ("pentagon",), "arrow": ("arrow",)},
    colour_prefix=("",),
    size_words={"small": ("small", "little"), "medium": ("",), "large": ("large", "big")},
    backgrounds=_BG,
    relations={"left": ("to the left of", "left of", "next to", "beside"), "right": ("to the right of", "right of", "next to", "beside"),
               "above": ("above", "over"), "below": ("below", "under")},
    one=("{a} {bg}", "{a} in the {region} of the picture", "a picture of {a} {bg}", "{a} sitting {bg}",
         "there is {a} {bg}", "{a} near the {region}", "a close up of {a}"),
    two=("{a} {rel} {b}", "{a} and {b} {bg}", "{a} {rel} {b} {bg}", "two shapes {bg} , {a} and {b}",
         "{b} with {a} {rel} it", "a picture of {a} and {b}", "{a} sitting {rel} {b}"),
    three=("{a} , {b} and {c}", "three shapes {bg} : {a} , {b} and {c}", "{a} {rel} {b} and {c}",
           "a group of shapes with {a} , {b} and {c}", "{c} , {b} and {a} {bg}", "{a} and {b} {rel2} {c}"),
)

FLICKR = Profile(
    shape_words={"circle": ("circle", "disc", "ball"), "square": ("square", "block"), "triangle": ("triangle", "wedge"),
                 "star": ("star", "star shape"), "heart": ("heart", "heart shape"), "cross": ("cross",),
                 "diamond": ("diamond", "rhombus"), "hexagon": ("hexagon", "six sided shape"), "ring": ("ring", "hoop"),
                 "crescent": ("crescent", "crescent moon"), "pentagon": ("pentagon", "five sided shape"),
                 "arrow": ("arrow", "pointer")},
    colour_prefix=("", "", "bright ", "dark ", "light "),
    size_words={"small": ("small", "tiny"), "medium": ("",), "large": ("large", "huge")},
    backgrounds=_BG,
    relations={"left": ("on the left side of", "to the left of", "beside"), "right": ("on the right side of", "to the right of", "beside"),
               "above": ("above", "higher than"), "below": ("beneath", "lower than")},
    one=("there is {a} {bg}", "{a} can be seen {bg}", "{a} is shown in the {region} of the image",
         "an image showing {a} {bg}", "{a} is sitting alone {bg}", "we can see {a} in the {region}"),
    two=("{a} can be seen {rel} {b}", "there is {a} and {b} {bg}", "{a} is shown {rel} {b} {bg}",
         "two shapes are together {bg} : {a} and {b}", "an image showing {a} {rel} {b}", "{b} and {a} are seen {bg}"),
    three=("there are three shapes {bg} : {a} , {b} and {c}", "{a} is shown {rel} {b} , with {c} nearby",
           "an image showing {a} , {b} and {c} {bg}", "{a} , {b} and {c} can be seen together"),
    p_colour=0.95, p_size=0.5, p_background=0.7,
)

ROMANTIC = Profile(
    shape_words=COCO.shape_words, colour_prefix=("", "", "soft ", "warm "), size_words=COCO.size_words, backgrounds=_BG,
    relations={"left": ("close beside", "snuggled next to"), "right": ("close beside", "snuggled next to"),
               "above": ("watching over", "floating above"), "below": ("resting beneath", "sheltered under")},
    one=("a lonely {a_} {bg} , dreaming of love", "{a} waiting {bg} for its true love", "{a} basking in the warm light {bg}",
         "{a} alone {bg} , longing for a companion", "a gentle {a_} whispering sweet words {bg}"),
    two=("{a} in love with {b} {bg}", "{a} {rel} {b} , together forever", "{a} longing for {b} {bg}",
         "{a} and {b} sharing a tender moment {bg}", "{a} gazing lovingly at {b}"),
    three=("{a} , {b} and {c} enjoying a peaceful evening {bg}", "{a} and {b} dreaming together while {c} looks on",
           "{a} , {b} and {c} , bound by love {bg}", "{a} {rel} {b} as {c} watches tenderly"),
    p_background=0.6,
)

HUMOR = Profile(
    shape_words=COCO.shape_words, colour_prefix=("", "", "grumpy ", "sleepy "), size_words=COCO.size_words, backgrounds=_BG,
    relations={"left": ("hiding next to", "sneaking up beside"), "right": ("hiding next to", "sneaking up beside"),
               "above": ("showing off above", "hovering awkwardly over"), "below": ("stuck under", "trying to hide under")},
    one=("{a} {bg} wondering where all its friends went", "{a} that clearly had too much coffee {bg}",
         "{a} pretending to be a piece of modern art {bg}", "{a} {bg} , waiting for someone to notice it",
         "{a} practicing its best pose for the camera"),
    two=("{a} trying to escape from {b} {bg}", "{a} arguing with {b} about who is prettier", "{a} {rel} {b} , hoping not to be seen",
         "{a} photobombing {b} {bg}", "{a} and {b} having a staring contest"),
    three=("{a} , {b} and {c} forming the worst band ever {bg}", "{a} and {b} gossiping about {c}",
           "{a} , {b} and {c} stuck in a very awkward meeting {bg}", "{a} {rel} {b} while {c} laughs"),
    p_background=0.6,
)

PROFILES: dict[str, Profile] = {"coco": COCO, "flickr": FLICKR, "romantic": ROMANTIC, "humor": HUMOR}

_REGIONS = (("top left corner", "top", "top right corner"), ("left side", "center", "right side"),
            ("bottom left corner", "bottom", "bottom right corner"))


def region(obj: Obj) -> str:
    col = 0 if obj.x < 0.36 else 2 if obj.x > 0.64 else 1
    row = 0 if obj.y < 0.36 else 2 if obj.y > 0.64 else 1
    return _REGIONS[row][col]


def relation(a: Obj, b: Obj) -> str:
    """Where ``a`` is with respect to ``b``: left, right, above or below."""
    dx, dy = a.x - b.x, a.y - b.y
    if abs(dx) >= abs(dy):
        return "left" if dx < 0 else "right"
    return "above" if dy < 0 else "below"


def _article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def noun_phrase(obj: Obj, profile: Profile, rng: np.random.Generator) -> str:
    """The object without its article: "small bright red disc"."""
    words = []
    if obj.size != "medium" and rng.random() < profile.p_size:
        words.append(str(rng.choice(profile.size_words[obj.size])))
    if rng.random() < profile.p_colour:
        prefix = str(rng.choice(profile.colour_prefix))
        if obj.colour in ("white", "black") and prefix in ("dark ", "light "):
            prefix = ""
        words.append(prefix + obj.colour)
    words.append(str(rng.choice(profile.shape_words[obj.shape])))
    return " ".join(w for w in words if w)


def caption(scene: Scene, profile: Profile, rng: np.random.Generator, template: str | None = None) -> str:
    """One caption of ``scene`` in ``profile``'s register (a random template unless given)."""
    objs = list(scene.objects)
    pool = {1: profile.one, 2: profile.two, 3: profile.three}[len(objs)]
    template = template or str(rng.choice(pool))
    order = [objs[i] for i in rng.permutation(len(objs))]
    slots = {}
    for key, obj in zip("abc", order):
        slots[key + "_"] = noun_phrase(obj, profile, rng)
        slots[key] = _article(slots[key + "_"])
    if len(order) >= 2:
        slots["rel"] = str(rng.choice(profile.relations[relation(order[0], order[1])]))
    if len(order) == 3:
        slots["rel2"] = str(rng.choice(profile.relations[relation(order[1], order[2])]))
    slots["region"] = region(order[0])
    slots["bg"] = str(rng.choice(profile.backgrounds[scene.background])) if rng.random() < profile.p_background else ""
    text = " ".join(template.format(**slots).split())
    text = text.replace(" ,", ",").replace(" :", ":").rstrip(" ,:")
    if rng.random() < profile.capitalise:
        text = text[0].upper() + text[1:]
    if rng.random() < profile.period:
        text += "."
    return text


def captions(scene: Scene, profile: Profile, rng: np.random.Generator, n: int = 5) -> list[str]:
    """``n`` captions with distinct templates where the profile has enough of them."""
    pool = {1: profile.one, 2: profile.two, 3: profile.three}[len(scene.objects)]
    picks = rng.permutation(len(pool))
    return [caption(scene, profile, rng, pool[picks[i % len(pool)]]) for i in range(n)]


# -- parsing a caption back into a scene (for the text-to-image generator) ------------------

def _lexicon() -> list[tuple[tuple[str, ...], str]]:
    words = {}
    for profile in PROFILES.values():
        for shape, synonyms in profile.shape_words.items():
            for syn in synonyms:
                words[tuple(syn.split())] = shape
    return sorted(words.items(), key=lambda kv: -len(kv[0]))


SHAPE_LEXICON = _lexicon()
SIZE_LEXICON = {w: size for profile in PROFILES.values() for size, ws in profile.size_words.items() for w in ws if w}
RELATION_LEXICON = sorted({(tuple(p.split()), rel) for profile in PROFILES.values() for rel, ps in profile.relations.items()
                           for p in ps if p not in ("next to", "beside", "close beside", "snuggled next to",
                                                    "hiding next to", "sneaking up beside")}, key=lambda kv: -len(kv[0]))


@dataclass(frozen=True)
class Mention:
    shape: str
    colour: str | None
    size: str | None
    start: int  # token index


def tokens(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower())


def parse(text: str) -> tuple[list[Mention], list[tuple[int, str, int]]]:
    """Object mentions in order, and relations (i, rel, j) meaning mention i is rel of mention j."""
    toks = tokens(text)
    mentions: list[Mention] = []
    previous_end = 0
    i = 0
    while i < len(toks):
        for words, shape in SHAPE_LEXICON:
            if tuple(toks[i:i + len(words)]) == words:
                colour = size = None
                # Attributes are the few words before the noun, never past the previous object.
                for back in range(max(0, i - 3, previous_end), i):
                    if toks[back] in COLOURS:
                        colour = toks[back]
                    if toks[back] in SIZE_LEXICON:
                        size = SIZE_LEXICON[toks[back]]
                mentions.append(Mention(shape, colour, size, i))
                previous_end = i + len(words)
                i += len(words) - 1
                break
        i += 1
    relations = []
    for k in range(len(mentions) - 1):
        between = toks[mentions[k].start:mentions[k + 1].start]
        for words, rel in RELATION_LEXICON:
            n = len(words)
            if any(tuple(between[p:p + n]) == words for p in range(len(between) - n + 1)):
                relations.append((k, rel, k + 1))
                break
    return mentions, relations


def all_words() -> set[str]:
    """Every content word the world uses for objects, colours and sizes."""
    out = set(COLOURS) | set(SHAPES) | set(SIZES)
    for profile in PROFILES.values():
        for synonyms in profile.shape_words.values():
            out.update(w for s in synonyms for w in s.split())
    return out
