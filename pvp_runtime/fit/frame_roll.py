"""Head roll in pass-through crops: the render is rolled like the frame before it is compared.

Roll never reaches the mappers; the runtime applies it as a 2D rotation of the
rendered crop about the bundle's ``framing.roll_center`` (``avatar.roll_about``).
With landmarks, the FFHQ alignment takes each frame's roll out of its crop, so
renders and crops agree.  Pass-through crops (no landmarks) still show the roll
the channels were measured with, so a loss between an unrolled render and such a
crop sees a head tilted by up to the clip's roll range: the fit learns a blur of
the tilts, and the eyes and mouth, the smallest features, suffer most.

So for pass-through crops every training render is rolled by its frame's roll
before the loss, exactly as the runtime will roll it, and the point the head
rolls about (where the neck pivot sits in the crop, which nothing in a
pass-through clip says) is learnt with everything else and saved in the bundle.
Outside the rolled render nothing is compared (the crop's corners).
"""

from __future__ import annotations

import torch
from torch import nn

from ..avatar import roll_about
from ..bundle import Framing

# Roll centres live in 0..1 crop coordinates; Adam steps in those units are a fraction of the crop.
CENTER_LR = 2e-3


class FrameRoll(nn.Module):
    """The roll centre of pass-through crops, learnt; a no-op for aligned crops."""

    def __init__(self, shows_roll: bool, center: tuple[float, float] = Framing().roll_center):
        super().__init__()
        self.shows_roll = shows_roll
        self.center = nn.Parameter(torch.tensor(center, dtype=torch.float32), requires_grad=shows_roll)

    def parameter_groups(self) -> list[dict]:
        return [{"params": [self.center], "lr": CENTER_LR}] if self.shows_roll else []

    def forward(self, images: torch.Tensor, roll: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``images`` in the generator's range -> (rolled images, ``[B, 1, H, W]`` coverage or None)."""
        if not self.shows_roll:
            return images, None
        rgba = torch.cat([images, torch.ones_like(images[:, :1])], dim=1)
        rolled = roll_about(rgba, roll.to(images.dtype), (self.center[0], self.center[1]))
        return rolled[:, :3], rolled[:, 3:]

    def framing(self) -> Framing:
        x, y = (float(v) for v in self.center.detach().cpu())
        return Framing(roll_center=(x, y))

