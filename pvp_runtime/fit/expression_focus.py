"""Per-pixel loss weights on what a frame's head pose does not explain (scratch prior, ``scratch.focus``).

Why: in a portrait clip nearly every pixel is explained by the head pose alone;
a blink, a brow raise or a pucker moves a few hundred pixels in a few dozen
frames.  Under a plain image loss the generator spends its capacity on pose and
identity and learns expressions as faint smudges, so keyed expression channels
barely move the avatar.

The clip itself says where the expression is.  For each training frame we take
the ``neighbours`` training frames nearest in head pose (yaw, pitch, roll) and
their per-pixel median: expressions are sparse in time, so the median is that
pose with a resting face.  Where the frame departs from it, something other than
pose is at work.  The weight there is raised by up to ``strength``::

    residual = blur(mean over RGB |frame - median of pose neighbours|)
    weight   = 1 + strength * min(residual / scale, 1)

``scale`` is the ``SCALE_QUANTILE`` of the residual over the training frames, so
the weight depends on no face, resolution or colour in particular.  The loss is
the weighted mean, so its size does not change with ``strength``.  Nothing here
reads landmarks: it works on the captures a user actually has.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..contract.channels import ChannelLayout
from .pivots import head_pose_features
from .prepared import PreparedClip
from .rng import derived_seed

SCALE_QUANTILE = 0.99
SCALE_SAMPLE_FRAMES = 256
QUERY_CHUNK = 512
BLUR_FRACTION = 1 / 64  # of the crop size: a couple of pixels at 128 px


def pose_neighbours(channels: np.ndarray, layout: ChannelLayout, train_frames: np.ndarray,
                    count: int) -> np.ndarray:
    """``[len(train_frames), count]``: each training frame's nearest *other* training frames in head pose."""
    train_frames = np.asarray(train_frames)
    features, _ = head_pose_features(channels, layout, train_frames)
    features = features[train_frames]
    count = min(count, len(train_frames) - 1)
    rows = []
    for start in range(0, len(train_frames), QUERY_CHUNK):
        chunk = features[start:start + QUERY_CHUNK]
        distances = ((chunk[:, None] - features[None]) ** 2).sum(axis=2)
        distances[np.arange(len(chunk)), np.arange(start, start + len(chunk))] = np.inf
        nearest = np.argpartition(distances, count, axis=1)[:, :count] if count < len(train_frames) - 1 \
            else np.argsort(distances, axis=1)[:, :count]
        rows.append(train_frames[nearest])
    return np.concatenate(rows)


def _box_blur(image: torch.Tensor, radius: int) -> torch.Tensor:
    if radius < 1:
        return image
    return F.avg_pool2d(image, 2 * radius + 1, stride=1, padding=radius, count_include_pad=False)


class ExpressionFocus:
    def __init__(self, clip: PreparedClip, channels: np.ndarray, layout: ChannelLayout, train_frames: np.ndarray,
                 strength: float, neighbours: int, seed: int, device):
        self.clip = clip
        self.strength = strength
        self.device = device
        self.train_frames = np.asarray(train_frames)
        self.neighbours = pose_neighbours(channels, layout, self.train_frames, neighbours)
        self.row_of = {int(frame): row for row, frame in enumerate(self.train_frames)}
        self.radius = max(1, round(clip.resolution * BLUR_FRACTION))
        rng = np.random.default_rng(derived_seed(seed, "expression-focus"))
        sample = rng.choice(self.train_frames, min(SCALE_SAMPLE_FRAMES, len(self.train_frames)), replace=False)
        residuals = torch.cat([self.residual(sample[i:i + 32]) for i in range(0, len(sample), 32)])
        self.scale = float(torch.quantile(residuals.flatten()[::7], SCALE_QUANTILE).clamp(min=1e-6))

    def residual(self, frames: np.ndarray) -> torch.Tensor:
        """``[B, 1, R, R]``: blurred mean |frame - median of its pose neighbours| (images in [-1, 1])."""
        rows = [self.row_of[int(frame)] for frame in frames]
        neighbours = self.neighbours[rows]
        targets = self.clip.images(frames, self.device)
        others = self.clip.images(neighbours.ravel(), self.device).view(len(frames), neighbours.shape[1],
                                                                          *targets.shape[1:])
        median = others.median(dim=1).values
        return _box_blur((targets - median).abs().mean(dim=1, keepdim=True), self.radius)

    def weights(self, frames: np.ndarray) -> torch.Tensor:
        """``[B, 1, R, R]`` per-pixel loss weights for training ``frames``, between 1 and 1 + strength."""
        with torch.no_grad():
            return 1.0 + self.strength * (self.residual(frames) / self.scale).clamp(max=1.0)
