"""Keying a clip into an existing F-curve without changing the animation around it.

A clip imported at frame 100 replaces the curve's keys within the clip's frames and nothing else:

* keys outside ``[first, last]`` stay, with their handles and interpolation (the curve keeps
  its modifiers);
* where the curve has keys before the clip, a *hold key* one frame before it carries the old
  curve's value; likewise one frame after the clip.  The clip blends in linearly over that frame.
* the hold key splits the old segment it lands on exactly (de Casteljau), and the handles on
  both sides of the split are fixed where the split puts them (automatic handles would follow
  the new neighbours: Blender turns a moved automatic handle into an aligned one, so do we), so
  the curve before ``first - 1`` and after ``last + 1`` is unchanged.  Segments with an easing
  interpolation (sine, bounce...) are split at the right value, not with their exact shape.
* a side without keys has no animation to keep: there the curve holds the clip's end value, and
  importing a clip over itself gives the curve of importing it once.

The Bezier arithmetic (Blender's handle correction, the split) is plain numpy, no bpy.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

LINEAR = 1  # Keyframe.interpolation enum value of 'LINEAR'
HOLD_GAP = 1.0  # frames between the clip's ends and the hold keys that keep the animation beyond
RANGE_EPSILON = 1e-3  # frames: keys are stored as float32, so a clip's own frames come back rounded
# What a key decides about the segment that starts at it.
SEGMENT_SETTINGS = ("interpolation", "easing", "back", "amplitude", "period")
AUTOMATIC = ("AUTO", "AUTO_CLAMPED")


# --------------------------------------------------------------------------- Bezier arithmetic

def corrected_handles(start, right, left, end) -> tuple[np.ndarray, np.ndarray]:
    """The handles Blender evaluates a segment with: shortened together when their frame extents
    add up to more than the segment's (``BKE_fcurve_correct_bezpart``), so the curve is a function."""
    start, right, left, end = (np.asarray(p, dtype=np.float64) for p in (start, right, left, end))
    out_vector, in_vector = start - right, end - left
    span, extent = end[0] - start[0], abs(out_vector[0]) + abs(in_vector[0])
    if extent > span > 0:
        scale = span / extent
        return start - scale * out_vector, end - scale * in_vector
    return right, left


def split_segment(start, right, left, end, frame: float) -> dict[str, np.ndarray]:
    """Split the Bezier segment ``start`` (right handle ``right``) -> ``end`` (left handle ``left``)
    at ``frame``: the point on it and the four handles that draw the two halves exactly."""
    p0, p3 = np.asarray(start, dtype=np.float64), np.asarray(end, dtype=np.float64)
    p1, p2 = corrected_handles(p0, right, left, p3)
    t_low, t_high = 0.0, 1.0
    for _ in range(60):  # the frame is monotonic in t after the correction: bisection to double precision
        t = 0.5 * (t_low + t_high)
        x = ((1 - t) ** 3) * p0[0] + 3 * ((1 - t) ** 2) * t * p1[0] + 3 * (1 - t) * t * t * p2[0] + t ** 3 * p3[0]
        t_low, t_high = (t, t_high) if x < frame else (t_low, t)
    t = 0.5 * (t_low + t_high)
    lerp = lambda a, b: a + t * (b - a)
    a, b, c = lerp(p0, p1), lerp(p1, p2), lerp(p2, p3)
    d, e = lerp(a, b), lerp(b, c)
    return {"start_right": a, "point_left": d, "point": lerp(d, e), "point_right": e, "end_left": c}


# --------------------------------------------------------------------------- splicing

@dataclass
class _Hold:
    frame: float
    before: bool            # the hold key before the clip (else after it)
    value: float
    left: np.ndarray        # the hold key's handles
    right: np.ndarray
    settings: dict          # the segment settings the hold key starts with (after the clip)
    neighbour: float | None  # the kept key whose inner handle the split moved, and its handles
    neighbour_left: np.ndarray | None = None
    neighbour_right: np.ndarray | None = None


def splice_keys(fcurve, times: np.ndarray, values: np.ndarray) -> None:
    """Key ``values`` at ``times`` (ascending frames) on ``fcurve``, linear, replacing only its keys
    within ``[times[0], times[-1]]`` (see the module docstring)."""
    points = fcurve.keyframe_points
    first, last = float(times[0]), float(times[-1])
    frames = key_frames(points)
    holds = []
    with _modifiers_muted(fcurve):  # hold values are key values: modifiers apply on top of them
        if np.any(frames < first - RANGE_EPSILON):
            holds.append(_plan_hold(fcurve, frames, first - HOLD_GAP, before=True))
        if np.any(frames > last + RANGE_EPSILON):
            holds.append(_plan_hold(fcurve, frames, last + HOLD_GAP, before=False))
    for hold in holds:
        if not np.any(np.abs(frames - hold.frame) <= RANGE_EPSILON):
            points.insert(hold.frame, hold.value)
    _fix_hold_handles(points, holds)
    frames = key_frames(points)
    for i in reversed(np.flatnonzero((frames >= first - RANGE_EPSILON) & (frames <= last + RANGE_EPSILON))):
        points.remove(points[int(i)], fast=True)
    kept = len(points)
    points.add(len(times))
    co = np.empty(2 * len(points), dtype=np.float32)
    points.foreach_get("co", co)
    co[2 * kept:] = np.column_stack([times, values]).astype(np.float32).ravel()
    points.foreach_set("co", co)
    interpolation = np.empty(len(points), dtype=np.int32)
    points.foreach_get("interpolation", interpolation)
    interpolation[kept:] = LINEAR
    points.foreach_set("interpolation", interpolation)
    fcurve.update()  # sorts the appended keys into place and recomputes the automatic handles


def key_frames(points) -> np.ndarray:
    co = np.empty(2 * len(points), dtype=np.float32)
    points.foreach_get("co", co)
    return co[0::2].astype(np.float64)


def _plan_hold(fcurve, frames: np.ndarray, frame: float, before: bool) -> _Hold:
    """Where the hold key at ``frame`` goes, and the handles with which it and its kept neighbour
    draw the old curve on the kept side."""
    points = fcurve.keyframe_points
    at = np.flatnonzero(frames <= frame + RANGE_EPSILON)
    start = int(at[-1]) if len(at) else None   # the key whose segment holds the frame
    end = start + 1 if start is not None and start + 1 < len(points) else (0 if start is None else None)
    settings = {name: getattr(points[start], name) for name in SEGMENT_SETTINGS} if start is not None else {}
    if start is not None and abs(frames[start] - frame) <= RANGE_EPSILON:  # a key is there already
        key = points[start]
        return _Hold(frame, before, float(key.co[1]), np.array(key.handle_left), np.array(key.handle_right),
                     settings, None)
    # The kept neighbour: its automatic handles would follow the hold key, its new neighbour.
    kept = start if before else end
    neighbour = points[kept] if kept is not None else None
    n_left = np.array(neighbour.handle_left) if neighbour else None
    n_right = np.array(neighbour.handle_right) if neighbour else None
    if start is not None and end is not None and points[start].interpolation == "BEZIER":
        a, b = points[start], points[end]
        split = split_segment(a.co, a.handle_right, b.handle_left, b.co, frame)
        point, outer = split["point"], split["point_left" if before else "point_right"]
        if before:
            n_right = split["start_right"]
        else:
            n_left = split["end_left"]
    else:  # the value of a linear, constant or eased segment, or of the extrapolation
        point = np.array([frame, fcurve.evaluate(frame)])
        outer = point + np.array([-HOLD_GAP / 3 if before else HOLD_GAP / 3, 0.0])
    # The handle facing the clip only decorates (the blend segment is linear): a third of the gap.
    inner = point + _towards(point - outer, HOLD_GAP / 3)
    left, right = (outer, inner) if before else (inner, outer)
    return _Hold(frame, before, float(point[1]), left, right, settings,
                 float(frames[kept]) if kept is not None else None, n_left, n_right)


def _towards(vector: np.ndarray, length: float) -> np.ndarray:
    """``vector`` scaled to a frame extent of ``length`` (a flat handle when it has none)."""
    if abs(vector[0]) < 1e-9:
        return np.array([-length if vector[0] < 0 else length, 0.0])
    return vector * (length / abs(vector[0]))


def _fix_hold_handles(points, holds: list[_Hold]) -> None:
    """Put the hold keys' and their kept neighbours' handles where the split says, with handle
    types that keep them there.  Every type is set before any position: setting a type makes
    Blender recompute the automatic handles of the whole curve."""
    frames = key_frames(points)
    key_at = lambda frame: points[int(np.argmin(np.abs(frames - frame)))]
    placements = []
    for hold in holds:
        placements.append((key_at(hold.frame), hold.left, hold.right))
        if hold.neighbour is not None:
            placements.append((key_at(hold.neighbour), hold.neighbour_left, hold.neighbour_right))
    for key, _left, _right in placements:
        key.handle_left_type, key.handle_right_type = _fixed_types(key.handle_left_type, key.handle_right_type)
    for key, left, right in placements:
        key.handle_left, key.handle_right = tuple(left), tuple(right)
    for hold in holds:
        key = key_at(hold.frame)
        if hold.before:
            key.interpolation = "LINEAR"  # the one-frame blend into the clip
        else:
            for name, value in hold.settings.items():  # the old segment it now starts
                setattr(key, name, value)


def _fixed_types(left: str, right: str) -> tuple[str, str]:
    """Handle types that stay where they are put: two automatic handles (collinear) become aligned,
    as when an animator drags one; any other automatic or vector handle becomes free."""
    if left in AUTOMATIC and right in AUTOMATIC:
        return "ALIGNED", "ALIGNED"
    fixed = lambda kind: "FREE" if kind in AUTOMATIC or kind == "VECTOR" else kind
    if "ALIGNED" in (left, right) and "FREE" in (fixed(left), fixed(right)):
        return "FREE", "FREE"  # an aligned handle would turn to follow its free partner
    return fixed(left), fixed(right)


@contextmanager
def _modifiers_muted(fcurve):
    modifiers = list(fcurve.modifiers)
    muted = [modifier.mute for modifier in modifiers]
    try:
        for modifier in modifiers:
            modifier.mute = True
        yield
    finally:
        for modifier, was in zip(modifiers, muted):
            modifier.mute = was
