"""What a synthetic person looks like: clothing colours and patterns, hair, bag, build, height.

Each identity's look is a pure function of (seed, pid); a share of identities (`twin_fraction`) is
drawn as a near-duplicate of the previous id (close colours, same garments), so a dataset holds
deliberately confusable pairs.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np

RGB = tuple[int, int, int]

# clothing colours, weighted towards the dark and neutral tones real crowds wear
CLOTHING = {
    "black": (25, 25, 28),
    "charcoal": (60, 60, 65),
    "grey": (128, 128, 128),
    "white": (225, 225, 220),
    "navy": (30, 40, 85),
    "blue": (40, 80, 170),
    "light blue": (130, 170, 215),
    "denim": (70, 95, 135),
    "red": (180, 30, 35),
    "dark red": (110, 20, 30),
    "green": (40, 120, 60),
    "olive": (100, 105, 50),
    "khaki": (170, 150, 105),
    "beige": (205, 190, 160),
    "brown": (100, 65, 40),
    "yellow": (225, 200, 50),
    "orange": (230, 120, 40),
    "pink": (225, 140, 170),
    "purple": (105, 55, 135),
    "teal": (30, 125, 125),
}
CLOTHING_WEIGHTS = {"black": 3.0, "charcoal": 2.0, "grey": 2.0, "white": 2.0, "navy": 2.0, "denim": 1.5}
SKIN = [(245, 215, 190), (225, 185, 150), (200, 150, 110), (165, 115, 80), (120, 80, 55), (90, 60, 45)]
HAIR = [(20, 18, 16), (55, 35, 25), (95, 65, 40), (190, 160, 100), (150, 150, 150), (140, 60, 30)]

UPPER_PATTERNS = ("plain", "stripes", "checks")
LOWER_STYLES = ("trousers", "shorts", "skirt")
HAIR_STYLES = ("short", "long", "bald")
BAGS = ("none", "backpack", "shoulder", "handbag")


@dataclass(frozen=True)
class IdentityLook:
    """The clothing and body of one person; colours are RGB 0..255."""

    skin: RGB
    hair: RGB
    hair_style: str
    hat: RGB | None
    upper: RGB
    upper_secondary: RGB
    upper_pattern: str
    pattern_period: int  # pixels per stripe / check at full height
    long_sleeves: bool
    lower: RGB
    lower_style: str
    shoes: RGB
    bag: str
    bag_color: RGB
    bag_side: int  # +1: on the person's right as seen from the front, -1: left
    build: float  # width factor, ~0.8 (slim) .. 1.2 (broad)
    height: float  # height factor, ~0.86 .. 1.06


def _jitter(rng: np.random.Generator, color: RGB, amount: float) -> RGB:
    shifted = np.clip(np.asarray(color, dtype=np.float64) + rng.uniform(-amount, amount, 3), 0, 255)
    return tuple(int(round(c)) for c in shifted)  # type: ignore[return-value]


def _clothing_colour(rng: np.random.Generator, avoid: RGB | None = None) -> RGB:
    names = list(CLOTHING)
    weights = np.array([CLOTHING_WEIGHTS.get(n, 1.0) for n in names])
    for _ in range(8):
        colour = CLOTHING[names[rng.choice(len(names), p=weights / weights.sum())]]
        if avoid is None or sum(abs(a - b) for a, b in zip(colour, avoid, strict=True)) > 90:
            break
    return _jitter(rng, colour, 18)


def sample_look(rng: np.random.Generator) -> IdentityLook:
    """Draw a random person look."""
    upper = _clothing_colour(rng)
    hair_style = HAIR_STYLES[rng.choice(3, p=[0.55, 0.38, 0.07])]
    return IdentityLook(
        skin=_jitter(rng, SKIN[rng.integers(len(SKIN))], 10),
        hair=_jitter(rng, HAIR[rng.choice(len(HAIR), p=[0.35, 0.25, 0.15, 0.1, 0.1, 0.05])], 10),
        hair_style=hair_style,
        hat=_clothing_colour(rng) if rng.random() < 0.12 else None,
        upper=upper,
        upper_secondary=_clothing_colour(rng, avoid=upper),
        upper_pattern=UPPER_PATTERNS[rng.choice(3, p=[0.5, 0.28, 0.22])],
        pattern_period=int(rng.integers(3, 8)),
        long_sleeves=bool(rng.random() < 0.6),
        lower=_clothing_colour(rng),
        lower_style=LOWER_STYLES[rng.choice(3, p=[0.68, 0.14, 0.18])],
        shoes=_jitter(rng, CLOTHING[("black", "white", "brown", "grey")[rng.integers(4)]], 15),
        bag=BAGS[rng.choice(4, p=[0.4, 0.25, 0.2, 0.15])],
        bag_color=_clothing_colour(rng),
        bag_side=int(rng.choice((-1, 1))),
        build=float(rng.uniform(0.82, 1.2)),
        height=float(rng.uniform(0.86, 1.06)),
    )


def near_duplicate(look: IdentityLook, rng: np.random.Generator) -> IdentityLook:
    """A different person dressed almost like `look`: same garments, colours shifted a little,
    at most one small difference (bag, hat or sleeves), slightly different body."""
    changed = replace(
        look,
        skin=_jitter(rng, look.skin, 14),
        hair=_jitter(rng, look.hair, 14),
        upper=_jitter(rng, look.upper, 22),
        upper_secondary=_jitter(rng, look.upper_secondary, 22),
        lower=_jitter(rng, look.lower, 22),
        shoes=_jitter(rng, look.shoes, 20),
        bag_color=_jitter(rng, look.bag_color, 22),
        build=float(np.clip(look.build + rng.uniform(-0.08, 0.08), 0.8, 1.22)),
        height=float(np.clip(look.height + rng.uniform(-0.04, 0.04), 0.84, 1.08)),
    )
    difference = rng.integers(4)
    if difference == 0:
        changed = replace(changed, bag=BAGS[(BAGS.index(look.bag) + 1 + rng.integers(3)) % 4])
    elif difference == 1:
        changed = replace(changed, hat=None if look.hat is not None else _clothing_colour(rng))
    elif difference == 2:
        changed = replace(changed, long_sleeves=not look.long_sleeves)
    return changed


def is_twin(seed: int, pid: int, twin_fraction: float) -> bool:
    """Whether identity `pid` is drawn as a near-duplicate of identity `pid - 1`."""
    return pid > 1 and np.random.default_rng([seed, 4, pid]).random() < twin_fraction


@lru_cache(maxsize=4096)
def identity_look(seed: int, pid: int, twin_fraction: float = 0.1) -> IdentityLook:
    """The look of identity `pid` (>= 1) in the dataset made with `seed`."""
    if pid < 1:
        raise ValueError(f"identity looks exist for pid >= 1, not {pid}")
    first = pid
    while is_twin(seed, first, twin_fraction):
        first -= 1
    look = sample_look(np.random.default_rng([seed, 1, first]))
    for twin in range(first + 1, pid + 1):  # a chain of near-duplicates, each from the one before
        look = near_duplicate(look, np.random.default_rng([seed, 1, twin]))
    return look


def one_off_look(seed: int, index: int) -> IdentityLook:
    """The look of the `index`-th distractor (a passer-by outside the identity set)."""
    return sample_look(np.random.default_rng([seed, 3, index]))
