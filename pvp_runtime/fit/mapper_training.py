"""Stage 2 (paper section 4.2-4.3): train the pose and expression mappers on every training frame.

Per step, a batch of training frames (drawn with this step's generator) is
rendered from its channels through the mappers and the frozen generator, and

    mse_weight * MSE + lpips_weight * LPIPS           (render vs frame, at loss_resolution)
  + regularizer_weight * (mean dw^2 + mean alpha-residual^2)
  + identity_weight * (1 - cos ArcFace)               with an identity encoder
  + expression_weight * expression matching          with a channel estimator
  + pose_weight * pose consistency                    with a channel estimator
  + consistency_weight * masked RGB consistency       with landmarks (eye/mouth mask)

is minimised with Adam.  The last three need ``I'``, the render with the
expression perturbed by N(0, 0.5^2).  As in the reference code the generator's
constant noise maps are optimised too (``train_noise``).  The generator's
weights stay frozen, except with ``tune_generator`` (the scratch prior's
deviation, see ``scratch_prior.py``), which tunes them at ``generator_lr``.
"""

from __future__ import annotations

import numpy as np
import torch

from ..contract.channels import ChannelLayout
from ..model.pvp import MapperInputs, PVPModel
from ..model.stylegan2 import Generator
from .checkpoint import load_optimizer, optimizer_tensors
from .config import MapperTrainingConfig, MaskConfig
from .encoders import FitNetworks
from .frame_roll import FrameRoll
from .pixel_loss import covered_mse
from .losses import (expression_matching_loss, identity_loss, latent_regularizer, masked_consistency_loss,
                     perturb_expression, pose_consistency_loss)
from .lpips import LPIPS, area_downsample
from .masks import batch_masks
from .matte_loss import MatteTerm, matte_groups, matte_loss
from .prepared import PreparedClip
from .projector import noise_layers
from .rng import step_generator
from .stage import TrainingStage


class MapperStage(TrainingStage):
    name = "mapper"

    def __init__(self, generator: Generator, model: PVPModel, frame_roll: FrameRoll, clip: PreparedClip,
                 channels: np.ndarray,
                 train_frames: np.ndarray, layout: ChannelLayout, lpips: LPIPS, networks: FitNetworks,
                 config: MapperTrainingConfig, mask_config: MaskConfig, tune_generator: bool, seed: int, device,
                 matte: MatteTerm | None = None):
        self.generator = generator
        self.model = model
        self.frame_roll = frame_roll
        self.clip = clip
        self.channels = np.asarray(channels, dtype=np.float32)
        self.train_frames = np.asarray(train_frames)
        self.layout = layout
        self.lpips = lpips
        self.networks = networks
        self.config = config
        self.mask_config = mask_config
        self.tune_generator = tune_generator
        self.seed = seed
        self.device = device
        self.matte = matte
        self.total_steps = config.steps
        generator.requires_grad_(False)
        model.requires_grad_(True)
        model.pivots.requires_grad_(False)
        groups = [{"params": [p for p in model.parameters() if p.requires_grad], "lr": config.lr}]
        if config.train_noise:
            noise = [layer.noise_const.requires_grad_(True) for layer in noise_layers(generator)]
            groups.append({"params": noise, "lr": config.lr})
        if tune_generator:
            weights = [p.requires_grad_(True) for p in generator.synthesis.parameters()]
            groups.append({"params": weights, "lr": config.generator_lr})
        groups += frame_roll.parameter_groups() + matte_groups(matte)
        self.optimizer = torch.optim.Adam(groups, betas=(0.9, 0.999))
        self.loss_resolution = min(config.loss_resolution or clip.resolution, clip.resolution)
        self.use_consistency = clip.landmarks is not None and config.consistency_weight > 0
        self.use_estimator = networks.estimator is not None and (config.expression_weight > 0
                                                                 or config.pose_weight > 0)
        self.use_identity = networks.identity is not None and config.identity_weight > 0

    def active_losses(self) -> list[str]:
        active = ["mse", "lpips", "regularizer"] if self.config.lpips_weight > 0 else ["mse", "regularizer"]
        active += ["identity"] if self.use_identity else []
        active += ["expression", "pose"] if self.use_estimator else []
        active += ["consistency"] if self.use_consistency else []
        active += ["matte"] if self.matte is not None else []
        return active

    def render(self, inputs: MapperInputs) -> tuple[torch.Tensor, dict]:
        ws, terms = self.model(inputs)
        images, terms["features"] = self.generator.synthesis(ws, noise_mode="const", return_features=True,
                                                             warp=self.model.warp(inputs))
        return images, terms

    def step(self, index: int) -> dict[str, float]:
        config = self.config
        gen = step_generator(self.seed, self.name, index)
        picks = torch.randint(len(self.train_frames), (config.batch_size,), generator=gen).numpy()
        frames = self.train_frames[picks]
        inputs = self.model.inputs(self.channels[frames], self.layout, self.device)
        images, terms = self.render(inputs)
        targets = self.clip.images(frames, self.device)
        size = self.loss_resolution
        rolled, coverage = self.frame_roll(images, inputs.roll)
        small, small_targets = area_downsample(rolled, size), area_downsample(targets, size)
        small_coverage = None if coverage is None else area_downsample(coverage, size)
        losses = {"mse": covered_mse(small, small_targets, small_coverage),
                  "regularizer": latent_regularizer(terms["delta"], terms["residual"])}
        total = config.mse_weight * losses["mse"] + config.regularizer_weight * losses["regularizer"]
        matte = matte_loss(self.matte, terms["features"], images, frames, size, inputs.roll)
        if matte is not None:
            losses["matte"], total = matte, total + matte
        if config.lpips_weight > 0:  # a weight of 0 also skips the network (the costliest loss on a CPU)
            losses["lpips"] = self.lpips(small, small_targets).mean()
            total = total + config.lpips_weight * losses["lpips"]
        if self.use_identity:
            losses["identity"] = identity_loss(self.networks.identity, images, targets)
            total = total + config.identity_weight * losses["identity"]
        if self.use_estimator or self.use_consistency:
            perturbed = perturb_expression(inputs.jaw_expression, config.expression_perturbation_std, gen,
                                           self.layout.num_expressions)
            images_p, _ = self.render(MapperInputs(inputs.pitch_yaw, perturbed, inputs.roll))
            if self.use_estimator:
                estimate_p = self.networks.estimator(images_p)
                with torch.no_grad():
                    estimate = self.networks.estimator(images)
                losses["expression"] = expression_matching_loss(estimate_p, perturbed, self.layout.num_expressions)
                losses["pose"] = pose_consistency_loss(estimate_p, estimate)
                total = total + config.expression_weight * losses["expression"] + config.pose_weight * losses["pose"]
            if self.use_consistency:
                masks = torch.from_numpy(batch_masks(self.clip.landmarks[frames], self.clip.resolution, size,
                                                     self.mask_config)).to(self.device)
                losses["consistency"] = masked_consistency_loss(area_downsample(images_p, size), small, masks)
                total = total + config.consistency_weight * losses["consistency"]
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        self.optimizer.step()
        return {"total": total.item(), **{k: v.item() for k, v in losses.items()}}

    def finish(self) -> None:
        self.generator.requires_grad_(False)
        for layer in noise_layers(self.generator):
            layer.noise_const.requires_grad_(False)
        self.model.requires_grad_(False)
        self.frame_roll.requires_grad_(False)

    def state(self):
        tensors, optimizer_meta = optimizer_tensors(self.optimizer, "optimizer")
        return tensors, {"optimizer": optimizer_meta}

    def load_state(self, tensors, meta):
        load_optimizer(self.optimizer, tensors, meta["optimizer"], "optimizer")
