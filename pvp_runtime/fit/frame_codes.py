"""Per-frame free codes that teach the scratch prior expressions first (``scratch.frame_codes``).

Why: in the joint scratch prior the generator only learns to draw an expression
once the expression mapper sends it a consistent signal for it, and the mapper
only finds a consistent direction once the generator answers to one.  Each
expression shows in a few dozen frames of the clip, so that loop starts late:
within a 30-minute CPU budget, head pose and jaw are learnt and most expression
channels are not (bench_fidelity.py: sweep scores under +1.5 dB).

For the first ``frame_codes`` fraction of the steps every training frame gets its
own free offset on the expression layers of W+ (zero at the start), added to what
the mappers give: the generator can learn to draw each frame's face at once, as
in GLO (Bojanowski et al. 2018), without waiting for the mapper.  Two terms turn
that into mapper knowledge rather than memorised frames::

    pull   = mean |offset - stopgrad(offset + code)|^2   (gradient to the mapper only:
                                                          move toward each frame's code)
    shrink = SHRINK * mean |code|^2                       (codes keep only what the mapper
                                                          cannot yet explain)

After that fraction the codes are dropped and training goes on through the
mappers alone, so held-out frames and the rig see exactly what was trained last.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

SHRINK = 0.01


class FrameCodes(nn.Module):
    def __init__(self, train_frames: np.ndarray, layers: int, w_dim: int, device):
        super().__init__()
        self.row_of = {int(frame): row for row, frame in enumerate(np.asarray(train_frames))}
        self.codes = nn.Parameter(torch.zeros(len(self.row_of), layers, w_dim, device=device))

    def apply(self, ws: torch.Tensor, delta: torch.Tensor, frames: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """(W+ with each frame's code added to the expression layers, pull + shrink terms)."""
        rows = torch.as_tensor([self.row_of[int(frame)] for frame in frames], device=ws.device)
        codes = self.codes[rows]
        layers = codes.shape[1]
        coded = torch.cat([ws[:, :layers] + codes, ws[:, layers:]], dim=1)
        pull = (delta - (delta + codes).detach()).square().mean()
        shrink = SHRINK * codes.square().mean()
        return coded, pull + shrink
