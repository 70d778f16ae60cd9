"""W-space projection of the pivots with a pretrained generator (paper section 4.1, step 3).

For each pivot frame we look for one ``w`` (repeated over all W+ layers) whose
synthesis matches it under LPIPS, the PTI projector's recipe:

* start at ``w_avg``; add Gaussian noise of ``w_std * initial_noise_factor``
  that ramps to zero over the first ``noise_ramp`` of the steps (explores early,
  settles late);
* the learning rate ramps up over ``lr_rampup`` and down along a cosine over
  the last ``lr_rampdown`` of the steps;
* the per-layer noise inputs are optimised too, with a regulariser that
  penalises their spatial autocorrelation at every scale (weight 1e5) and a
  renormalisation to zero mean and unit variance after every step, so they
  cannot smuggle the image in;
* images above 256 px are area-downsampled before LPIPS.

The optimised noise is discarded afterwards (as in PTI): the pivot is ``w``.
Pivots are projected in batches; each sample has its own noise maps and the
loss is a sum, and since Adam is elementwise the projections stay independent.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..contract.errors import PVPError
from ..model.stylegan2 import Generator, SynthesisLayer
from .checkpoint import load_optimizer, optimizer_tensors
from .config import ProjectorConfig
from .lpips import LPIPS, area_downsample
from .prepared import PreparedClip
from .rng import derived_seed, step_generator
from .stage import TrainingStage


def noise_layers(generator: Generator) -> list[SynthesisLayer]:
    return [m for m in generator.synthesis.modules() if isinstance(m, SynthesisLayer)]


@torch.no_grad()
def w_statistics(generator: Generator, samples: int, seed: int, device) -> tuple[torch.Tensor, float]:
    """Mean of W and the RMS distance of samples from it (the projector's noise scale)."""
    gen = torch.Generator().manual_seed(derived_seed(seed, "w-statistics"))
    z = torch.randn(samples, generator.config.z_dim, generator=gen).to(device)
    w = torch.cat([generator.mapping(chunk)[:, 0] for chunk in z.split(2048)])
    w_avg = w.mean(dim=0)
    w_std = float(((w - w_avg).square().sum() / samples).sqrt())
    return w_avg, w_std


def noise_regularizer(noise_maps: list[torch.Tensor]) -> torch.Tensor:
    """Sum over maps and scales of squared 1-pixel autocorrelations, per sample ([B])."""
    total = 0.0
    for noise in noise_maps:  # [B, 1, R, R]
        while True:
            total = total + (noise * torch.roll(noise, shifts=1, dims=3)).mean(dim=(1, 2, 3)).square()
            total = total + (noise * torch.roll(noise, shifts=1, dims=2)).mean(dim=(1, 2, 3)).square()
            if noise.shape[2] <= 8:
                break
            noise = torch.nn.functional.avg_pool2d(noise, kernel_size=2)
    return total


def learning_rate(config: ProjectorConfig, t: float) -> float:
    ramp = min(1.0, (1.0 - t) / config.lr_rampdown)
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    return config.lr * ramp * min(1.0, t / config.lr_rampup)


class ProjectionStage(TrainingStage):
    name = "projection"

    def __init__(self, generator: Generator, clip: PreparedClip, pivot_frames: np.ndarray, lpips: LPIPS,
                 config: ProjectorConfig, seed: int, device):
        self.generator = generator.requires_grad_(False)  # only w and the noise maps are optimised
        self.clip = clip
        self.pivot_frames = np.asarray(pivot_frames)
        self.lpips = lpips
        self.config = config
        self.seed = seed
        self.device = device
        self.layers = noise_layers(generator)
        self.batches = [self.pivot_frames[i:i + config.batch_size]
                        for i in range(0, len(self.pivot_frames), config.batch_size)]
        self.total_steps = len(self.batches) * config.steps
        self.w_avg, self.w_std = w_statistics(generator, config.w_avg_samples, seed, device)
        self.result = torch.zeros(len(self.pivot_frames), generator.config.w_dim, device=device)
        self.w_opt = None
        self.noise: list[torch.Tensor] = []
        self.optimizer = None

    def _start_batch(self, batch: int) -> None:
        n = len(self.batches[batch])
        self.w_opt = self.w_avg.detach().clone()[None].repeat(n, 1).requires_grad_(True)
        gen = torch.Generator().manual_seed(derived_seed(self.seed, "projection-noise", batch))
        self.noise = [torch.randn(n, 1, layer.resolution, layer.resolution, generator=gen).to(self.device)
                      .requires_grad_(True) for layer in self.layers]
        self.optimizer = torch.optim.Adam([self.w_opt, *self.noise], betas=(0.9, 0.999), lr=self.config.lr)

    def step(self, index: int) -> dict[str, float]:
        batch, t_step = divmod(index, self.config.steps)
        if t_step == 0:
            self._start_batch(batch)
        config = self.config
        t = t_step / config.steps
        noise_scale = self.w_std * config.initial_noise_factor * max(0.0, 1.0 - t / config.noise_ramp) ** 2
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(config, t)
        gen = step_generator(self.seed, self.name, index)
        w = self.w_opt + torch.randn(self.w_opt.shape, generator=gen).to(self.device) * noise_scale
        ws = w[:, None].repeat(1, self.generator.num_ws, 1)
        images = self._synthesise(ws)
        targets = self.clip.images(self.batches[batch], self.device)
        distance = self.lpips(area_downsample(images, config.lpips_resolution),
                              area_downsample(targets, config.lpips_resolution))
        regularizer = noise_regularizer(self.noise)
        loss = distance.sum() + config.noise_regularization * regularizer.sum()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        with torch.no_grad():
            for noise in self.noise:
                noise -= noise.mean(dim=(1, 2, 3), keepdim=True)
                noise *= noise.square().mean(dim=(1, 2, 3), keepdim=True).rsqrt()
        if t_step == config.steps - 1:
            first = batch * config.batch_size
            self.result[first:first + len(self.batches[batch])] = self.w_opt.detach()
            self.w_opt, self.noise, self.optimizer = None, [], None
        return {"lpips": distance.mean().item(), "noise_reg": regularizer.mean().item()}

    def _synthesise(self, ws: torch.Tensor) -> torch.Tensor:
        """Synthesis with this batch's noise maps swapped in for the generator's constant noise."""
        saved = [layer.noise_const for layer in self.layers]
        try:
            for layer, noise in zip(self.layers, self.noise):
                layer.noise_const = noise  # [B, 1, R, R] broadcasts per sample
            return self.generator.synthesis(ws, noise_mode="const")
        finally:
            for layer, original in zip(self.layers, saved):
                layer.noise_const = original

    def pivots_ws(self) -> torch.Tensor:
        """``[K, num_ws, w_dim]`` (every layer the projected w)."""
        return self.result[:, None].repeat(1, self.generator.num_ws, 1).detach()

    def state(self):
        tensors = {"result": self.result}
        meta = {"in_batch": self.w_opt is not None}
        if self.w_opt is not None:
            tensors["w_opt"] = self.w_opt
            tensors.update({f"noise.{i}": n for i, n in enumerate(self.noise)})
            opt_tensors, meta["optimizer"] = optimizer_tensors(self.optimizer, "optimizer")
            tensors.update(opt_tensors)
        return tensors, meta

    def load_state(self, tensors, meta):
        self.result.copy_(tensors["result"])
        if meta["in_batch"]:
            self.w_opt = tensors["w_opt"].to(self.device).clone().requires_grad_(True)
            self.noise = [tensors[f"noise.{i}"].to(self.device).clone().requires_grad_(True)
                          for i in range(len(self.layers))]
            self.optimizer = torch.optim.Adam([self.w_opt, *self.noise], betas=(0.9, 0.999), lr=self.config.lr)
            load_optimizer(self.optimizer, tensors, meta["optimizer"], "optimizer")


class EncoderInversion:
    """Pivot latents from an inversion encoder (e4e) in one pass: no optimisation to resume."""

    def __init__(self, encoder, generator: Generator):
        self.encoder = encoder
        self.generator = generator

    @torch.no_grad()
    def __call__(self, clip: PreparedClip, pivot_frames: np.ndarray, device, batch_size: int = 8) -> torch.Tensor:
        parts = []
        for i in range(0, len(pivot_frames), batch_size):
            ws = self.encoder(clip.images(pivot_frames[i:i + batch_size], device))
            expected = (self.generator.num_ws, self.generator.config.w_dim)
            if ws.ndim != 3 or tuple(ws.shape[1:]) != expected:
                raise PVPError(f"latent encoder {getattr(self.encoder, 'name', '?')} returned W+ of shape "
                               f"{list(ws.shape)}, the generator needs [N, {expected[0]}, {expected[1]}]")
            parts.append(ws.float())
        return torch.cat(parts)
