"""A procedural CG head driven by the rig channels: the stand-in for a real person's video.

No real face video or face-model weights can be downloaded here, so the demo
subject is fit on clips of this head.  It is built from ellipsoids (skull,
nose, cheeks, eyes with irises and lids, brows, lips, mouth cavity, a hinged
jaw, neck) and ray-cast in numpy with key, fill, rim and specular lighting, so
a 128x128 frame costs milliseconds instead of the seconds Cycles needs on two
cores.  Every frame is labelled exactly by the channels that posed it.

Coordinates are FLAME camera space (x: subject's left, y: up, z: towards the
camera), the space of the rig channels; the camera is orthographic, looking
down -z, as an FFHQ-aligned crop roughly is.

Expression channels used (others have no effect; they are read by number, so a
layout with 50 or 120 expressions drives the same ten):
  expr_00 smile (> 0) / frown (< 0)   expr_05 pucker
  expr_01 brow raise                  expr_06 mouth stretch
  expr_02 brow furrow                 expr_07 nose wrinkle
  expr_03 blink                       expr_08 left smirk
  expr_04 cheek puff                  expr_09 left brow raise

Gaze: ``eye_l_*`` (the subject's left eye, image right) and ``eye_r_*`` are axis-angles in
the head's frame, with the head's sense: ``eye_x`` > 0 looks down, ``eye_y`` > 0 looks to
the subject's left.  They turn the iris (and pupil) about a pivot behind the eyeball's
centre; the white stays put and the upper lid follows the eye up or down.  ``eye_z`` (a
twist about the line of sight) has no visible effect on a round iris.  Landmarks ignore
gaze except for the lids' rise.

Identity: every render and landmark function takes ``look=`` (a :class:`Look`, see
pvp_runtime/synthetic_looks.py: proportions, skin, hair, brows, lips, iris).  ``LOOKS``
holds named ones ("demo", the default, is the demo subject's head, pixel for pixel as
before looks existed; "ada", "bao", "cyd", "eve" are other people) and
``random_look(seed)`` draws a plausible stranger, so a result can be checked on faces
nobody tuned it on.  ``performance(..., gaze=True, num_expressions=50)`` adds eye motion
and a wider layout; its defaults give the demo capture's frames.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .contract.channels import ChannelLayout, axis_angle_to_matrix, head_rotation_matrix
from .synthetic_looks import DEMO, LOOKS, Look, look_from_spec, random_look  # noqa: F401 (re-exported)

NUM_EXPRESSIONS = 10
VIEW_HALF_WIDTH = 1.5  # world units from the centre of the crop to its edge
CROP_CENTRE_Y = -0.12  # the crop is centred a little below the skull centre, on the face
NECK_PIVOT = np.array([0.0, -0.9, 0.0])  # the global rotation turns the head about the neck base
JAW_HINGE = np.array([0.0, -0.32, 0.1])

MAX_GAZE_PITCH = 0.2  # rad: the range performance(gaze=True) looks around in
MAX_GAZE_YAW = 0.35
IRIS_LEVER = 0.135  # eyeball pivot to iris centre: the pivot sits 0.05 behind the eye's centre
LID_FOLLOW = 0.15  # upper-lid rise per radian of upward gaze

CAVITY = (0.05, 0.01, 0.01)
EYE_WHITE = (0.85, 0.85, 0.82)
PUPIL = (0.01, 0.01, 0.012)


@dataclass
class Ellipsoid:
    centre: np.ndarray   # world position
    axes: np.ndarray     # 3x3: columns are the world-space semi-axes
    colour: tuple
    shininess: float = 0.15


def _ellipsoid(centre, radii, colour, rotation=None, shininess=0.15):
    rotation = np.eye(3) if rotation is None else rotation
    return Ellipsoid(np.asarray(centre, float), rotation @ np.diag(radii), colour, shininess)


def _rot_x(a):
    return axis_angle_to_matrix([a, 0, 0])


def _rot_z(a):
    return axis_angle_to_matrix([0, 0, a])


def head_parts(frame: np.ndarray, layout: ChannelLayout, look: Look = DEMO) -> tuple[list[Ellipsoid], dict]:
    """The posed head as world-space ellipsoids plus the landmark anchors' world positions."""
    value = dict(zip(layout.names, (float(v) for v in frame)))
    shown = [float(v) for v in frame[layout.slice("expression")][:NUM_EXPRESSIONS]]
    e = shown + [0.0] * (NUM_EXPRESSIONS - len(shown))
    smile, brow_up, furrow, blink, puff, pucker, stretch, wrinkle, smirk, brow_l = e
    global_r = head_rotation_matrix(value["head_yaw"], value["head_pitch"], value["head_roll"])
    neck_r = axis_angle_to_matrix([value["neck_x"], value["neck_y"], value["neck_z"]])
    jaw_r = axis_angle_to_matrix([value["jaw_x"], value["jaw_y"], value["jaw_z"]])
    gaze = {side: axis_angle_to_matrix([value[f"eye_{side}_{axis}"] for axis in "xyz"]) for side in "lr"}
    head_r = global_r @ neck_r
    # Head-local point -> world: neck then global rotation, both about the neck pivot.
    to_world = lambda p: NECK_PIVOT + head_r @ (np.asarray(p, float) - NECK_PIVOT)
    jaw_local = lambda p: JAW_HINGE + jaw_r @ (np.asarray(p, float) - JAW_HINGE)

    local: list[tuple] = []  # (centre, radii, colour, local rotation, shininess, on_jaw)

    def add(centre, radii, colour, rotation=None, shininess=0.15, on_jaw=False):
        local.append((np.asarray(centre, float), np.asarray(radii, float), colour,
                      np.eye(3) if rotation is None else rotation, shininess, on_jaw))

    # The look's proportions enter as ratios and differences to the demo head's, so the demo
    # look computes exactly today's numbers (x * 1.0 and x + 0.0 are exact).
    skin, s = look.skin_colour, look.eye_size
    wide = look.skull_width / DEMO.skull_width
    nose_drop = look.nose_length - DEMO.nose_length
    add((0, 0.05, 0), (look.skull_width, look.skull_height, 0.85), skin)       # skull
    _add_hair(add, look, wide)
    add((0, -0.05 - nose_drop, 0.86),
        (look.nose_width + 0.01 * wrinkle, look.nose_length - 0.025 * wrinkle, 0.16), skin)  # nose
    tip = look.nose_width / DEMO.nose_width
    add((0, 0.02 - nose_drop, 0.97), (0.05 * tip, 0.05 * tip, 0.05), skin)   # nose tip
    full_cheek = look.cheek_fullness
    for side, sign in (("l", 1.0), ("r", -1.0)):
        add((sign * (0.36 * wide), -0.2 + 0.02 * smile, 0.64),
            ((0.15 + 0.03 * puff) * full_cheek, (0.11 + 0.015 * puff + 0.01 * smile) * full_cheek,
             (0.11 + 0.04 * puff) * full_cheek), skin)                                 # cheek
        eye_centre = np.array([sign * look.eye_spacing, 0.2, 0.76])
        add(eye_centre, (0.14 * s, 0.11 * s, 0.1 * s), EYE_WHITE, shininess=0.6)
        _add_iris(add, eye_centre, gaze[side], look)
        closed = min(max(blink / 3.0, 0.0), 1.0)
        lid_lift = _lid_lift(value[f"eye_{side}_x"], closed, s)
        add(eye_centre + (0, (0.06 - 0.05 * closed) * s + lid_lift, 0.01 * s),
            (0.15 * s, (0.03 + 0.1 * closed) * s, 0.115 * s), skin)                   # upper lid
        brow_lift = 0.05 * brow_up - 0.03 * furrow + (0.05 * brow_l if side == "l" else 0.0)
        tilt = sign * math.radians(-10 * furrow + 5 * brow_up + look.brow_tilt)
        add((sign * (look.eye_spacing - 0.025 * furrow), look.brow_height + brow_lift, 0.76),
            (look.brow_length, look.brow_thickness, 0.05), look.brow_colour, rotation=_rot_z(tilt), shininess=0.02)
    open_amount = max(value["jaw_x"], 0.0)
    width = (1 + 0.12 * stretch - 0.18 * pucker) * (look.lip_width / DEMO.lip_width)
    full = look.lip_fullness
    lips = look.lip_colour
    mouth = np.array([0.0, -0.42, 0.72])
    add(mouth + (0, -0.03 - 0.3 * open_amount, -0.04), (0.19 * width, 0.02 + 0.45 * open_amount, 0.08), CAVITY,
        shininess=0.0)
    add(mouth + (0, 0.045 + 0.01 * wrinkle, 0.02 + 0.03 * pucker), (0.22 * width, 0.04 * full, 0.07 + 0.02 * pucker),
        lips, shininess=0.4)
    corners = {}
    for side, sign in (("l", 1.0), ("r", -1.0)):
        lift = 0.035 * smile + (0.035 * smirk if side == "l" else 0.0)
        corners[side] = mouth + (sign * (0.21 * width + 0.02 * smile), lift, 0.0)
        add(corners[side], (0.045 * full, 0.045 * full, 0.045 * full), lips, shininess=0.4)
    add((0, -0.64 - (look.chin_length - DEMO.chin_length), 0.45), (look.jaw_width, look.chin_length, 0.36), skin,
        on_jaw=True)                                                                    # chin and jaw
    lower_lip = mouth + (0, -0.06, 0.02 + 0.03 * pucker)
    add(lower_lip, (0.2 * width, 0.045 * full, 0.07 + 0.02 * pucker), lips, shininess=0.4, on_jaw=True)

    parts = []
    for centre, radii, colour, rotation, shininess, on_jaw in local:
        r = head_r @ (jaw_r if on_jaw else np.eye(3)) @ rotation
        c = to_world(jaw_local(centre) if on_jaw else centre)
        parts.append(_ellipsoid(c, radii, colour, r, shininess))
    # The neck follows the global rotation only, and hangs below the pivot.
    neck = look.jaw_width / DEMO.jaw_width
    parts.append(_ellipsoid(NECK_PIVOT + global_r @ (np.array([0, -0.35, -0.1])), (0.4 * neck, 0.7, 0.4 * neck),
                            skin, global_r))

    lid_lifts = {side: _lid_lift(value[f"eye_{side}_x"], closed, s) for side in "lr"}
    anchors = _landmark_anchors(look, mouth, corners, lower_lip, width, open_amount, blink, lid_lifts, brow_up,
                                furrow, brow_l)
    world_anchor = {}
    for name, points in anchors.items():
        on_jaw = name in ("jaw_line", "lower_lip")
        world_anchor[name] = np.array([to_world(jaw_local(p) if on_jaw else p) for p in points])
    return parts, world_anchor


def _add_hair(add, look: Look, wide: float) -> None:
    """The cap over the crown, and the look's fringe and long hair."""
    volume, cover = look.hair_volume, look.hair_coverage
    # A fuller cap grows outwards and backwards, not over the face: its front stays put.
    add((0, 0.42 - 0.5 * cover, -0.12 + cover - 0.82 * (volume - 1)),
        (0.82 * volume * wide, 0.72 * volume, 0.82 * volume), look.hair_colour, shininess=0.05)
    if look.fringe:
        # Bulges out of the forehead above the brows, highest at the temples: a rounded fringe.
        add((0, 0.5 - 0.5 * cover, 0.1 + cover), (0.55 * wide, 0.5, 0.68), look.hair_colour, shininess=0.05)
    if look.hair_length > 0:
        length = look.hair_length
        add((0, 0.1 - 0.5 * length, -0.35), (0.9 * volume * wide, 0.8 + 0.5 * length, 0.55), look.hair_colour,
            shininess=0.05)


def _lid_lift(eye_pitch: float, closed: float, eye_size: float) -> float:
    """The upper lid rides up when the eye looks up (eye_x < 0) and down when it looks down."""
    return -LID_FOLLOW * eye_pitch * (1 - closed) * eye_size


def _add_iris(add, eye_centre: np.ndarray, gaze: np.ndarray, look: Look) -> None:
    """Iris (and pupil) turned by the eye's rotation about the eyeball's pivot; the white stays put."""
    s = look.eye_size
    rest = eye_centre + (0.0, 0.0, 0.085 * s)
    lever = np.array([0.0, 0.0, IRIS_LEVER * s])  # eyeball pivot -> iris centre
    centre = rest + (gaze - np.eye(3)) @ lever  # exactly ``rest`` when the eye is at rest
    add(centre, (look.iris_size, look.iris_size, 0.03 * s), look.iris_colour, rotation=gaze, shininess=0.8)
    if look.pupil_size > 0:
        add(centre + gaze @ np.array([0.0, 0.0, 0.022 * s]), (look.pupil_size, look.pupil_size, 0.012 * s), PUPIL,
            rotation=gaze, shininess=0.9)


def _landmark_anchors(look, mouth, corners, lower_lip, width, open_amount, blink, lid_lifts, brow_up, furrow,
                      brow_l):
    """Head-local points in the iBUG-68 groups (approximate for jaw line and nose)."""
    anchors = {}
    jaw = []
    skull_spread = look.skull_width / DEMO.skull_width - 1
    jaw_spread = look.jaw_width / DEMO.jaw_width - 1
    drop = 0.6 + 2 * (look.chin_length - DEMO.chin_length)
    for i in range(17):
        a = math.radians(-80 + 160 * i / 16)
        upper = math.sin(a) ** 2  # the top of the jaw line follows the skull, its bottom the jaw
        spread = 1 + upper * skull_spread + (1 - upper) * jaw_spread
        jaw.append((-math.sin(a) * 0.72 * spread, -0.3 - drop * math.cos(a), 0.45 + 0.2 * math.cos(a)))
    anchors["jaw_line"] = jaw
    brows = []
    shift = look.eye_spacing - DEMO.eye_spacing
    grow = look.brow_length - DEMO.brow_length
    rise = (look.brow_height - DEMO.brow_height) + (look.brow_thickness - DEMO.brow_thickness)
    slope = math.tan(math.radians(look.brow_tilt))
    for side, sign in (("r", -1.0), ("l", 1.0)):
        lift = 0.05 * brow_up - 0.03 * furrow + (0.05 * brow_l if side == "l" else 0.0)
        outer, inner = 0.45 + shift + grow, 0.11 + shift - grow
        xs = np.linspace(outer, inner, 5) if side == "r" else np.linspace(inner, outer, 5)
        brows += [(sign * x, 0.45 + rise + lift + slope * (x - look.eye_spacing), 0.8) for x in xs]
    anchors["brows"] = brows
    nose_drop = look.nose_length - DEMO.nose_length
    nostril = look.nose_width / DEMO.nose_width
    anchors["nose"] = [(0, 0.3 - (0.11 + 2 * nose_drop / 3) * i, 0.85 + 0.04 * i) for i in range(4)] + \
                      [(x * nostril, -0.2 - 2 * nose_drop, 0.9) for x in (-0.09, -0.045, 0, 0.045, 0.09)]
    eyes = []
    closed = min(max(blink / 3.0, 0.0), 1.0)
    s = look.eye_size
    for side, sign in (("r", -1.0), ("l", 1.0)):
        cx = sign * look.eye_spacing
        half = 0.12 * s
        outer, inner = (cx - half, cx + half) if side == "r" else (cx + half, cx - half)
        top, bottom = 0.2 + 0.06 * s * (1 - closed) + lid_lifts[side], 0.2 - 0.06 * s
        third = (inner - outer) / 3
        eyes += [(outer, 0.2, 0.8), (outer + third, top, 0.83), (outer + 2 * third, top, 0.83),
                 (inner, 0.2, 0.8), (outer + 2 * third, bottom, 0.83), (outer + third, bottom, 0.83)]
    anchors["eyes"] = eyes
    w = 0.21 * width
    full = look.lip_fullness
    upper = mouth[1] + 0.045
    lower_y = lower_lip[1]
    xs = np.linspace(-w, w, 7)
    outer_upper = [(x, upper + 0.03 * full * (1 - abs(x) / w), 0.8) for x in xs[1:-1]]
    outer_lower = [(x, lower_y - 0.03 * full * (1 - abs(x) / w), 0.8) for x in xs[::-1][1:-1]]
    inner_xs = np.linspace(-0.6 * w, 0.6 * w, 3)
    anchors["mouth"] = ([tuple(corners["r"])] + outer_upper + [tuple(corners["l"])] + outer_lower +
                        [tuple(corners["r"])] + [(x, upper - 0.02, 0.78) for x in inner_xs] +
                        [tuple(corners["l"])] + [(x, upper - 0.04 - 0.3 * open_amount, 0.78) for x in inner_xs[::-1]])
    anchors["lower_lip"] = []  # mouth anchors above already follow the lip geometry
    return anchors


def landmarks_68(world_anchor: dict, size: int) -> np.ndarray:
    points = np.concatenate([world_anchor[k] for k in ("jaw_line", "brows", "nose", "eyes", "mouth")])
    assert len(points) == 68
    return world_to_pixels(points, size)


def world_to_pixels(points: np.ndarray, size: int) -> np.ndarray:
    x = (points[:, 0] / VIEW_HALF_WIDTH + 1) * 0.5 * size
    y = (1 - (points[:, 1] - CROP_CENTRE_Y) / VIEW_HALF_WIDTH) * 0.5 * size
    return np.stack([x, y], axis=1).astype(np.float32)


# --------------------------------------------------------------------------- ray casting

KEY_LIGHT = np.array([0.5, 0.55, 0.67])
FILL_LIGHT = np.array([-0.7, 0.1, 0.7])
RIM_LIGHT = np.array([0.1, 0.5, -0.85])


def _unit(v):
    return v / np.linalg.norm(v)


def render_head(parts: list[Ellipsoid], size: int, supersample: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Orthographic ray cast.  Returns linear RGB [size, size, 3] (premultiplied) and coverage."""
    n = size * supersample
    pixel = 2 * VIEW_HALF_WIDTH / n
    coords = (np.arange(n) + 0.5) * pixel - VIEW_HALF_WIDTH  # x grows to the right, y grows down the rows
    nearest = np.full((n, n), np.inf)
    normal = np.zeros((n, n, 3))
    colour = np.zeros((n, n, 3))
    shininess = np.zeros((n, n))
    for part in parts:
        # Only rays inside the ellipsoid's screen-space bounding box can hit it.
        extent = np.linalg.norm(part.axes, axis=1)
        cols = _window(part.centre[0], extent[0], coords)
        rows = _window(-(part.centre[1] - CROP_CENTRE_Y), extent[1], coords)
        if cols.start >= cols.stop or rows.start >= rows.stop:
            continue
        gx, gy = np.meshgrid(coords[cols], -coords[rows] + CROP_CENTRE_Y)
        inverse = np.linalg.inv(part.axes)
        o = np.stack([gx - part.centre[0], gy - part.centre[1], np.full_like(gx, 10.0 - part.centre[2])], -1) @ inverse.T
        d = inverse @ np.array([0.0, 0.0, -1.0])
        a = d @ d
        b = 2 * (o @ d)
        c = np.einsum("...i,...i->...", o, o) - 1
        disc = b * b - 4 * a * c
        t = np.where(disc > 0, (-b - np.sqrt(np.clip(disc, 0, None))) / (2 * a), np.inf)
        window = (rows, cols)
        closer = (t < nearest[window]) & (t > 0)
        if not closer.any():
            continue
        nearest[window] = np.where(closer, t, nearest[window])
        local_point = o + np.where(np.isfinite(t), t, 0.0)[..., None] * d
        world_normal = np.nan_to_num(local_point @ inverse)  # inverse-transpose on the sphere normal
        world_normal /= np.maximum(np.linalg.norm(world_normal, axis=-1, keepdims=True), 1e-12)
        normal[window] = np.where(closer[..., None], world_normal, normal[window])
        colour[window] = np.where(closer[..., None], part.colour, colour[window])
        shininess[window] = np.where(closer, part.shininess, shininess[window])
    covered = np.isfinite(nearest)
    view = np.array([0.0, 0.0, 1.0])
    key, fill, rim = _unit(KEY_LIGHT), _unit(FILL_LIGHT), _unit(RIM_LIGHT)
    lambert = lambda light: np.clip(normal @ light, 0, None)[..., None]
    specular = shininess * np.clip(normal @ _unit(key + view), 0, None) ** 40
    fresnel = (1 - np.clip(normal @ view, 0, 1)) ** 3
    light = (0.12 + 1.05 * lambert(key) * np.array([1.0, 0.95, 0.88])
             + 0.35 * lambert(fill) * np.array([0.8, 0.88, 1.0]) + 0.6 * lambert(rim))
    rgb = colour * light + specular[..., None] + 0.15 * fresnel[..., None] * colour
    rgb[~covered] = 0
    rgb = rgb.reshape(size, supersample, size, supersample, 3).mean(axis=(1, 3))
    coverage = covered.reshape(size, supersample, size, supersample).mean(axis=(1, 3))
    return rgb.astype(np.float32), coverage.astype(np.float32)


def _window(centre: float, extent: float, coords: np.ndarray) -> slice:
    return slice(int(np.searchsorted(coords, centre - extent)), int(np.searchsorted(coords, centre + extent)))


def linear_to_srgb8(linear: np.ndarray) -> np.ndarray:
    x = np.clip(linear, 0, 1)
    srgb = np.where(x <= 0.0031308, x * 12.92, 1.055 * np.power(x, 1 / 2.4) - 0.055)
    return (srgb * 255).round().astype(np.uint8)


def render_frame(frame: np.ndarray, layout: ChannelLayout, size: int, background=(0.16, 0.16, 0.18),
                 supersample: int = 2, look: Look = DEMO) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One labelled frame: sRGB uint8 RGB over the backdrop, uint8 matte, and 68 landmarks (pixels)."""
    parts, anchors = head_parts(frame, layout, look)
    rgb, coverage = render_head(parts, size, supersample)
    # rgb is premultiplied by coverage (misses were zero), so "over" is one add.
    composite = rgb + np.asarray(background, np.float32) * (1 - coverage[..., None])
    return linear_to_srgb8(composite), (coverage * 255).round().astype(np.uint8), landmarks_68(anchors, size)


# --------------------------------------------------------------------------- motion

def _smooth_curve(rng, num_frames, fps, low, high, min_period_s=1.5, max_period_s=6.0, terms=3):
    t = np.arange(num_frames) / fps
    value = np.zeros(num_frames)
    for _ in range(terms):
        period = rng.uniform(min_period_s, max_period_s)
        value += rng.uniform(0.5, 1.0) * np.sin(2 * math.pi * t / period + rng.uniform(0, 2 * math.pi))
    value = (value - value.min()) / max(value.max() - value.min(), 1e-9)
    return low + value * (high - low)


def _pulses(rng, num_frames, fps, rate_per_s=0.25, width_s=0.8, peak=(1.5, 3.0)):
    """Sparse bumps: expressions come and go like a performance, not all at once."""
    t = np.arange(num_frames) / fps
    value = np.zeros(num_frames)
    count = rng.poisson(rate_per_s * max(t[-1], 1e-3)) + 2
    for centre in rng.uniform(0, max(t[-1], 1e-3), size=count):
        value += rng.uniform(*peak) * np.exp(-((t - centre) / (width_s * rng.uniform(0.6, 1.4))) ** 2)
    return np.clip(value, 0, 3.0)


def _gaze_path(rng, num_frames, fps, max_pitch=MAX_GAZE_PITCH, max_yaw=MAX_GAZE_YAW) -> np.ndarray:
    """``[frames, 2]`` eye pitch and yaw: fixations joined by saccades (a jump within about 40 ms)
    or, one move in four, by a smooth look; now and then back to the camera."""
    path = np.zeros((num_frames, 2))
    current = np.zeros(2)
    start = 0
    while start < num_frames:
        target = np.array([rng.uniform(-max_pitch, max_pitch), rng.uniform(-max_yaw, max_yaw)])
        if rng.random() < 0.25:
            target *= 0.15
        smooth = rng.random() < 0.25
        move = max(1, round(fps * (rng.uniform(0.4, 1.2) if smooth else 0.04)))
        hold = max(1, round(fps * rng.uniform(0.3, 1.5)))
        t = np.arange(1, move + 1) / move
        ease = t * t * (3 - 2 * t)  # smoothstep: starts and ends at rest
        segment = np.concatenate([current + (target - current) * ease[:, None], np.repeat(target[None], hold, 0)])
        path[start:start + len(segment)] = segment[:num_frames - start]
        start += len(segment)
        current = target
    return path


def performance(num_frames: int, fps: float = 25.0, seed: int = 7, gaze: bool = False,
                num_expressions: int = NUM_EXPRESSIONS) -> tuple[ChannelLayout, np.ndarray]:
    """Smooth random head motion (yaw +-50, pitch +-25, roll +-10 degrees), jaw and expression pulses.

    ``gaze``: both eyes also look around (saccades and smooth looks within the MAX_GAZE_* range);
    otherwise they stay at rest.  ``num_expressions``: the layout's expression count; only the
    head's visible ones (the first NUM_EXPRESSIONS) move, the rest stay 0.  The defaults give
    the demo capture's frames; the extra draws come last, so they change no other channel.
    """
    layout = ChannelLayout(num_expressions)
    rng = np.random.default_rng(seed)
    frames = layout.defaults(num_frames)
    column = layout.names.index
    frames[:, column("head_yaw")] = _smooth_curve(rng, num_frames, fps, math.radians(-50), math.radians(50))
    frames[:, column("head_pitch")] = _smooth_curve(rng, num_frames, fps, math.radians(-25), math.radians(25))
    frames[:, column("head_roll")] = _smooth_curve(rng, num_frames, fps, math.radians(-10), math.radians(10))
    frames[:, column("jaw_x")] = np.clip(_smooth_curve(rng, num_frames, fps, -0.15, 0.45, 1.0, 4.0), 0, None)
    visible = np.zeros((num_frames, NUM_EXPRESSIONS))
    visible[:, 0] = _pulses(rng, num_frames, fps) - _pulses(rng, num_frames, fps, rate_per_s=0.1)
    for k in range(1, NUM_EXPRESSIONS):
        visible[:, k] = _pulses(rng, num_frames, fps, rate_per_s=rng.uniform(0.12, 0.25))
    visible[:, 3] = _pulses(rng, num_frames, fps, rate_per_s=0.4, width_s=0.15, peak=(2.5, 3.0))  # blinks
    expr = layout.slice("expression").start
    shown = min(NUM_EXPRESSIONS, num_expressions)
    frames[:, expr:expr + shown] = visible[:, :shown]
    if gaze:
        path = _gaze_path(rng, num_frames, fps)
        for side in "lr":  # both eyes together: no vergence, no torsion
            frames[:, column(f"eye_{side}_x")] = path[:, 0]
            frames[:, column(f"eye_{side}_y")] = path[:, 1]
    return layout, frames.astype(np.float32)
