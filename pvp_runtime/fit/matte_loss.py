"""The alpha a fit with mattes learns: the matte head's loss, added by each stage that renders frames.

With ``--mattes`` the fit trains a matte head (``model/matte.py``) in the same
stages as the generator and mappers (``scratch_prior``, ``pti``, ``mapper``):
each step hands :meth:`MatteTerm.loss` the last synthesis features of the
frames it rendered, and adds the result to its loss.  The head's parameters
join that stage's optimiser as one more group (:meth:`parameter_groups`), so
checkpoints and resumes carry them like everything else.

The features are detached: the matte loss trains only the head.  The RGB fit
(generator, codes, mappers, roll centre) is then exactly what it would be
without mattes, and on the paper's path, where the generator is frozen in stage
2, nothing changes either.

The loss is binary cross-entropy between the predicted and the aligned matte,
both area-downsampled to the stage's loss resolution.  Pass-through crops show
the head's roll, so the predicted alpha is rolled like the frame first (as the
runtime will roll it) and only the pixels the rolled crop covers are compared.
"""

from __future__ import annotations

import numpy as np
import torch

from ..avatar import roll_about
from ..model.matte import MatteConfig, MatteHead
from ..model.stylegan2 import Generator
from .frame_roll import FrameRoll
from .lpips import area_downsample
from .prepared import PreparedClip

MATTE_LR = 1e-2
PROBABILITY_FLOOR = 1e-6  # BCE on probabilities: keeps log() finite where the head saturates


PRIOR_CLAMP = 0.01  # the starting prior stays a few logits from certainty, so it can still move


def matte_head_for(generator: Generator, clip: PreparedClip, train_frames) -> MatteHead:
    """A new head sized for this generator's output features, whose per-pixel prior starts at the
    training frames' mean matte: before any step it scores the constant baseline, and training
    only has to learn where each frame departs from it."""
    config = generator.config
    head = MatteHead(MatteConfig(in_channels=config.channels(config.resolution), resolution=config.resolution))
    mean = mean_training_matte(clip, np.asarray(train_frames), "cpu").clamp(PRIOR_CLAMP, 1 - PRIOR_CLAMP)
    with torch.no_grad():
        head.prior.copy_(torch.log(mean / (1 - mean)))
    return head


def mean_training_matte(clip: PreparedClip, train_frames: np.ndarray, device, chunk: int = 256) -> torch.Tensor:
    """``[1, 1, R, R]`` the training frames' mean matte (read in chunks: the clip is memory-mapped)."""
    total = torch.zeros(1, 1, clip.resolution, clip.resolution, dtype=torch.float64, device=device)
    for start in range(0, len(train_frames), chunk):
        total += clip.matte_tensor(train_frames[start:start + chunk], device).double().sum(dim=0, keepdim=True)
    return (total / max(len(train_frames), 1)).float()


def rolled_alpha(alpha: torch.Tensor, roll: torch.Tensor | None,
                 frame_roll: FrameRoll | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Alpha as the frame shows it (rolled about the fit's roll centre, held fixed here) and the
    rolled crop's coverage; unchanged and None for aligned crops."""
    if roll is None or frame_roll is None or not frame_roll.shows_roll:
        return alpha, None
    center = frame_roll.center.detach()
    rolled = roll_about(torch.cat([alpha, torch.ones_like(alpha)], dim=1), roll.detach().to(alpha.dtype),
                        (center[0], center[1]))
    return rolled[:, :1], rolled[:, 1:]


class MatteTerm:
    """The matte head of a fit and its loss against the prepared clip's mattes."""

    def __init__(self, head: MatteHead, clip: PreparedClip, frame_roll: FrameRoll | None = None):
        if clip.mattes is None:
            raise ValueError("a matte term needs a clip with mattes")
        self.head = head
        self.clip = clip
        self.frame_roll = frame_roll

    def parameter_groups(self) -> list[dict]:
        return [{"params": [p.requires_grad_(True) for p in self.head.parameters()], "lr": MATTE_LR}]

    def loss(self, features: torch.Tensor, images: torch.Tensor, frames, size: int,
             roll: torch.Tensor | None = None) -> torch.Tensor:
        """BCE of the head's alpha for ``frames`` (rendered as ``images`` from ``features``) at
        ``size`` px; ``roll`` (radians per frame) for stages that roll renders like the frames."""
        alpha = self.head(features.detach(), images.detach())
        alpha, coverage = rolled_alpha(alpha, roll, self.frame_roll)
        target = self.clip.matte_tensor(frames, alpha.device)
        alpha, target = area_downsample(alpha, size), area_downsample(target, size)
        per_pixel = binary_cross_entropy(alpha, target)
        if coverage is None:
            return per_pixel.mean()
        coverage = area_downsample(coverage, size)
        return (per_pixel * coverage).sum() / coverage.sum().clamp(min=1.0)


def binary_cross_entropy(alpha: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-pixel BCE of probabilities.  Written out rather than ``F.binary_cross_entropy``, which
    raises on a NaN input: a diverging fit must reach the stage loop's finite-loss check
    (``finite.py``) and stop there with its one line, like any other loss."""
    alpha = alpha.clamp(PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR)
    return -(target * torch.log(alpha) + (1 - target) * torch.log1p(-alpha))


def matte_groups(term: MatteTerm | None) -> list[dict]:
    """The optimiser groups a stage adds for the matte head (none without mattes)."""
    return term.parameter_groups() if term is not None else []


def matte_loss(term: MatteTerm | None, features: torch.Tensor, images: torch.Tensor, frames, size: int,
               roll: torch.Tensor | None = None) -> torch.Tensor | None:
    """The stage's matte loss for the frames it rendered, or None when the fit has no mattes."""
    return term.loss(features, images, frames, size, roll) if term is not None else None
