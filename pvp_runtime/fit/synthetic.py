"""A synthetic subject clip with known answers, for tests, benchmarks and a CPU demo of ``pvp fit``.

Frames are rendered by a random-weight subject (``bundle.random_bundle`` with
visibly reacting mappers) from a known channel clip, so a fit has a ground
truth to recover.  Landmarks come from a canonical 68-point face layout that
sits exactly where FFHQ alignment puts a face (its FFHQ crop is the whole
render); the lower lip follows the jaw.  With ``in_the_wild`` each render is
placed in a larger frame under a random rotation, scale and shift, and the
landmarks move with it, so alignment has something real to undo.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..avatar import Avatar
from ..bundle import SubjectBundle, random_bundle
from ..contract.channel_files import write_channel_file
from ..contract.channels import ChannelLayout
from ..example_clips import head_turn_clip
from ..model.stylegan2 import GeneratorConfig
from .alignment import ffhq_quad, quad_transform, transform_points


def _ellipse(centre, width, height, count, start=math.pi):
    angles = start + np.arange(count) * (2 * math.pi / count)
    return np.stack([centre[0] + width / 2 * np.cos(angles), centre[1] - height / 2 * np.sin(angles)], axis=1)


def face_template(jaw_open: float = 0.0) -> np.ndarray:
    """68 iBUG points on a unit square (x right, y down); ``jaw_open`` in radians lowers the lower lip."""
    jaw = np.stack([0.5 + 0.32 * np.cos(np.linspace(math.pi, 0, 17)),
                    0.38 + 0.5 * np.sin(np.linspace(math.pi, 0, 17)) ** 0.8], axis=1)
    brows = np.concatenate([np.stack([np.linspace(0.28, 0.45, 5), np.full(5, 0.31)], axis=1),
                            np.stack([np.linspace(0.55, 0.72, 5), np.full(5, 0.31)], axis=1)])
    bridge = np.stack([np.full(4, 0.5), np.linspace(0.4, 0.56, 4)], axis=1)
    nostrils = np.stack([np.linspace(0.44, 0.56, 5), np.full(5, 0.6)], axis=1)
    left_eye = _ellipse((0.38, 0.43), 0.11, 0.045, 6)
    right_eye = _ellipse((0.62, 0.43), 0.11, 0.045, 6)
    outer = _ellipse((0.5, 0.72), 0.22, 0.08, 12)
    inner = _ellipse((0.5, 0.72), 0.14, 0.03, 8)
    drop = 0.25 * max(0.0, jaw_open)
    outer[7:12, 1] += drop  # lower outer lip (points 55-59 of the 12-point ring)
    inner[5:8, 1] += drop
    points = np.concatenate([jaw, brows, bridge, nostrils, left_eye, right_eye, outer, inner])
    assert points.shape == (68, 2)
    return points


def canonical_landmarks(resolution: int, jaw_open: float = 0.0) -> np.ndarray:
    """The template placed so that its FFHQ crop is exactly the ``resolution`` square."""
    base = face_template(0.0) * resolution
    to_crop = quad_transform(ffhq_quad(base), resolution)
    return transform_points(face_template(jaw_open) * resolution, to_crop)


@dataclass
class SyntheticClip:
    frames: np.ndarray          # [F, H, W, 3] uint8 RGB
    channels: np.ndarray        # [F, layout.size]
    landmarks: np.ndarray       # [F, 68, 2] frame pixels
    mattes: np.ndarray          # [F, H, W] uint8
    layout: ChannelLayout
    subject: SubjectBundle      # the random subject that drew the frames (the ground truth)
    crops: np.ndarray           # [F, R, R, 3] the aligned renders before placement

    def write(self, folder: Path, video: bool = False) -> dict[str, Path]:
        """Write frames (PNG folder or MP4), channels (.csv), landmarks (.npy) and mattes (PNG folder)."""
        folder.mkdir(parents=True, exist_ok=True)
        paths = {"channels": folder / "channels.csv", "landmarks": folder / "landmarks.npy",
                 "mattes": folder / "mattes"}
        write_channel_file(paths["channels"], self.channels, self.layout, fps=25.0)
        np.save(paths["landmarks"], self.landmarks)
        paths["mattes"].mkdir(exist_ok=True)
        for i, matte in enumerate(self.mattes):
            cv2.imwrite(str(paths["mattes"] / f"matte_{i:04d}.png"), matte)
        if video:
            paths["frames"] = folder / "frames.avi"
            h, w = self.frames.shape[1:3]
            # MJPG in AVI: available in every OpenCV build; lossy, but frames only need to decode.
            writer = cv2.VideoWriter(str(paths["frames"]), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (w, h))
            for frame in self.frames:
                writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
            writer.release()
        else:
            paths["frames"] = folder / "frames"
            paths["frames"].mkdir(exist_ok=True)
            for i, frame in enumerate(self.frames):
                cv2.imwrite(str(paths["frames"] / f"frame_{i:04d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        return paths


def synthetic_clip(config: GeneratorConfig, num_frames: int = 40, num_expressions: int = 10, seed: int = 0,
                   in_the_wild: bool = False, num_pivots: int = 6, expression_scale: float = 0.3) -> SyntheticClip:
    layout = ChannelLayout(num_expressions)
    channels = head_turn_clip(layout, num_frames, expression_channels=min(3, num_expressions))
    rng = np.random.default_rng(seed)
    # Small per-frame jitter on the expression so no two frames are identical.
    expression = layout.slice("expression")
    channels[:, expression] += rng.normal(0, 0.05, (num_frames, num_expressions)).astype(np.float32)
    subject = random_bundle(config, num_pivots=num_pivots, num_expressions=num_expressions, seed=seed,
                            name="synthetic", expression_scale=expression_scale)
    crops = Avatar(subject, device="cpu").render(channels, outputs=("srgb8",)).srgb8[..., :3]
    r = config.resolution
    jaw_x = channels[:, layout.index("jaw_x")]
    crop_landmarks = np.stack([canonical_landmarks(r, float(j)) for j in jaw_x])
    if not in_the_wild:
        mattes = np.zeros((num_frames, r, r), np.uint8)
        cv2.circle(mattes[0], (r // 2, r // 2), int(r * 0.42), 255, -1)
        mattes[:] = mattes[0]
        return SyntheticClip(crops.copy(), channels, crop_landmarks, mattes, layout, subject, crops)
    size = 2 * r
    frames = np.empty((num_frames, size, size, 3), np.uint8)
    mattes = np.empty((num_frames, size, size), np.uint8)
    landmarks = np.empty_like(crop_landmarks)
    disc = np.zeros((r, r), np.uint8)
    cv2.circle(disc, (r // 2, r // 2), int(r * 0.42), 255, -1)
    for i in range(num_frames):
        angle = rng.uniform(-12, 12)
        scale = rng.uniform(0.8, 1.2)
        centre = (size / 2 + rng.uniform(-r / 6, r / 6), size / 2 + rng.uniform(-r / 6, r / 6))
        # crop -> frame: rotate/scale about the crop centre, then move it to `centre`.
        place = cv2.getRotationMatrix2D((r / 2, r / 2), angle, scale)
        place[:, 2] += np.array(centre) - r / 2
        background = rng.integers(60, 120, (size, size, 3), dtype=np.uint8)
        warped = cv2.warpAffine(crops[i], place, (size, size), flags=cv2.INTER_LINEAR)
        inside = cv2.warpAffine(np.full((r, r), 255, np.uint8), place, (size, size), flags=cv2.INTER_NEAREST)
        frames[i] = np.where(inside[..., None] > 0, warped, background)
        mattes[i] = cv2.warpAffine(disc, place, (size, size), flags=cv2.INTER_LINEAR)
        landmarks[i] = transform_points(crop_landmarks[i], place)
    return SyntheticClip(frames, channels, landmarks, mattes, layout, subject, crops)
