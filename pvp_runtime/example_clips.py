"""Small, readable channel clips: a head turn, a nod, a jaw open, expression pulses.

Used by ``pvp example-channels``, the tests and the benchmarks, so everyone
drives the avatar with the same motion.
"""

from __future__ import annotations

import math

import numpy as np

from .contract.channels import ChannelLayout


def head_turn_clip(layout: ChannelLayout, num_frames: int = 48, expression_channels: int = 2) -> np.ndarray:
    """Yaw sweeps +-40 degrees, pitch +-12, the jaw opens mid-clip, and
    ``expression_channels`` expression coefficients pulse in turn."""
    frames = layout.defaults(num_frames)
    t = np.linspace(0.0, 1.0, num_frames, dtype=np.float32)
    names = layout.names
    frames[:, names.index("head_yaw")] = math.radians(40) * np.sin(2 * math.pi * t)
    frames[:, names.index("head_pitch")] = math.radians(12) * np.sin(4 * math.pi * t)
    frames[:, names.index("jaw_x")] = math.radians(20) * np.clip(np.sin(math.pi * t), 0, None) ** 2
    expression = layout.slice("expression")
    count = min(expression_channels, layout.num_expressions)
    for k in range(count):
        centre = (k + 1) / (count + 1)
        frames[:, expression.start + k] = 2.0 * np.exp(-((t - centre) / 0.12) ** 2)
    return frames
