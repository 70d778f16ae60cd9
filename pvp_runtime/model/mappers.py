"""PVP's stage-2 mappers: FLAME channels -> W+ on the personalized manifold (paper section 3.3).

Pose mapper:        (pitch, yaw) -> N pivot blending weights.  The weights are a
                    residual over the centroid (1/N each), bounded below by -beta
                    (the beta-dilated convex hull of the pivots) and summing to 1;
                    W+ = sum_i alpha_i * w_i.
Expression mapper:  one MLP per W+ layer for the first 8 layers; input jaw pose (3)
                    and expression (E), plus both eyes' axis-angles (6) for a
                    subject fitted on a capture with gaze; its Tanh output is
                    added to those layers.  ``linear`` (our option for the
                    scratch prior): no hidden layer, so each input moves each
                    layer along one direction (through the Tanh bound).  (Gaze is our addition: the paper's
                    mappers ignore the eyes, so its subjects cannot look around.)

Both final layers start at zero, so an untrained model renders the pivots'
centroid with no expression offset (the reference code uses PyTorch's default
init, which starts from a random blend).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

POSE_INPUTS = 2  # pitch, yaw in radians
JAW_INPUTS = 3
GAZE_INPUTS = 6  # eye_l_x/y/z, eye_r_x/y/z
DEFAULT_HIDDEN = 128
DEFAULT_BETA = 0.02
DEFAULT_EXPRESSION_LAYERS = 8
SOFTPLUS_SHARPNESS = 100.0


def _mlp(in_features: int, hidden: int, out_features: int) -> nn.Sequential:
    """Hidden layer, then a zero-initialised Tanh-bounded output; ``hidden`` 0: no hidden layer."""
    layers = [nn.Linear(in_features, hidden), nn.LeakyReLU()] if hidden else []
    mlp = nn.Sequential(*layers, nn.Linear(hidden or in_features, out_features), nn.Tanh())
    nn.init.zeros_(mlp[-2].weight)
    nn.init.zeros_(mlp[-2].bias)
    return mlp


def dilated_hull_weights(raw: torch.Tensor, beta: float) -> torch.Tensor:
    """Map unconstrained weights onto {alpha : sum(alpha) = 1, alpha_i >= -beta}.

    A sharp softplus lifts every weight above -beta; the result is normalised in
    the shifted space (alpha + beta), which keeps the bound exact.  The reference
    code divides by the plain sum instead, which can push a weight below -beta
    whenever that sum is under 1.  Equal inputs still give exactly 1/N.
    """
    shifted = F.softplus(raw + beta, beta=SOFTPLUS_SHARPNESS)  # > 0, i.e. alpha > -beta
    n = raw.shape[-1]
    return shifted / shifted.sum(dim=-1, keepdim=True) * (1 + n * beta) - beta


class PoseMapper(nn.Module):
    def __init__(self, num_pivots: int, hidden: int = DEFAULT_HIDDEN, beta: float = DEFAULT_BETA):
        super().__init__()
        self.num_pivots = num_pivots
        self.beta = beta
        self.mlp = _mlp(POSE_INPUTS, hidden, num_pivots)

    def forward(self, pitch_yaw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (blending weights [B, N], residual over the centroid [B, N])."""
        residual = self.mlp(pitch_yaw)
        weights = dilated_hull_weights(1.0 / self.num_pivots + residual, self.beta)
        return weights, residual


class ExpressionMapper(nn.Module):
    def __init__(self, num_expressions: int, w_dim: int, num_layers: int = DEFAULT_EXPRESSION_LAYERS,
                 hidden: int = DEFAULT_HIDDEN, gaze: bool = False, linear: bool = False):
        super().__init__()
        self.num_layers = num_layers
        inputs = JAW_INPUTS + num_expressions + (GAZE_INPUTS if gaze else 0)
        self.layers = nn.ModuleList(_mlp(inputs, 0 if linear else hidden, w_dim) for _ in range(num_layers))

    def forward(self, jaw_and_expression: torch.Tensor) -> torch.Tensor:
        """Returns the W+ offset of the first ``num_layers`` layers, [B, num_layers, w_dim]."""
        return torch.stack([mlp(jaw_and_expression) for mlp in self.layers], dim=1)
