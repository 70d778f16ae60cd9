"""Identities for the procedural CG head (pvp_runtime/synthetic_head.py).

A :class:`Look` is everything about the head that is *who* rather than *what it is doing*:
proportions, colours, hair, brows, lips, eyes.  Channels pose a head; a look decides whose head
it is, so a fit or benchmark can be checked on faces nobody tuned it on.

Lengths are head-local world units (the skull is about 1.6 wide, the crop 3.0); colours are
linear RGB.  ``Look()`` is the demo subject's head, the one the shipped demo was fit on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

Colour = tuple[float, float, float]


@dataclass(frozen=True)
class Look:
    name: str = "demo"
    # Face proportions.
    skull_width: float = 0.78      # half-widths of the skull ellipsoid (it includes the cheeks and jaw)
    skull_height: float = 1.0
    jaw_width: float = 0.42        # half-width of the chin-and-jaw part
    chin_length: float = 0.32      # its half-height: longer chins hang lower
    cheek_fullness: float = 1.0    # scales the cheeks
    nose_length: float = 0.2       # half-height of the nose; the bridge top stays between the eyes
    nose_width: float = 0.11
    eye_spacing: float = 0.28      # each eye's distance from the midline
    eye_size: float = 1.0          # scales eyeballs and lids
    iris_size: float = 0.065
    pupil_size: float = 0.0        # 0: no pupil (the demo head has none)
    # Hair.
    hair_volume: float = 1.0       # scales the hair cap
    hair_coverage: float = 0.0     # moves the cap forward and down: a lower hairline
    fringe: bool = False           # a fringe over the forehead
    hair_length: float = 0.0       # 0: short; > 0 hair falls behind the face and neck this far
    # Brows and lips.
    brow_height: float = 0.42
    brow_length: float = 0.17      # half-length
    brow_thickness: float = 0.035  # half-thickness
    brow_tilt: float = 0.0         # degrees; > 0 raises the outer ends
    lip_width: float = 0.22        # half-width of the upper lip
    lip_fullness: float = 1.0      # scales the lips' height
    # Colours (linear RGB).
    skin_colour: Colour = (0.62, 0.40, 0.30)
    hair_colour: Colour = (0.16, 0.09, 0.05)
    brow_colour: Colour = (0.10, 0.06, 0.035)
    lip_colour: Colour = (0.50, 0.13, 0.13)
    iris_colour: Colour = (0.08, 0.18, 0.30)


DEMO = Look()

LOOKS: dict[str, Look] = {
    "demo": DEMO,
    # Pale, long red hair with a fringe, big wide-set green eyes, thin arched brows, a narrow long face.
    "ada": Look("ada", skull_width=0.72, skull_height=1.06, jaw_width=0.36, chin_length=0.34,
                cheek_fullness=0.85, nose_length=0.17, nose_width=0.09, eye_spacing=0.30, eye_size=1.12,
                iris_size=0.07, pupil_size=0.028, hair_volume=1.06, hair_coverage=0.06, fringe=True,
                hair_length=1.0, brow_height=0.45, brow_length=0.16, brow_thickness=0.022, brow_tilt=8.0,
                lip_width=0.2, lip_fullness=1.25, skin_colour=(0.80, 0.56, 0.46),
                hair_colour=(0.42, 0.09, 0.025), brow_colour=(0.25, 0.07, 0.03),
                lip_colour=(0.62, 0.16, 0.20), iris_colour=(0.10, 0.30, 0.10)),
    # Tan, short black hair, thick straight black brows, brown eyes close together, a wide square jaw.
    "bao": Look("bao", skull_width=0.84, skull_height=0.96, jaw_width=0.52, chin_length=0.28,
                cheek_fullness=1.1, nose_length=0.18, nose_width=0.14, eye_spacing=0.26, eye_size=0.85,
                iris_size=0.06, pupil_size=0.024, hair_volume=0.97, hair_coverage=0.04, hair_length=0.0,
                brow_height=0.40, brow_length=0.18, brow_thickness=0.05, brow_tilt=-3.0, lip_width=0.23,
                lip_fullness=0.7, skin_colour=(0.50, 0.31, 0.17), hair_colour=(0.015, 0.013, 0.012),
                brow_colour=(0.012, 0.01, 0.009), lip_colour=(0.38, 0.14, 0.11),
                iris_colour=(0.07, 0.03, 0.012)),
    # Dark skin, grey receding hair, round full cheeks, a broad nose and full lips.
    "cyd": Look("cyd", skull_width=0.82, skull_height=1.0, jaw_width=0.46, chin_length=0.30,
                cheek_fullness=1.3, nose_length=0.19, nose_width=0.155, eye_spacing=0.29, eye_size=0.95,
                iris_size=0.062, pupil_size=0.025, hair_volume=0.9, hair_coverage=-0.12, hair_length=0.0,
                brow_height=0.43, brow_length=0.16, brow_thickness=0.03, brow_tilt=-6.0, lip_width=0.24,
                lip_fullness=1.35, skin_colour=(0.17, 0.085, 0.05), hair_colour=(0.38, 0.37, 0.36),
                brow_colour=(0.20, 0.19, 0.18), lip_colour=(0.16, 0.05, 0.045),
                iris_colour=(0.04, 0.018, 0.008)),
    # Light skin, a big mane of blonde hair, blue eyes, a pointed chin and a long thin nose.
    "eve": Look("eve", skull_width=0.76, skull_height=1.02, jaw_width=0.34, chin_length=0.36,
                cheek_fullness=0.95, nose_length=0.23, nose_width=0.095, eye_spacing=0.28, eye_size=1.0,
                iris_size=0.066, pupil_size=0.026, hair_volume=1.2, hair_coverage=0.02, hair_length=0.7,
                brow_height=0.44, brow_length=0.17, brow_thickness=0.026, brow_tilt=4.0, lip_width=0.21,
                lip_fullness=1.0, skin_colour=(0.74, 0.50, 0.38), hair_colour=(0.62, 0.44, 0.18),
                brow_colour=(0.30, 0.20, 0.09), lip_colour=(0.58, 0.22, 0.22),
                iris_colour=(0.12, 0.28, 0.55)),
}

# Plausible colours to draw random identities from (linear RGB).
_SKIN_TONES = ((0.82, 0.58, 0.48), (0.70, 0.47, 0.34), (0.52, 0.33, 0.19), (0.33, 0.18, 0.10),
               (0.15, 0.075, 0.045))
_HAIR_COLOURS = ((0.015, 0.013, 0.012), (0.09, 0.05, 0.025), (0.22, 0.12, 0.05), (0.42, 0.10, 0.03),
                 (0.62, 0.45, 0.20), (0.40, 0.39, 0.38))
_IRIS_COLOURS = ((0.05, 0.022, 0.01), (0.16, 0.10, 0.03), (0.09, 0.26, 0.10), (0.12, 0.28, 0.55),
                 (0.22, 0.25, 0.27))


def random_look(seed: int) -> Look:
    """A plausible identity drawn from ``seed`` (the same seed always gives the same look)."""
    rng = np.random.default_rng(seed)
    u = lambda low, high: float(rng.uniform(low, high))  # noqa: E731
    pick = lambda palette: palette[int(rng.integers(len(palette)))]  # noqa: E731


    def jitter(colour, amount):  # mostly lighter or darker, a little hue: no green hair
        shade = rng.uniform(1 - amount, 1 + amount)
        return tuple(float(c * shade * rng.uniform(0.95, 1.05)) for c in colour)

    tone = u(0, len(_SKIN_TONES) - 1)
    low = int(tone)
    high = min(low + 1, len(_SKIN_TONES) - 1)
    skin = tuple(float(a + (b - a) * (tone - low)) for a, b in zip(_SKIN_TONES[low], _SKIN_TONES[high]))
    hair = jitter(pick(_HAIR_COLOURS), 0.15)
    # Brows are usually a darker shade of the hair; lips a redder, darker shade of the skin.
    brows = tuple(float(c * u(0.45, 0.8)) for c in hair)
    lips = (float(skin[0] * u(0.7, 0.85)), float(skin[1] * u(0.3, 0.45)), float(skin[2] * u(0.35, 0.55)))
    return Look(
        name=f"random:{seed}",
        skull_width=u(0.72, 0.85), skull_height=u(0.95, 1.06), jaw_width=u(0.34, 0.52),
        chin_length=u(0.28, 0.36), cheek_fullness=u(0.8, 1.3), nose_length=u(0.16, 0.23),
        nose_width=u(0.09, 0.155), eye_spacing=u(0.26, 0.30), eye_size=u(0.85, 1.12),
        iris_size=u(0.058, 0.07), pupil_size=u(0.022, 0.028), hair_volume=u(0.9, 1.2),
        hair_coverage=u(-0.12, 0.1), fringe=bool(rng.random() < 0.3),
        hair_length=float(rng.choice([0.0, u(0.5, 1.0)])), brow_height=u(0.40, 0.45),
        brow_length=u(0.15, 0.18), brow_thickness=u(0.02, 0.05), brow_tilt=u(-6, 8),
        lip_width=u(0.2, 0.24), lip_fullness=u(0.7, 1.35), skin_colour=skin, hair_colour=hair,
        brow_colour=brows, lip_colour=lips, iris_colour=jitter(pick(_IRIS_COLOURS), 0.1))


def look_from_spec(spec: str) -> Look:
    """``demo``, ``ada`` ... (a named look) or ``random:SEED``."""
    if spec in LOOKS:
        return LOOKS[spec]
    match = re.fullmatch(r"random:(\d+)", spec)
    if match:
        return random_look(int(match.group(1)))
    raise ValueError(f"unknown look {spec!r}: expected one of {', '.join(LOOKS)} or random:SEED")
