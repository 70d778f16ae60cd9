"""The PVP model: pivots + pose mapper + expression mapper, rig channels -> W+.

The generator is separate (:mod:`.stylegan2`); this module decides *where on
the personalized manifold* a frame lives.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from ..contract.channels import ChannelLayout, effective_head_angles
from .mappers import (DEFAULT_BETA, DEFAULT_EXPRESSION_LAYERS, DEFAULT_HIDDEN, GAZE_INPUTS, JAW_INPUTS,
                      ExpressionMapper, PoseMapper)
from .pose_warp import PoseWarp, Warp, check_pose_warp

STANDARDIZE_MIN_STD = 1e-4


@dataclass(frozen=True)
class MapperConfig:
    num_pivots: int
    num_expressions: int = 50
    hidden: int = DEFAULT_HIDDEN
    beta: float = DEFAULT_BETA
    expression_layers: int = DEFAULT_EXPRESSION_LAYERS
    gaze: bool = False  # the expression mapper also reads the eye channels (fitted on a capture with gaze)
    # The expression mapper sees its inputs standardised by the training clip's statistics (stored
    # with the model): a 0.4 rad jaw and a 2-unit smile then move it equally fast (our addition).
    standardized: bool = False
    # No hidden layer in the expression mapper (mappers.py); see fit/config.py for why a scratch
    # prior uses it.
    expression_linear: bool = False
    # A pose warp of the features at ``pose_warp_resolution`` on a ``pose_warp_grid``-square grid
    # (model/pose_warp.py); 0: none, as in the paper.
    pose_warp_grid: int = 0
    pose_warp_resolution: int = 0
    expression_warp_grid: int = 0  # with a pose warp: per-input expression flows on this grid; 0: none

    def __post_init__(self):
        if not isinstance(self.num_pivots, int) or self.num_pivots < 1:
            raise ValueError(f"pivot count must be a positive integer, got {self.num_pivots!r}")
        if self.pose_warp_grid:
            check_pose_warp(self.pose_warp_grid, self.pose_warp_resolution)
            if self.expression_warp_grid:
                check_pose_warp(self.expression_warp_grid, self.pose_warp_resolution)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "MapperConfig":
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass
class MapperInputs:
    """What the mappers see of a batch of frames (roll is applied later, in 2D)."""

    pitch_yaw: torch.Tensor      # [B, 2] radians, of the composed global+neck rotation
    jaw_expression: torch.Tensor  # [B, 3 + E], or [B, 3 + E + 6] with the eyes for a gaze subject
    roll: torch.Tensor           # [B] radians

    @classmethod
    def from_frames(cls, frames: np.ndarray, layout: ChannelLayout, device="cpu", gaze: bool = False) -> "MapperInputs":
        frames = np.asarray(frames, dtype=np.float32)
        angles = effective_head_angles(frames, layout)  # yaw, pitch, roll
        parts = [frames[:, layout.slice("jaw")], frames[:, layout.slice("expression")]]
        if gaze:
            parts.append(frames[:, layout.slice("eyes")])
        as_tensor = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).to(device)
        return cls(as_tensor(angles[:, [1, 0]]), as_tensor(np.concatenate(parts, axis=1)), as_tensor(angles[:, 2]))


class PVPModel(nn.Module):
    def __init__(self, config: MapperConfig, num_ws: int, w_dim: int):
        super().__init__()
        self.config = config
        self.num_ws = num_ws
        self.expression_layers = min(config.expression_layers, num_ws)
        self.pivots = nn.Parameter(torch.zeros(config.num_pivots, num_ws, w_dim), requires_grad=False)
        self.pose_mapper = PoseMapper(config.num_pivots, config.hidden, config.beta)
        self.expression_mapper = ExpressionMapper(config.num_expressions, w_dim, self.expression_layers,
                                                  config.hidden, config.gaze, config.expression_linear)
        inputs = JAW_INPUTS + config.num_expressions + (GAZE_INPUTS if config.gaze else 0)
        self.pose_warp = (PoseWarp(config.pose_warp_grid, config.pose_warp_resolution, expression_inputs=inputs,
                                   expression_grid=config.expression_warp_grid)
                          if config.pose_warp_grid else None)
        if config.standardized:
            self.register_buffer("expression_input_mean", torch.zeros(inputs))
            self.register_buffer("expression_input_scale", torch.ones(inputs))

    @torch.no_grad()
    def standardize_like(self, frames: np.ndarray, layout: ChannelLayout) -> None:
        """Take the expression mapper's input statistics from these (training) frames; a channel
        that never moved keeps scale 1 (nothing to learn about it, nothing to amplify)."""
        values = self.inputs(frames, layout).jaw_expression
        std = values.std(dim=0)
        self.expression_input_mean.copy_(values.mean(dim=0))
        self.expression_input_scale.copy_(torch.where(std > STANDARDIZE_MIN_STD, 1.0 / std.clamp(min=1e-12),
                                                      torch.ones_like(std)))

    def inputs(self, frames: np.ndarray, layout: ChannelLayout, device="cpu") -> MapperInputs:
        """What this model's mappers read of ``frames`` (the eyes only for a gaze subject)."""
        return MapperInputs.from_frames(frames, layout, device, self.config.gaze)

    def warp(self, inputs: MapperInputs) -> Warp | None:
        """What to pass as ``synthesis(warp=...)`` for these frames: their pose warp, or None."""
        if self.pose_warp is None:
            return None
        return self.pose_warp.bind(inputs.pitch_yaw, self.expression_inputs(inputs))

    def expression_inputs(self, inputs: MapperInputs) -> torch.Tensor:
        """The jaw/expression (/gaze) inputs as the expression mapper sees them (standardised)."""
        if not self.config.standardized:
            return inputs.jaw_expression
        return (inputs.jaw_expression - self.expression_input_mean) * self.expression_input_scale

    def forward(self, inputs: MapperInputs) -> tuple[torch.Tensor, dict]:
        """Returns W+ [B, num_ws, w_dim] and the terms the latent regulariser needs."""
        weights, residual = self.pose_mapper(inputs.pitch_yaw)
        w_pose = torch.einsum("bn,nlc->blc", weights, self.pivots)
        delta = self.expression_mapper(self.expression_inputs(inputs))
        ws = torch.cat([w_pose[:, :self.expression_layers] + delta, w_pose[:, self.expression_layers:]], dim=1)
        return ws, {"weights": weights, "residual": residual, "delta": delta}
