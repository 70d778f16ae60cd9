"""The "scratch" prior: a generator learnt from the clip itself, when no pretrained StyleGAN2 is given.

Used for small or demo subjects, CPU-only machines, or without a licence for FFHQ
weights.  Two modes (``scratch.mode``):

``joint`` (default)
    The generator, the pivot codes *and both mappers* are optimised together on
    every training frame: each step renders a batch of training frames from
    their channels (pose mapper -> blend of pivot codes, expression mapper ->
    offset) and a batch of pivot frames from their own codes, under
    ``l2_weight * MSE`` at ``loss_resolution`` (+ ``lpips_weight * LPIPS``).
    The learning rates fall to zero along a cosine over the last
    ``lr_rampdown`` of the steps.

    Why: a pretrained StyleGAN's W+ already turns a blend of two pivots at
    different yaws into a head at an in-between yaw, because it learnt pose
    from many faces.  A generator that only ever saw K isolated pivot codes
    has no such space between them, so blending pivots cross-fades images (a
    double face) and expression offsets land where nothing was learnt.
    Training with the mappers in the loop from the first step makes the space
    the mappers move in the space the generator learnt.  The pivot term keeps
    the paper's meaning of a pivot: a code that reproduces its frame.

``pivots``
    The earlier deviation: generator and codes from the pivot frames alone,
    the mappers afterwards (with the generator tuned in stage 2).  Kept to
    measure against; see ``benchmarks/bench_fidelity.py``.

Coarse to fine (``scratch.coarse_fraction``, our option): the first part of the steps skips
the generator's last block and compares its half-resolution image, upsampled as the skip path
upsamples it (the full render without the last block's contribution).  At the scratch prior's constant
width that block holds about three quarters of the work, so each of those steps costs about a
quarter, and a fit gets several times the steps in the same time: steps are what expressions
need most (docs/architecture.md).  The last block then learns the finest octave on top of a
generator that already follows the rig (as in progressive growing, Karras et al. 2018, without
the fade-in: StyleGAN2's skip ToRGBs already add that octave to an upsampled image).

There is no locality regulariser in either mode: there is no prior to keep.
Nothing here knows faces in general: quality is bounded by the clip itself.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch

from ..contract.channels import ChannelLayout
from ..model.pvp import PVPModel
from ..model.stylegan2 import Generator, upsample_2x
from .checkpoint import load_optimizer, optimizer_tensors
from .config import ScratchPriorConfig
from .frame_roll import FrameRoll
from .lpips import LPIPS, area_downsample
from .matte_loss import MatteTerm, matte_groups, matte_loss
from .prepared import PreparedClip
from .pivots import head_pose_features
from .pixel_loss import pixel_loss
from .pti import epoch_batch
from .rng import derived_seed, step_generator
from .stage import TrainingStage

log = logging.getLogger(__name__)

MODES = ("joint", "pivots")
ADAM_BETA2 = 0.99


def initial_codes(generator: Generator, count: int, seed: int, device) -> torch.Tensor:
    """Distinct starting codes: the (untrained) mapping of random z, so pivots start apart."""
    gen = torch.Generator().manual_seed(derived_seed(seed, "scratch-codes"))
    z = torch.randn(count, generator.config.z_dim, generator=gen).to(device)
    with torch.no_grad():
        return generator.mapping(z).clone()


def expressive_frame_weights(model: PVPModel, channels: np.ndarray, layout: ChannelLayout) -> torch.Tensor:
    """Sampling weights ``1 + d^2 / mean(d^2)``, d: how far a frame's standardised jaw, expression (and
    gaze) inputs lie from the clip's median ones.  A clip shows each expression in a few short
    moments; drawing those frames more often gives the expression mapper as many looks at them
    as at the resting face, without changing what any frame asks for."""
    inputs = model.inputs(channels, layout).jaw_expression
    std = inputs.std(dim=0)
    moving = std > 1e-4
    standardized = (inputs[:, moving] - inputs[:, moving].median(dim=0).values) / std[moving]
    energy = standardized.square().sum(dim=1) if moving.any() else torch.zeros(len(inputs))
    return 1.0 + energy / energy.mean().clamp(min=1e-12)


CURRICULUM_START_SIGMA = 0.5  # standardised head-pose units: about the central third of the clip's poses


def pose_distances(channels: np.ndarray, layout: ChannelLayout) -> torch.Tensor:
    """Each frame's distance from the clip's median head pose, in standardised yaw/pitch/roll."""
    features, _ = head_pose_features(channels, layout)
    return torch.from_numpy(np.sqrt(((features - np.median(features, axis=0)) ** 2).sum(axis=1))).float()


def curriculum_weights(distances: torch.Tensor, step: int, total: int, fraction: float) -> torch.Tensor | None:
    """Sampling weights ``exp(-d^2 / 2 sigma^2)``, sigma widening from CURRICULUM_START_SIGMA to
    infinity over the first ``fraction`` of the steps; None (uniform) after that.  Why: with the head
    held still the scratch prior learns expressions (fixed-head capture, bench_fidelity.py) and with
    the head turning it learns pose first and expressions hardly at all; frames near the clip's usual
    pose give the generator a stretch of nearly still head to learn faces on before it must turn them."""
    end = fraction * total
    if step >= end:
        return None
    sigma = CURRICULUM_START_SIGMA / max(1.0 - step / end, 1e-6)
    return torch.exp(-0.5 * (distances / sigma) ** 2).clamp(min=1e-12)


def cosine_rampdown(step: int, total: int, fraction: float) -> float:
    """1 until the last ``fraction`` of the steps, then a half cosine down to 0."""
    start = total * (1.0 - fraction)
    if fraction <= 0 or step < start:
        return 1.0
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - start) / max(total - start, 1))))


class ScratchPriorStage(TrainingStage):
    name = "scratch_prior"

    def __init__(self, generator: Generator, model: PVPModel, frame_roll: FrameRoll, clip: PreparedClip,
                 channels: np.ndarray, train_frames: np.ndarray, pivot_frames: np.ndarray, layout: ChannelLayout,
                 lpips: LPIPS, config: ScratchPriorConfig, seed: int, device, matte: MatteTerm | None = None):
        self.generator = generator
        self.model = model
        self.frame_roll = frame_roll
        self.clip = clip
        self.channels = np.asarray(channels, np.float32)
        self.train_frames = np.asarray(train_frames)
        self.pivot_frames = np.asarray(pivot_frames)
        self.layout = layout
        self.lpips = lpips
        self.config = config
        self.seed = seed
        self.device = device
        self.matte = matte
        self.joint = config.mode == "joint"
        generator.requires_grad_(False)
        synthesis = [p.requires_grad_(True) for p in generator.synthesis.parameters()]
        model.requires_grad_(False)
        model.pivots.requires_grad_(True)
        groups = [{"params": synthesis, "lr": config.generator_lr},
                  {"params": [model.pivots], "lr": config.code_lr}]
        if self.joint:
            learnt_with_mappers = (model.pose_mapper, model.expression_mapper, model.pose_warp)
            mappers = [p.requires_grad_(True) for module in learnt_with_mappers if module is not None
                       for p in module.parameters()]
            mapper_beta1 = config.beta1 if config.mapper_beta1 is None else config.mapper_beta1
            groups.append({"params": mappers, "lr": config.mapper_lr, "betas": (mapper_beta1, ADAM_BETA2)})
        groups += frame_roll.parameter_groups() + matte_groups(matte)
        for group in groups:
            group["initial_lr"] = group["lr"]
        self.optimizer = torch.optim.Adam(groups, betas=(config.beta1, ADAM_BETA2))
        self.batch_size = min(config.batch_size, len(self.pivot_frames))
        self.loss_resolution = min(config.loss_resolution or clip.resolution, clip.resolution)
        self.pixel_loss = pixel_loss(config.pixel_loss)
        self.frame_weights = (expressive_frame_weights(model, self.channels[self.train_frames], layout)
                              if config.frame_sampling == "expressive" else None)
        self.pose_distances = (pose_distances(self.channels[self.train_frames], layout)
                               if self.joint and config.pose_curriculum > 0 else None)
        self.total_steps = config.steps
        self.coarse_steps = round(config.coarse_fraction * config.steps) if clip.resolution >= 16 else 0
        self.coarse_resolution = clip.resolution // 2
        self.epoch_lpips_sum = 0.0
        self._converged = False

    @property
    def converged(self) -> bool:
        return self._converged

    def _render(self, ws: torch.Tensor, inputs, index: int) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """(images, last features, coarse?): half resolution during the coarse steps."""
        coarse = index < self.coarse_steps
        images, features = self.generator.synthesis(ws, noise_mode="const", return_features=True,
                                                    max_resolution=self.coarse_resolution if coarse else None,
                                                    warp=self.model.warp(inputs))
        if coarse:
            # Upsampled as the skip path upsamples it: exactly the full render without the last
            # block's contribution, so every loss runs unchanged at full resolution.
            images = upsample_2x(images)
        return images, features, coarse

    def _matte_loss(self, features, images, frames, roll, coarse: bool) -> torch.Tensor | None:
        # The matte head reads the last block's features, which a coarse step does not compute.
        return None if coarse else matte_loss(self.matte, features, images, frames, self.loss_resolution, roll)

    def _image_loss(self, images: torch.Tensor, targets: torch.Tensor,
                    roll: torch.Tensor) -> tuple[torch.Tensor, dict, torch.Tensor | None]:
        images, coverage = self.frame_roll(images, roll)
        size = self.loss_resolution
        small, small_targets = area_downsample(images, size), area_downsample(targets, size)
        pixels = self.pixel_loss(small, small_targets, None if coverage is None else area_downsample(coverage, size))
        loss = self.config.l2_weight * pixels
        # LPIPS is skipped when nothing uses it: no weight and no stopping threshold.
        distance = None
        if self.config.lpips_weight > 0 or self.config.lpips_threshold > 0:
            distance = self.lpips(small, small_targets)
            loss = loss + self.config.lpips_weight * distance.mean()
        return loss, {"pixel": pixels.item()}, distance

    def _pivot_batch(self, index: int) -> tuple[torch.Tensor, dict, torch.Tensor | None, bool]:
        chosen, ends_epoch = epoch_batch(self.seed, self.name, index, len(self.pivot_frames), self.batch_size)
        frames = self.pivot_frames[chosen]
        inputs = self.model.inputs(self.channels[frames], self.layout, self.device)
        images, features, coarse = self._render(self.model.pivots[torch.as_tensor(chosen, device=self.device)],
                                                inputs, index)
        roll = inputs.roll
        loss, losses, distance = self._image_loss(images, self.clip.images(frames, self.device), roll)
        matte = self._matte_loss(features, images, frames, roll, coarse)
        if matte is not None:
            loss, losses["matte"] = loss + matte, matte.item()
        return loss, losses, distance, ends_epoch

    def _frame_batch(self, index: int) -> tuple[torch.Tensor, dict]:
        gen = step_generator(self.seed, self.name, index)
        weights = self.frame_weights
        if self.pose_distances is not None:
            early = curriculum_weights(self.pose_distances, index, self.total_steps, self.config.pose_curriculum)
            if early is not None:
                weights = early if weights is None else weights * early
        if weights is None:
            chosen = torch.randint(len(self.train_frames), (self.config.batch_size,), generator=gen)
        else:
            chosen = torch.multinomial(weights, self.config.batch_size, replacement=True, generator=gen)
        frames = self.train_frames[chosen.numpy()]
        inputs = self.model.inputs(self.channels[frames], self.layout, self.device)
        ws, _ = self.model(inputs)
        images, features, coarse = self._render(ws, inputs, index)
        loss, losses, _ = self._image_loss(images, self.clip.images(frames, self.device), inputs.roll)
        matte = self._matte_loss(features, images, frames, inputs.roll, coarse)
        if matte is not None:
            loss, losses["matte"] = loss + matte, matte.item()
        return loss, losses

    def step(self, index: int) -> dict[str, float]:
        config = self.config
        if index == self.coarse_steps and index > 0:
            log.info("scratch prior: coarse steps done, the last block trains from step %d", index)
        scale = cosine_rampdown(index, self.total_steps, config.lr_rampdown)
        for group in self.optimizer.param_groups:
            group["lr"] = group["initial_lr"] * scale
        record, total, distance, ends_epoch = {}, 0.0, None, False
        # A joint run with no pivot term skips the pivot batch: half of each step's work.
        if not self.joint or config.pivot_weight > 0:
            pivot_loss, pivot_losses, distance, ends_epoch = self._pivot_batch(index)
            record.update({f"pivot_{key}": value for key, value in pivot_losses.items()})
            total = config.pivot_weight * pivot_loss if self.joint else pivot_loss
        if self.joint:
            frame_loss, frame_losses = self._frame_batch(index)
            total = total + frame_loss
            record.update(frame_losses)
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        self.optimizer.step()
        record["total"] = total.item()
        if distance is not None:
            record["lpips"] = distance.mean().item()
            self.epoch_lpips_sum += distance.sum().item()
            if ends_epoch:
                mean = self.epoch_lpips_sum / len(self.pivot_frames)
                self.epoch_lpips_sum = 0.0
                self._converged = config.lpips_threshold > 0 and mean <= config.lpips_threshold
        return record

    def pivots_ws(self) -> torch.Tensor:
        return self.model.pivots.detach().clone()

    def finish(self) -> None:
        self.generator.requires_grad_(False)
        self.model.requires_grad_(False)
        self.frame_roll.requires_grad_(False)

    def state(self):
        tensors, optimizer_meta = optimizer_tensors(self.optimizer, "optimizer")
        return tensors, {"optimizer": optimizer_meta, "epoch_lpips_sum": self.epoch_lpips_sum,
                         "converged": self._converged}

    def load_state(self, tensors, meta):
        load_optimizer(self.optimizer, tensors, meta["optimizer"], "optimizer")
        for group in self.optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self.epoch_lpips_sum = meta["epoch_lpips_sum"]
        self._converged = meta["converged"]
