"""Where the head sits in the aligned crop, and how large it is: what placement in a shot needs.

The renderer places the crop in the shot by mapping the crop's eye midpoint onto
the rig's eyes as the camera sees them, scaled so that the crop's eye distance
matches the rig's (docs/architecture.md, "Placement").  Both numbers are measured
here from the landmarks in crop pixels, which the FFHQ alignment produced:

    head_centre   the median eye midpoint (x, y in 0..1 of the crop, y down)
    eye_distance  the median distance between the eye centres, a fraction of the
                  crop's side, over near-frontal frames (|yaw| <= 20 deg), each
                  divided by cos(yaw): a turned head shows its eyes closer together

Pass-through crops (no landmarks) keep the defaults, which are what FFHQ
alignment gives a frontal face (``contract/subject_manifest.py``).
"""

from __future__ import annotations

import numpy as np

from ..contract.subject_manifest import DEFAULT_EYE_DISTANCE, DEFAULT_HEAD_CENTRE, EYE_DISTANCE_BOUND
from .alignment import LEFT_EYE, RIGHT_EYE

FRONTAL_YAW = np.radians(20.0)


def measure_head_framing(crop_landmarks: np.ndarray | None, resolution: int,
                         head_yaw: np.ndarray | None = None) -> tuple[tuple[float, float], float]:
    """``(head_centre, eye_distance)`` of a clip from its ``[F, 68, 2]`` landmarks in crop pixels
    (and its per-frame head yaw in radians, when known); the defaults without landmarks."""
    if crop_landmarks is None or len(crop_landmarks) == 0:
        return DEFAULT_HEAD_CENTRE, DEFAULT_EYE_DISTANCE
    landmarks = np.asarray(crop_landmarks, dtype=np.float64) / resolution
    left, right = landmarks[:, LEFT_EYE].mean(axis=1), landmarks[:, RIGHT_EYE].mean(axis=1)
    centre = np.clip(np.median((left + right) / 2, axis=0), 0.0, 1.0)
    distance = np.linalg.norm(right - left, axis=1)
    if head_yaw is not None:
        yaw = np.abs(np.asarray(head_yaw, dtype=np.float64))
        frontal = yaw <= FRONTAL_YAW
        if frontal.any():
            distance = distance[frontal] / np.cos(yaw[frontal])
    eye_distance = float(np.clip(np.median(distance), EYE_DISTANCE_BOUND.low, EYE_DISTANCE_BOUND.high))
    return (float(centre[0]), float(centre[1])), eye_distance
