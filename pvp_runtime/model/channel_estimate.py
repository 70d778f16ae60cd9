"""What a FLAME parameter regressor reads off an image.

It lives here, below both its producer (``loaders/deca.py``) and its consumers
(``fit/encoders.py``, ``fit/losses.py``), so that the loaders never import
fitting code.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class ChannelEstimate:
    """FLAME parameters estimated from images (DECA's encoder, or any regressor like it).

    ``global_pose`` and ``jaw`` are FLAME axis-angles, ``expression`` FLAME PCA
    coefficients (at least as many as the subject's layout uses; extra ones are
    ignored), ``neck`` is None for estimators that have none (DECA).
    """

    global_pose: torch.Tensor       # [B, 3]
    jaw: torch.Tensor               # [B, 3]
    expression: torch.Tensor        # [B, E']
    neck: torch.Tensor | None = None  # [B, 3]
