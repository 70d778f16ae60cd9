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

Expression channels used (others have no effect):
  expr_00 smile (> 0) / frown (< 0)   expr_05 pucker
  expr_01 brow raise                  expr_06 mouth stretch
  expr_02 brow furrow                 expr_07 nose wrinkle
  expr_03 blink                       expr_08 left smirk
  expr_04 cheek puff                  expr_09 left brow raise
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .contract.channels import ChannelLayout, axis_angle_to_matrix, head_rotation_matrix

NUM_EXPRESSIONS = 10
VIEW_HALF_WIDTH = 1.5  # world units from the centre of the crop to its edge
CROP_CENTRE_Y = -0.12  # the crop is centred a little below the skull centre, on the face
NECK_PIVOT = np.array([0.0, -0.9, 0.0])  # the global rotation turns the head about the neck base
JAW_HINGE = np.array([0.0, -0.32, 0.1])

SKIN = (0.62, 0.40, 0.30)
LIPS = (0.50, 0.13, 0.13)
CAVITY = (0.05, 0.01, 0.01)
EYE_WHITE = (0.85, 0.85, 0.82)
IRIS = (0.08, 0.18, 0.30)
BROW = (0.10, 0.06, 0.035)
HAIR = (0.16, 0.09, 0.05)


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


def head_parts(frame: np.ndarray, layout: ChannelLayout) -> tuple[list[Ellipsoid], dict]:
    """The posed head as world-space ellipsoids plus the landmark anchors' world positions."""
    value = dict(zip(layout.names, (float(v) for v in frame)))
    e = [value.get(f"expr_{k:02d}", 0.0) for k in range(NUM_EXPRESSIONS)]
    smile, brow_up, furrow, blink, puff, pucker, stretch, wrinkle, smirk, brow_l = e
    global_r = head_rotation_matrix(value["head_yaw"], value["head_pitch"], value["head_roll"])
    neck_r = axis_angle_to_matrix([value["neck_x"], value["neck_y"], value["neck_z"]])
    jaw_r = axis_angle_to_matrix([value["jaw_x"], value["jaw_y"], value["jaw_z"]])
    head_r = global_r @ neck_r
    # Head-local point -> world: neck then global rotation, both about the neck pivot.
    to_world = lambda p: NECK_PIVOT + head_r @ (np.asarray(p, float) - NECK_PIVOT)
    jaw_local = lambda p: JAW_HINGE + jaw_r @ (np.asarray(p, float) - JAW_HINGE)

    local: list[tuple] = []  # (centre, radii, colour, local rotation, shininess, on_jaw)

    def add(centre, radii, colour, rotation=None, shininess=0.15, on_jaw=False):
        local.append((np.asarray(centre, float), np.asarray(radii, float), colour,
                      np.eye(3) if rotation is None else rotation, shininess, on_jaw))

    add((0, 0.05, 0), (0.78, 1.0, 0.85), SKIN)                                  # skull
    add((0, 0.42, -0.12), (0.82, 0.72, 0.82), HAIR, shininess=0.05)             # hair cap, behind the face
    add((0, -0.05, 0.86), (0.11 + 0.01 * wrinkle, 0.2 - 0.025 * wrinkle, 0.16), SKIN)  # nose
    add((0, 0.02, 0.97), (0.05, 0.05, 0.05), SKIN)                              # nose tip
    for side, sign in (("l", 1.0), ("r", -1.0)):
        add((sign * 0.36, -0.2 + 0.02 * smile, 0.64),
            (0.15 + 0.03 * puff, 0.11 + 0.015 * puff + 0.01 * smile, 0.11 + 0.04 * puff), SKIN)  # cheek
        eye_centre = np.array([sign * 0.28, 0.2, 0.76])
        add(eye_centre, (0.14, 0.11, 0.1), EYE_WHITE, shininess=0.6)
        add(eye_centre + (0, 0, 0.085), (0.065, 0.065, 0.03), IRIS, shininess=0.8)
        closed = min(max(blink / 3.0, 0.0), 1.0)
        add(eye_centre + (0, 0.06 - 0.05 * closed, 0.01), (0.15, 0.03 + 0.1 * closed, 0.115), SKIN)  # upper lid
        brow_lift = 0.05 * brow_up - 0.03 * furrow + (0.05 * brow_l if side == "l" else 0.0)
        tilt = sign * math.radians(-10 * furrow + 5 * brow_up)
        add((sign * (0.28 - 0.025 * furrow), 0.42 + brow_lift, 0.76), (0.17, 0.035, 0.05), BROW,
            rotation=_rot_z(tilt), shininess=0.02)
    open_amount = max(value["jaw_x"], 0.0)
    width = 1 + 0.12 * stretch - 0.18 * pucker
    mouth = np.array([0.0, -0.42, 0.72])
    add(mouth + (0, -0.03 - 0.3 * open_amount, -0.04), (0.19 * width, 0.02 + 0.45 * open_amount, 0.08), CAVITY,
        shininess=0.0)
    add(mouth + (0, 0.045 + 0.01 * wrinkle, 0.02 + 0.03 * pucker), (0.22 * width, 0.04, 0.07 + 0.02 * pucker),
        LIPS, shininess=0.4)
    corners = {}
    for side, sign in (("l", 1.0), ("r", -1.0)):
        lift = 0.035 * smile + (0.035 * smirk if side == "l" else 0.0)
        corners[side] = mouth + (sign * (0.21 * width + 0.02 * smile), lift, 0.0)
        add(corners[side], (0.045, 0.045, 0.045), LIPS, shininess=0.4)
    add((0, -0.64, 0.45), (0.42, 0.32, 0.36), SKIN, on_jaw=True)                 # chin and jaw
    lower_lip = mouth + (0, -0.06, 0.02 + 0.03 * pucker)
    add(lower_lip, (0.2 * width, 0.045, 0.07 + 0.02 * pucker), LIPS, shininess=0.4, on_jaw=True)

    parts = []
    for centre, radii, colour, rotation, shininess, on_jaw in local:
        r = head_r @ (jaw_r if on_jaw else np.eye(3)) @ rotation
        c = to_world(jaw_local(centre) if on_jaw else centre)
        parts.append(_ellipsoid(c, radii, colour, r, shininess))
    # The neck follows the global rotation only, and hangs below the pivot.
    parts.append(_ellipsoid(NECK_PIVOT + global_r @ (np.array([0, -0.35, -0.1])), (0.4, 0.7, 0.4), SKIN,
                            global_r))

    anchors = _landmark_anchors(mouth, corners, lower_lip, width, open_amount, blink, brow_up, furrow, brow_l)
    world_anchor = {}
    for name, points in anchors.items():
        on_jaw = name in ("jaw_line", "lower_lip")
        world_anchor[name] = np.array([to_world(jaw_local(p) if on_jaw else p) for p in points])
    return parts, world_anchor


def _landmark_anchors(mouth, corners, lower_lip, width, open_amount, blink, brow_up, furrow, brow_l):
    """Head-local points in the iBUG-68 groups (approximate for jaw line and nose)."""
    anchors = {}
    jaw = []
    for i in range(17):
        a = math.radians(-80 + 160 * i / 16)
        jaw.append((-math.sin(a) * 0.72, -0.3 - 0.6 * math.cos(a), 0.45 + 0.2 * math.cos(a)))
    anchors["jaw_line"] = jaw
    brows = []
    for side, sign in (("r", -1.0), ("l", 1.0)):
        lift = 0.05 * brow_up - 0.03 * furrow + (0.05 * brow_l if side == "l" else 0.0)
        xs = np.linspace(0.45, 0.11, 5) if side == "r" else np.linspace(0.11, 0.45, 5)
        brows += [(sign * x, 0.45 + lift, 0.8) for x in xs]
    anchors["brows"] = brows
    anchors["nose"] = [(0, 0.3 - 0.11 * i, 0.85 + 0.04 * i) for i in range(4)] + \
                      [(x, -0.2, 0.9) for x in (-0.09, -0.045, 0, 0.045, 0.09)]
    eyes = []
    closed = min(max(blink / 3.0, 0.0), 1.0)
    for side, sign in (("r", -1.0), ("l", 1.0)):
        cx = sign * 0.28
        outer, inner = (cx - 0.12, cx + 0.12) if side == "r" else (cx + 0.12, cx - 0.12)
        top, bottom = 0.2 + 0.06 * (1 - closed), 0.2 - 0.06
        third = (inner - outer) / 3
        eyes += [(outer, 0.2, 0.8), (outer + third, top, 0.83), (outer + 2 * third, top, 0.83),
                 (inner, 0.2, 0.8), (outer + 2 * third, bottom, 0.83), (outer + third, bottom, 0.83)]
    anchors["eyes"] = eyes
    w = 0.21 * width
    upper = mouth[1] + 0.045
    lower_y = lower_lip[1]
    xs = np.linspace(-w, w, 7)
    outer_upper = [(x, upper + 0.03 * (1 - abs(x) / w), 0.8) for x in xs[1:-1]]
    outer_lower = [(x, lower_y - 0.03 * (1 - abs(x) / w), 0.8) for x in xs[::-1][1:-1]]
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
                 supersample: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One labelled frame: sRGB uint8 RGB over the backdrop, uint8 matte, and 68 landmarks (pixels)."""
    parts, anchors = head_parts(frame, layout)
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


def performance(num_frames: int, fps: float = 25.0, seed: int = 7) -> tuple[ChannelLayout, np.ndarray]:
    """Smooth random head motion (yaw +-50, pitch +-25, roll +-10 degrees), jaw and expression pulses."""
    layout = ChannelLayout(NUM_EXPRESSIONS)
    rng = np.random.default_rng(seed)
    frames = layout.defaults(num_frames)
    column = layout.names.index
    frames[:, column("head_yaw")] = _smooth_curve(rng, num_frames, fps, math.radians(-50), math.radians(50))
    frames[:, column("head_pitch")] = _smooth_curve(rng, num_frames, fps, math.radians(-25), math.radians(25))
    frames[:, column("head_roll")] = _smooth_curve(rng, num_frames, fps, math.radians(-10), math.radians(10))
    frames[:, column("jaw_x")] = np.clip(_smooth_curve(rng, num_frames, fps, -0.15, 0.45, 1.0, 4.0), 0, None)
    expr = layout.slice("expression").start
    frames[:, expr] = _pulses(rng, num_frames, fps) - _pulses(rng, num_frames, fps, rate_per_s=0.1)
    for k in range(1, NUM_EXPRESSIONS):
        frames[:, expr + k] = _pulses(rng, num_frames, fps, rate_per_s=rng.uniform(0.12, 0.25))
    frames[:, expr + 3] = _pulses(rng, num_frames, fps, rate_per_s=0.4, width_s=0.15, peak=(2.5, 3.0))  # blinks
    return layout, frames.astype(np.float32)
