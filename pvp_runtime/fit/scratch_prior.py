"""The "scratch" prior: a generator and the pivot codes learnt together from the pivots alone.

Used when no pretrained StyleGAN2 is given (small or demo subjects, CPU-only
machines, or no licence for FFHQ weights).  A freshly initialised generator of
the configured size and one learnable W+ code per pivot are optimised jointly
(Adam, StyleGAN's betas (0, 0.99)) to reproduce the pivot frames under
``lpips_weight * LPIPS + l2_weight * MSE``.  This replaces both the inversion
and the pivotal tuning of the pretrained path; it has no locality regulariser
because there is no prior to keep.

What to expect: the pivots are reproduced closely, but the space *between*
the codes was never trained, so blends of pivots (what the pose mapper makes)
are weaker than on a pretrained manifold.  Stage 2 therefore also tunes the
generator on every training frame by default (``mapper.tune_generator``).
Nothing here knows faces in general: quality is bounded by the clip itself.
"""

from __future__ import annotations


import numpy as np
import torch
import torch.nn.functional as F

from ..model.stylegan2 import Generator
from .checkpoint import load_optimizer, optimizer_tensors
from .config import ScratchPriorConfig
from .lpips import LPIPS
from .prepared import PreparedClip
from .pti import epoch_batch
from .rng import derived_seed
from .stage import TrainingStage


def initial_codes(generator: Generator, count: int, seed: int, device) -> torch.Tensor:
    """Distinct starting codes: the (untrained) mapping of random z, so pivots start apart."""
    gen = torch.Generator().manual_seed(derived_seed(seed, "scratch-codes"))
    z = torch.randn(count, generator.config.z_dim, generator=gen).to(device)
    with torch.no_grad():
        return generator.mapping(z).clone()


class ScratchPriorStage(TrainingStage):
    name = "scratch_prior"

    def __init__(self, generator: Generator, clip: PreparedClip, pivot_frames: np.ndarray, lpips: LPIPS,
                 config: ScratchPriorConfig, seed: int, device):
        self.generator = generator
        self.clip = clip
        self.pivot_frames = np.asarray(pivot_frames)
        self.lpips = lpips
        self.config = config
        self.seed = seed
        self.device = device
        generator.requires_grad_(False)
        synthesis = list(generator.synthesis.parameters())
        for p in synthesis:
            p.requires_grad_(True)
        self.codes = initial_codes(generator, len(self.pivot_frames), seed, device).requires_grad_(True)
        self.optimizer = torch.optim.Adam([{"params": synthesis, "lr": config.generator_lr},
                                           {"params": [self.codes], "lr": config.code_lr}], betas=(0.0, 0.99))
        self.batch_size = min(config.batch_size, len(self.pivot_frames))
        self.total_steps = config.steps
        self.epoch_lpips_sum = 0.0
        self._converged = False

    @property
    def converged(self) -> bool:
        return self._converged

    def step(self, index: int) -> dict[str, float]:
        config = self.config
        chosen, ends_epoch = epoch_batch(self.seed, self.name, index, len(self.pivot_frames), self.batch_size)
        images = self.generator.synthesis(self.codes[torch.as_tensor(chosen, device=self.device)], noise_mode="const")
        targets = self.clip.images(self.pivot_frames[chosen], self.device)
        mse = F.mse_loss(images, targets)
        loss = config.l2_weight * mse
        # LPIPS is skipped when nothing uses it: no weight and no stopping threshold.
        distance = self.lpips(images, targets) if config.lpips_weight > 0 or config.lpips_threshold > 0 else None
        if distance is not None:
            loss = loss + config.lpips_weight * distance.mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        if distance is None:
            return {"mse": mse.item()}
        self.epoch_lpips_sum += distance.sum().item()
        if ends_epoch:
            mean = self.epoch_lpips_sum / len(self.pivot_frames)
            self.epoch_lpips_sum = 0.0
            self._converged = config.lpips_threshold > 0 and mean <= config.lpips_threshold
        return {"lpips": distance.mean().item(), "mse": mse.item()}

    def pivots_ws(self) -> torch.Tensor:
        return self.codes.detach().clone()

    def finish(self) -> None:
        self.generator.requires_grad_(False)

    def state(self):
        tensors, optimizer_meta = optimizer_tensors(self.optimizer, "optimizer")
        tensors["codes"] = self.codes
        return tensors, {"optimizer": optimizer_meta, "epoch_lpips_sum": self.epoch_lpips_sum,
                         "converged": self._converged}

    def load_state(self, tensors, meta):
        with torch.no_grad():
            self.codes.copy_(tensors["codes"])
        load_optimizer(self.optimizer, tensors, meta["optimizer"], "optimizer")
        self.epoch_lpips_sum = meta["epoch_lpips_sum"]
        self._converged = meta["converged"]
