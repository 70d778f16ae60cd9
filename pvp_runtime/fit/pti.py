"""Pivotal tuning (PTI) on all pivots, with the locality regulariser (paper section 4.1, step 4).

The pivots' latents stay fixed; the generator's synthesis weights move so that
``G(w_i)`` reproduces pivot frame ``I_i``:

    sum_i  lpips_weight * LPIPS(G(w_i), I_i) + l2_weight * ||G(w_i) - I_i||^2  +  lambda_R * L_R

``L_R`` (PTI's locality regulariser) keeps the generator unchanged away from
the pivots: sample ``w_z`` from the mapping network at truncation 0.5, step
``alpha`` = 30 from the pivot towards it, ``w_r = w_p + alpha (w_z - w_p) /
||w_z - w_p||`` (the norm taken over the whole W+ code, as PTI does), and
penalise 0.1 L2 + 0.1 LPIPS between the original and the tuned generator at
``w_r``.  PTI ships with it off; the paper finds it essential for editability.

One *epoch* is a pass over all pivots in a fresh random order, one optimiser
step per mini-batch (PTI's multi-image mode, batch 1).  Tuning stops when an
epoch's mean LPIPS is under the threshold (0.03) or after ``max_epochs`` (350).
Only synthesis weights are tuned: the mapping network is not used at render
time and the regulariser should sample the original prior.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..model.stylegan2 import Generator
from .checkpoint import load_optimizer, optimizer_tensors
from .config import PTIConfig
from .lpips import LPIPS, area_downsample
from .matte_loss import MatteTerm, matte_groups, matte_loss
from .prepared import PreparedClip
from .rng import derived_seed, step_generator
from .stage import TrainingStage


def epoch_order(seed: int, stage: str, epoch: int, count: int) -> np.ndarray:
    gen = torch.Generator().manual_seed(derived_seed(seed, stage, "order", epoch))
    return torch.randperm(count, generator=gen).numpy()


def epoch_batch(seed: int, stage: str, index: int, count: int, batch_size: int) -> tuple[np.ndarray, bool]:
    """Step ``index``'s pivots (passes over all pivots in a fresh seeded order each epoch, so a
    resumed run picks the same ones) and whether the step ends its epoch."""
    batches_per_epoch = math.ceil(count / batch_size)
    epoch, batch = divmod(index, batches_per_epoch)
    order = epoch_order(seed, stage, epoch, count)
    return order[batch * batch_size:(batch + 1) * batch_size], batch == batches_per_epoch - 1


def locality_regularizer(generator: Generator, original: Generator, pivot_ws: torch.Tensor, z: torch.Tensor,
                         config: PTIConfig, lpips: LPIPS) -> torch.Tensor:
    with torch.no_grad():
        w_z = original.mapping(z, truncation_psi=config.locality_truncation)
        direction = w_z - pivot_ws
        norm = direction.flatten(1).norm(dim=1).clamp(min=1e-8)[:, None, None]
        w_r = pivot_ws + config.locality_alpha * direction / norm
        reference = original.synthesis(w_r, noise_mode="const")
    tuned = generator.synthesis(w_r, noise_mode="const")
    size = config.lpips_resolution
    return (config.locality_l2_weight * F.mse_loss(tuned, reference)
            + config.locality_lpips_weight * lpips(area_downsample(tuned, size), area_downsample(reference, size)).mean())


class PTIStage(TrainingStage):
    name = "pti"

    def __init__(self, generator: Generator, original: Generator | None, pivots_ws: torch.Tensor,
                 clip: PreparedClip, pivot_frames: np.ndarray, lpips: LPIPS, config: PTIConfig, seed: int, device,
                 matte: MatteTerm | None = None):
        self.generator = generator
        self.original = original.requires_grad_(False).eval() if original is not None else None
        self.pivots_ws = pivots_ws.to(device)
        self.clip = clip
        self.pivot_frames = np.asarray(pivot_frames)
        self.lpips = lpips
        self.config = config
        self.seed = seed
        self.device = device
        self.matte = matte
        generator.requires_grad_(False)
        self.parameters = list(generator.synthesis.parameters())
        for p in self.parameters:
            p.requires_grad_(True)
        self.optimizer = torch.optim.Adam([{"params": self.parameters}] + matte_groups(matte), lr=config.lr,
                                          betas=(0.9, 0.999))
        count = len(self.pivot_frames)
        self.batches_per_epoch = math.ceil(count / config.batch_size)
        self.total_steps = config.max_epochs * self.batches_per_epoch
        self.epoch_lpips_sum = 0.0
        self.epoch_lpips: list[float] = []
        self._converged = False

    @property
    def converged(self) -> bool:
        return self._converged

    def step(self, index: int) -> dict[str, float]:
        config = self.config
        chosen, ends_epoch = epoch_batch(self.seed, self.name, index, len(self.pivot_frames), config.batch_size)
        ws = self.pivots_ws[torch.as_tensor(chosen, device=self.device)]
        images, features = self.generator.synthesis(ws, noise_mode="const", return_features=True)
        targets = self.clip.images(self.pivot_frames[chosen], self.device)
        size = config.lpips_resolution
        distance = self.lpips(area_downsample(images, size), area_downsample(targets, size))
        mse = F.mse_loss(images, targets)
        loss = config.lpips_weight * distance.mean() + config.l2_weight * mse
        losses = {"lpips": distance.mean().item(), "mse": mse.item()}
        matte = matte_loss(self.matte, features, images, self.pivot_frames[chosen], size)
        if matte is not None:
            loss, losses["matte"] = loss + matte, matte.item()
        if self.original is not None and config.locality_weight > 0 and index % config.locality_every == 0:
            gen = step_generator(self.seed, self.name, index)
            z = torch.randn(len(chosen), self.generator.config.z_dim, generator=gen).to(self.device)
            regularizer = locality_regularizer(self.generator, self.original, ws, z, config, self.lpips)
            loss = loss + config.locality_weight * regularizer
            losses["locality"] = regularizer.item()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.epoch_lpips_sum += distance.sum().item()
        if ends_epoch:
            mean = self.epoch_lpips_sum / len(self.pivot_frames)
            self.epoch_lpips.append(mean)
            self.epoch_lpips_sum = 0.0
            self._converged = mean <= config.lpips_threshold
        return losses

    def finish(self) -> None:
        self.generator.requires_grad_(False)

    def state(self):
        tensors, optimizer_meta = optimizer_tensors(self.optimizer, "optimizer")
        return tensors, {"optimizer": optimizer_meta, "epoch_lpips_sum": self.epoch_lpips_sum,
                         "epoch_lpips": self.epoch_lpips, "converged": self._converged}

    def load_state(self, tensors, meta):
        load_optimizer(self.optimizer, tensors, meta["optimizer"], "optimizer")
        self.epoch_lpips_sum = meta["epoch_lpips_sum"]
        self.epoch_lpips = list(meta["epoch_lpips"])
        self._converged = meta["converged"]
