"""FFHQ-style face crop and alignment, with landmarks smoothed over time.

The generator draws an *aligned* crop: eyes level, at a fixed scale and
position, as in FFHQ.  From the 68 iBUG landmarks of a frame:

    eye_avg      = mean of both eye centres (points 36-41, 42-47)
    eye_to_eye   = right eye centre - left eye centre (image left/right)
    eye_to_mouth = mouth centre (points 48, 54) - eye_avg
    x axis       = eye_to_eye rotated against the face's vertical, scaled to
                   max(2.0 |eye_to_eye|, 1.8 |eye_to_mouth|)
    centre       = eye_avg + 0.1 eye_to_mouth

gives a square; its similarity transform onto the output square is the
frame's *alignment transform* (frame pixels -> crop pixels).  It is kept per
frame: it removes roll, translation and scale, which the product restores as a
2D similarity at render time (docs/architecture.md, "Conventions worth knowing": mapper inputs).

Landmarks jitter from frame to frame; smoothing them over time with a Gaussian
(``sigma`` in frames) stops the crop from flickering, as the paper does.
Frames that already are aligned square crops pass through with a pure scale.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

LEFT_EYE = slice(36, 42)
RIGHT_EYE = slice(42, 48)
MOUTH_LEFT, MOUTH_RIGHT = 48, 54


def smooth_over_time(landmarks: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian-filter ``[F, ...]`` along the frame axis (edges mirrored)."""
    landmarks = np.asarray(landmarks, dtype=np.float64)
    if sigma <= 0 or len(landmarks) < 2:
        return landmarks.astype(np.float32)
    radius = max(1, int(math.ceil(3 * sigma)))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()
    flat = landmarks.reshape(len(landmarks), -1)
    padded = np.pad(flat, ((radius, radius), (0, 0)), mode="symmetric") if radius < len(flat) else \
        np.pad(flat, ((radius, radius), (0, 0)), mode="edge")
    out = np.zeros_like(flat)
    for k, tap in enumerate(taps):
        out += tap * padded[k:k + len(flat)]
    return out.reshape(landmarks.shape).astype(np.float32)


def ffhq_quad(landmarks: np.ndarray) -> np.ndarray:
    """The FFHQ crop square of one frame: corners top-left, bottom-left, bottom-right, top-right."""
    lm = np.asarray(landmarks, dtype=np.float64)
    eye_left = lm[LEFT_EYE].mean(axis=0)
    eye_right = lm[RIGHT_EYE].mean(axis=0)
    eye_avg = (eye_left + eye_right) / 2
    eye_to_eye = eye_right - eye_left
    mouth_avg = (lm[MOUTH_LEFT] + lm[MOUTH_RIGHT]) / 2
    eye_to_mouth = mouth_avg - eye_avg
    # The horizontal axis blends the eye line with the perpendicular of the eye-mouth line,
    # so neither a squint nor an open mouth alone tilts the crop.
    x = eye_to_eye - np.array([-eye_to_mouth[1], eye_to_mouth[0]])
    x /= np.hypot(*x)
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.array([-x[1], x[0]])
    centre = eye_avg + eye_to_mouth * 0.1
    return np.stack([centre - x - y, centre - x + y, centre + x + y, centre + x - y])


def quad_transform(quad: np.ndarray, resolution: int) -> np.ndarray:
    """2x3 similarity mapping the quad's corners onto the crop's corners (frame px -> crop px)."""
    source = np.asarray(quad[[0, 1, 3]], dtype=np.float32)
    target = np.array([[0, 0], [0, resolution], [resolution, 0]], dtype=np.float32)
    return cv2.getAffineTransform(source, target).astype(np.float64)


def alignment_transforms(landmarks: np.ndarray, resolution: int, sigma: float) -> np.ndarray:
    """``[F, 2, 3]`` frame->crop transforms from temporally smoothed landmarks."""
    smoothed = smooth_over_time(landmarks, sigma)
    return np.stack([quad_transform(ffhq_quad(lm), resolution) for lm in smoothed])


def passthrough_transform(size: int, resolution: int) -> np.ndarray:
    scale = resolution / size
    return np.array([[scale, 0.0, 0.0], [0.0, scale, 0.0]])


def transform_points(points: np.ndarray, transform: np.ndarray) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    return (points @ transform[:, :2].T + transform[:, 2]).astype(np.float32)


def roll_removed(transform: np.ndarray) -> float:
    """The head's in-plane roll in the frame (radians, > 0 counter-clockwise as seen, like ``head_roll``)
    that the crop took out."""
    return math.atan2(transform[1, 0], transform[0, 0])


def warp(image: np.ndarray, transform: np.ndarray, resolution: int, matte: bool = False) -> np.ndarray:
    """Resample one frame (or matte) into the aligned crop.

    A pure scale (pass-through of an already aligned crop) is a plain area or
    linear resize.  Otherwise strong downscales are box-filtered first (FFHQ
    shrinks before transforming) so fine texture does not alias; frames are
    extended by reflection beyond their borders, like FFHQ's padding, and
    mattes by zeros (outside the frame is not the subject).
    """
    transform = np.asarray(transform, dtype=np.float64).copy()
    h, w = image.shape[:2]
    if np.allclose(transform, passthrough_transform(w, resolution)) and w == h:
        interpolation = cv2.INTER_AREA if resolution < w else cv2.INTER_LINEAR
        return cv2.resize(image, (resolution, resolution), interpolation=interpolation)
    scale = math.hypot(transform[0, 0], transform[1, 0])
    shrink = int(math.floor(1.0 / scale)) if scale < 0.5 else 1
    if shrink > 1:
        small = (max(1, round(w / shrink)), max(1, round(h / shrink)))
        image = cv2.resize(image, small, interpolation=cv2.INTER_AREA)
        # Pixel centres map as x_small = (x + 0.5) * s - 0.5; fold that into the transform.
        sx, sy = small[0] / w, small[1] / h
        to_small = np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1]])
        transform = (np.vstack([transform, [0, 0, 1]]) @ np.linalg.inv(to_small))[:2]
    border = cv2.BORDER_CONSTANT if matte else cv2.BORDER_REFLECT
    return cv2.warpAffine(image, transform, (resolution, resolution), flags=cv2.INTER_LINEAR,
                          borderMode=border, borderValue=0)
