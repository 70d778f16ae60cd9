"""Stopping a fit that went NaN or infinite before it can overwrite a good checkpoint.

Once a loss or a parameter is non-finite, every later step only spreads it, and
a checkpoint of that state would replace the last good one.  Two checks, placed
where they cost least:

* every step's losses (:func:`run_stage`): they are Python floats already;
* every tensor of a checkpoint before it is written (:func:`save_checkpoint`):
  one pass over the parameters, only as often as checkpoints are taken, which
  includes the end of every stage.

So the checkpoint on disk always holds the last finite state, and
``pvp fit --resume`` continues from it.
"""

from __future__ import annotations

import math
from typing import Mapping

import torch

from ..contract.errors import PVPError


class FitDiverged(PVPError):
    """A fit whose losses or parameters became NaN or infinite (the checkpoint keeps the last finite state)."""

    def __init__(self, where: str, what: str):
        super().__init__(f"fit diverged {where}: {what}; nothing non-finite was checkpointed "
                         f"(pvp fit --resume continues from the last finite checkpoint)")
        self.where, self.what = where, what


def non_finite_loss(losses: Mapping[str, float]) -> str | None:
    """``"loss 'mse' is nan"`` for the first non-finite loss, else None."""
    for name, value in losses.items():
        if not math.isfinite(float(value)):
            return f"loss '{name}' is {float(value)}"
    return None


def non_finite_tensor(tensors: Mapping[str, torch.Tensor]) -> str | None:
    """``"tensor 'model.w' holds NaN or infinite values"`` for the first such tensor, else None."""
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            return f"tensor '{name}' holds NaN or infinite values"
    return None
