"""Pose warp (scratch prior only, our deviation from the paper): head pose -> a smooth 2D flow
that moves the generator's features at one resolution.

Why: a StyleGAN2 synthesis network starts from a learnt constant and can only re-weight
channels through its styles; moving an eye by a fraction of a pixel as the head turns has to
be spelled out in feature values, which a small generator learnt from one clip does coarsely.
Its renders of a turning head come out soft in the face (most of a fit's error lies there),
and an expression's few-pixel change drowns in that softness.  With the head held still the
same fit is sharp and its expressions transfer (docs/architecture.md).  So the turning is
given a direct path: a small MLP maps (pitch, yaw) to a coarse grid of 2D offsets, upsampled
and applied with bilinear sampling to the features (and the skip image) after the block at
``resolution``.  The blocks below see a head that barely moves; the blocks above render the
detail where it now lands.  The pose mapper still chooses the W+ of each pose, for what a 2D
flow cannot do (the far cheek hiding, shading, the silhouette).

Expression flows (``expression_grid`` > 0): one learnt field of 2D offsets per jaw, expression
(and gaze) input, weighted by the standardised input and summed: a 2D blendshape, linear in
the channels as FLAME's own blendshapes are.  Why: most of what an expression does is move
something (a brow up, a lid down, the mouth corners out), and a field that moves the features
lowers the loss the first time a channel is active, where an offset in W+ has to wait until the
generator has learnt to answer it.  The fields live on the still head: an output pixel first
finds where it lies on that head (the pose flow), then moves by the expression fields there.
The W+ offsets stay for what does not move (the mouth's inside, shading).

Every last layer starts at zero, so an untrained warp is the identity.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..contract.subject_manifest import POSE_WARP_MAX_GRID
from .mappers import POSE_INPUTS

HIDDEN = 64
# Offsets are in grid_sample's [-1, 1] units (2 = the whole width).  The gain keeps Adam's
# first steps, which move every weight by about the learning rate, to sub-pixel moves.
FLOW_GAIN = 0.05
MAX_GRID = POSE_WARP_MAX_GRID

Warp = Callable[[int, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def check_pose_warp(grid: int, resolution: int) -> None:
    if not isinstance(grid, int) or not 2 <= grid <= MAX_GRID:
        raise ValueError(f"pose warp grid must be an integer in 2..{MAX_GRID}, got {grid!r}")
    if not isinstance(resolution, int) or resolution < 4 or resolution & (resolution - 1):
        raise ValueError(f"pose warp resolution must be a power of two >= 4, got {resolution!r}")


class PoseWarp(nn.Module):
    def __init__(self, grid: int, resolution: int, hidden: int = HIDDEN, expression_inputs: int = 0,
                 expression_grid: int = 0):
        super().__init__()
        check_pose_warp(grid, resolution)
        self.grid = grid
        self.resolution = resolution
        self.mlp = nn.Sequential(nn.Linear(POSE_INPUTS, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, 2 * grid * grid))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)
        self.expression_grid = expression_grid if expression_inputs else 0
        if self.expression_grid:
            check_pose_warp(expression_grid, resolution)
            self.expression_fields = nn.Parameter(torch.zeros(expression_inputs, 2, expression_grid, expression_grid))

    def flow(self, pitch_yaw: torch.Tensor) -> torch.Tensor:
        """``[B, 2, grid, grid]`` offsets (x, y) in [-1, 1] units."""
        return FLOW_GAIN * self.mlp(pitch_yaw).view(-1, 2, self.grid, self.grid)

    def expression_flow(self, expression: torch.Tensor) -> torch.Tensor:
        """``[B, 2, E, E]`` offsets on the still head: the fields weighted by the standardised inputs."""
        return FLOW_GAIN * torch.einsum("bi,ichw->bchw", expression, self.expression_fields)

    def _full_size(self, flow: torch.Tensor) -> torch.Tensor:
        size = self.resolution
        return F.interpolate(flow, size=(size, size), mode="bilinear", align_corners=True)

    def sampling_grid(self, pitch_yaw: torch.Tensor, expression: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, R, R, 2]`` where each output pixel at ``resolution`` samples its input."""
        size = self.resolution
        offsets = self._full_size(self.flow(pitch_yaw)).permute(0, 2, 3, 1)
        identity = torch.eye(2, 3, device=pitch_yaw.device, dtype=offsets.dtype).expand(len(pitch_yaw), 2, 3)
        on_still_head = F.affine_grid(identity, [len(pitch_yaw), 1, size, size], align_corners=False) + offsets
        if not self.expression_grid or expression is None:
            return on_still_head
        fields = self._full_size(self.expression_flow(expression))
        moved = F.grid_sample(fields, on_still_head, mode="bilinear", padding_mode="border", align_corners=False)
        return on_still_head + moved.permute(0, 2, 3, 1)

    def bind(self, pitch_yaw: torch.Tensor, expression: torch.Tensor | None = None) -> Warp:
        """The warp for these frames, as ``SynthesisNetwork.forward(warp=...)`` takes it;
        ``expression``: the standardised jaw/expression (/gaze) inputs, for the expression flows."""
        grid = self.sampling_grid(pitch_yaw, expression)

        def warp(resolution: int, features: torch.Tensor, image: torch.Tensor):
            if resolution != self.resolution:
                return features, image
            sample = lambda x: F.grid_sample(x, grid.to(x.dtype), mode="bilinear", padding_mode="border",
                                             align_corners=False)
            return sample(features), sample(image)

        return warp
