"""Every hyperparameter of ``pvp fit`` in one dataclass, loadable from and saved to JSON.

Defaults are the paper's and its reference code's (docs/architecture.md, "Stages"):
K=200 pivots; the PTI projector (450 steps, lr 5e-3, noise ramp 0.75, initial
noise 0.05, noise regularisation 1e5); pivotal tuning at lr 3e-4 until the
pivots' mean LPIPS is under 0.03 or 350 passes, with the locality regulariser
(alpha 30, truncation 0.5, L2 and LPIPS weighted 0.1 each); mapper training
with Adam 5e-4, batch 1, 50k steps, loss weights MSE 10, LPIPS 10, latent
regulariser 0.5, identity 0.5, expression 0.1, pose 0.1, RGB consistency 1.0,
expression perturbation N(0, 0.5^2).

The whole config is stored in the checkpoint (so ``--resume`` continues the
same run) and in the subject bundle's provenance.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..contract.atomic_files import write_text_atomically
from ..contract.errors import PVPError
from ..model.pose_warp import MAX_GRID
from .pixel_loss import PIXEL_LOSSES

LPIPS_NETS = ("vgg", "alex")
TUNE_GENERATOR_CHOICES = ("auto", "on", "off")


class ConfigError(PVPError):
    """A fit config value that is missing, unknown, of the wrong type, or out of range."""


@dataclass
class DataConfig:
    # Evaluation protocol: the last frames are held out (the paper trains on the first
    # part of each video and evaluates on the rest).  held_out_frames wins when set.
    held_out_fraction: float = 0.2
    held_out_frames: int | None = None
    # Gaussian smoothing of landmarks over time, in frames (0 = off); the paper
    # smooths to stop landmark jitter from making the crop flicker.
    landmark_smoothing_sigma: float = 2.0


@dataclass
class PivotConfig:
    count: int = 200          # K of K-means; the frame nearest each centroid is a pivot
    kmeans_restarts: int = 4  # scikit-learn n_init


@dataclass
class ProjectorConfig:
    """W-space projection of each pivot with a pretrained generator (PTI's projector settings)."""

    steps: int = 450
    lr: float = 5e-3
    lr_rampdown: float = 0.25
    lr_rampup: float = 0.05
    noise_ramp: float = 0.75
    initial_noise_factor: float = 0.05
    noise_regularization: float = 1e5
    w_avg_samples: int = 10000
    batch_size: int = 4           # pivots projected together (independently: per-pivot noise, Adam is elementwise)
    lpips_resolution: int = 256   # images larger than this are area-downsampled for LPIPS


@dataclass
class PTIConfig:
    """Pivotal tuning of the generator on all pivots (stage 1, step 4)."""

    lr: float = 3e-4
    lpips_threshold: float = 0.03  # stop when a whole pass over the pivots averages below this
    max_epochs: int = 350          # passes over all pivots (PTI's "steps" in multi-image mode)
    batch_size: int = 1
    lpips_weight: float = 1.0
    l2_weight: float = 1.0
    locality_weight: float = 1.0   # lambda_R; 0 turns the regulariser off (PTI's shipped default)
    locality_alpha: float = 30.0
    locality_truncation: float = 0.5
    locality_l2_weight: float = 0.1
    locality_lpips_weight: float = 0.1
    locality_every: int = 1
    lpips_resolution: int | None = None  # None: LPIPS at full resolution, as PTI


SCRATCH_MODES = ("joint", "pivots")
FRAME_SAMPLINGS = ("uniform", "expressive")


@dataclass
class ScratchPriorConfig:
    """The prior used when no pretrained generator is given: a small generator and learnable
    pivot codes, by default optimised together with both mappers on every training frame
    (``mode`` "joint"; "pivots" learns them from the pivot frames alone, see scratch_prior.py)."""

    resolution: int = 64
    width: int = 64              # w_dim and the widest layer (tiny_config); ignored with config_f
    config_f: bool = False       # full config-f channel widths at ``resolution``
    mode: str = "joint"
    steps: int = 3000
    batch_size: int = 4
    generator_lr: float = 2e-3
    code_lr: float = 1e-2
    mapper_lr: float = 2e-3       # joint mode: the pose and expression mappers
    pivot_weight: float = 0.5     # joint mode: weight of the pivot frames' own reconstruction
    loss_resolution: int | None = None  # None: the generator's resolution
    pixel_loss: str = "mse"       # or "laplacian_l1" (see pixel_loss.py); weighted by l2_weight
    frame_sampling: str = "uniform"  # joint mode; "expressive": see scratch_prior.expressive_frame_weights
    pose_curriculum: float = 0.0  # joint mode: fraction of the steps that widen from frontal-ish frames to all
    coarse_fraction: float = 0.0  # fraction of the steps trained at half resolution first (scratch_prior.py)
    pose_warp_grid: int = 0       # joint mode: a pose warp on this grid at a quarter resolution (model/pose_warp.py)
    expression_warp_grid: int = 0  # with pose_warp_grid: per-channel expression flows on this grid (pose_warp.py)
    lr_rampdown: float = 0.3      # every learning rate falls to 0 along a cosine over this last fraction
    beta1: float = 0.0            # Adam's first-moment decay (StyleGAN's 0: no momentum)
    mapper_beta1: float | None = None  # joint mode, the mappers' own; None: beta1 (see scratch_prior.py)
    lpips_weight: float = 1.0
    l2_weight: float = 1.0
    lpips_threshold: float = 0.0  # > 0: stop early once a pass's mean LPIPS is below it


@dataclass
class MapperTrainingConfig:
    """Stage 2: pose and expression mappers, generator frozen (except as noted)."""

    steps: int = 50000
    lr: float = 5e-4
    batch_size: int = 1
    loss_resolution: int | None = 512  # renders and targets are area-downsampled to this for the losses
    mse_weight: float = 10.0
    lpips_weight: float = 10.0
    regularizer_weight: float = 0.5
    identity_weight: float = 0.5     # active only with an identity encoder (ArcFace)
    expression_weight: float = 0.1   # active only with a channel estimator (DECA)
    pose_weight: float = 0.1         # active only with a channel estimator (DECA)
    consistency_weight: float = 1.0  # active only with landmarks (eye/mouth mask)
    expression_perturbation_std: float = 0.5
    train_noise: bool = True         # the reference optimises the constant noise buffers too
    # Deviation for the scratch prior (see docs/architecture.md): a generator that has
    # only seen K pivots has no meaningful space between them, so stage 2 also tunes
    # its synthesis weights on every training frame. "auto" = on for scratch, off for pretrained.
    tune_generator: str = "auto"
    generator_lr: float = 1e-4
    hidden: int = 128
    beta: float = 0.02
    expression_layers: int = 8
    # Deviation (scratch prior): the expression mapper without its hidden layer.  A clip holds
    # each expression only a handful of times, each at some head pose; an MLP on 50 inputs learns
    # to recognise those moments and paint in whatever else was wrong then (measured: 70-95% of a
    # swept expression's change fell outside the region the expression moves).  One direction
    # per input and layer must serve every occurrence, so it learns what they share.
    expression_linear: bool = False


@dataclass
class MaskConfig:
    """Eye and mouth mask for the RGB consistency loss (kernel sizes at the reference 512 px)."""

    dilation: int = 31
    blur: int = 51
    sigma: float = 5.0
    reference_resolution: int = 512  # kernels scale with loss_resolution / this


@dataclass
class LPIPSConfig:
    net: str = "vgg"                # training losses (the paper's LPIPS (VGG))
    backbone: str | None = None     # explicit backbone .pth; else the torch hub cache; else random
    eval_net: str = "alex"          # the evaluation metric (lpips' recommended forward metric)
    eval_backbone: str | None = None


@dataclass
class EvalConfig:
    contact_sheet_frames: int = 8
    batch_size: int = 8


@dataclass
class CheckpointConfig:
    every_steps: int = 500
    every_seconds: float = 600.0


@dataclass
class FitConfig:
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    pivots: PivotConfig = field(default_factory=PivotConfig)
    projector: ProjectorConfig = field(default_factory=ProjectorConfig)
    pti: PTIConfig = field(default_factory=PTIConfig)
    scratch: ScratchPriorConfig = field(default_factory=ScratchPriorConfig)
    mapper: MapperTrainingConfig = field(default_factory=MapperTrainingConfig)
    mask: MaskConfig = field(default_factory=MaskConfig)
    lpips: LPIPSConfig = field(default_factory=LPIPSConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)

    # ------------------------------------------------------------------ (de)serialisation

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: Any, source: str = "config") -> "FitConfig":
        config = _build(cls, data, source)
        config.validate(source)
        return config

    @classmethod
    def load(cls, path: str | os.PathLike) -> "FitConfig":
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{path}: not a readable JSON config ({exc})") from None
        return cls.from_dict(data, str(path))

    def save(self, path: str | os.PathLike) -> None:
        write_text_atomically(path, self.to_json() + "\n")

    def with_overrides(self, assignments: dict[str, Any], source: str = "--set") -> "FitConfig":
        """Apply ``{"section.key": value}`` (or ``{"seed": value}``) and re-validate."""
        data = self.to_dict()
        for dotted, value in assignments.items():
            parts = dotted.split(".")
            node = data
            for part in parts[:-1]:
                if not isinstance(node.get(part), dict):
                    raise ConfigError(f"{source}: unknown config section {part!r} in {dotted!r}")
                node = node[part]
            if parts[-1] not in node or isinstance(node[parts[-1]], dict):
                raise ConfigError(f"{source}: unknown config option {dotted!r}")
            node[parts[-1]] = value
        return FitConfig.from_dict(data, source)

    # ------------------------------------------------------------------ validation

    def validate(self, source: str = "config") -> None:
        def need(ok: bool, key: str, rule: str):
            if not ok:
                raise ConfigError(f"{source}: {key} {rule}, got {_lookup(self, key)!r}")

        d, p, t, s, m, k = self.data, self.pivots, self.pti, self.scratch, self.mapper, self.mask
        need(0 < d.held_out_fraction < 1, "data.held_out_fraction", "must be between 0 and 1")
        need(d.held_out_frames is None or d.held_out_frames >= 1, "data.held_out_frames", "must be at least 1")
        need(d.landmark_smoothing_sigma >= 0, "data.landmark_smoothing_sigma", "must be >= 0")
        need(p.count >= 1, "pivots.count", "must be at least 1")
        need(p.kmeans_restarts >= 1, "pivots.kmeans_restarts", "must be at least 1")
        for key in ("projector.steps", "projector.w_avg_samples", "projector.batch_size", "projector.lpips_resolution",
                    "pti.max_epochs", "pti.batch_size", "pti.locality_every", "scratch.steps", "scratch.batch_size",
                    "mapper.batch_size", "mapper.hidden", "mapper.expression_layers", "eval.batch_size",
                    "checkpoint.every_steps"):
            need(_lookup(self, key) >= 1, key, "must be at least 1")
        need(m.steps >= 0, "mapper.steps", "must be >= 0")
        need(s.mode in SCRATCH_MODES, "scratch.mode", f"must be one of {', '.join(SCRATCH_MODES)}")
        need(s.pixel_loss in PIXEL_LOSSES, "scratch.pixel_loss", f"must be one of {', '.join(PIXEL_LOSSES)}")
        need(s.frame_sampling in FRAME_SAMPLINGS, "scratch.frame_sampling",
             f"must be one of {', '.join(FRAME_SAMPLINGS)}")
        need(0 <= s.lr_rampdown <= 1, "scratch.lr_rampdown", "must be in [0, 1]")
        need(0 <= s.beta1 < 1, "scratch.beta1", "must be in [0, 1)")
        need(0 <= s.pose_curriculum < 1, "scratch.pose_curriculum", "must be in [0, 1)")
        need(0 <= s.coarse_fraction < 1, "scratch.coarse_fraction", "must be in [0, 1)")
        need(s.pose_warp_grid == 0 or 2 <= s.pose_warp_grid <= MAX_GRID, "scratch.pose_warp_grid",
             f"must be 0 (off) or in 2..{MAX_GRID}")
        need(s.pose_warp_grid == 0 or s.mode == "joint", "scratch.pose_warp_grid",
             "needs scratch.mode \"joint\" (the warp learns with the mappers)")
        need(s.expression_warp_grid == 0 or (s.pose_warp_grid and 2 <= s.expression_warp_grid <= MAX_GRID),
             "scratch.expression_warp_grid", f"must be 0 (off) or in 2..{MAX_GRID}, with scratch.pose_warp_grid set")
        need(s.mapper_beta1 is None or 0 <= s.mapper_beta1 < 1, "scratch.mapper_beta1", "must be in [0, 1) or null")
        need(s.loss_resolution is None or s.loss_resolution >= 8, "scratch.loss_resolution", "must be >= 8 or null")
        for key in ("projector.lr", "pti.lr", "scratch.generator_lr", "scratch.code_lr", "scratch.mapper_lr",
                    "mapper.lr",
                    "mapper.generator_lr", "checkpoint.every_seconds", "mask.sigma"):
            need(_lookup(self, key) > 0, key, "must be > 0")
        for key in ("pti.lpips_weight", "pti.l2_weight", "pti.locality_weight", "pti.locality_l2_weight",
                    "pti.locality_lpips_weight", "pti.lpips_threshold", "scratch.lpips_weight", "scratch.l2_weight",
                    "scratch.pivot_weight",
                    "scratch.lpips_threshold", "mapper.mse_weight", "mapper.lpips_weight",
                    "mapper.regularizer_weight", "mapper.identity_weight", "mapper.expression_weight",
                    "mapper.pose_weight", "mapper.consistency_weight", "mapper.expression_perturbation_std",
                    "mapper.beta", "projector.noise_regularization", "projector.initial_noise_factor",
                    "eval.contact_sheet_frames"):
            need(_lookup(self, key) >= 0, key, "must be >= 0")
        for key in ("projector.noise_ramp", "projector.lr_rampdown", "projector.lr_rampup"):
            need(0 < _lookup(self, key) <= 1, key, "must be in (0, 1]")
        need(0 < t.locality_truncation <= 1, "pti.locality_truncation", "must be in (0, 1]")
        need(t.lpips_resolution is None or t.lpips_resolution >= 8, "pti.lpips_resolution", "must be >= 8 or null")
        need(m.loss_resolution is None or m.loss_resolution >= 8, "mapper.loss_resolution", "must be >= 8 or null")
        need(m.tune_generator in TUNE_GENERATOR_CHOICES, "mapper.tune_generator",
             f"must be one of {', '.join(TUNE_GENERATOR_CHOICES)}")
        need(k.dilation >= 1 and k.dilation % 2 == 1, "mask.dilation", "must be an odd number >= 1")
        need(k.blur >= 1 and k.blur % 2 == 1, "mask.blur", "must be an odd number >= 1")
        need(k.reference_resolution >= 8, "mask.reference_resolution", "must be >= 8")
        need(self.lpips.net in LPIPS_NETS, "lpips.net", f"must be one of {', '.join(LPIPS_NETS)}")
        need(self.lpips.eval_net in LPIPS_NETS, "lpips.eval_net", f"must be one of {', '.join(LPIPS_NETS)}")
        res = s.resolution
        need(isinstance(res, int) and 8 <= res <= 2048 and res & (res - 1) == 0, "scratch.resolution",
             "must be a power of two in 8..2048")
        need(s.width >= 4, "scratch.width", "must be at least 4")
        need(self.seed >= 0, "seed", "must be >= 0")


def _lookup(config: FitConfig, dotted: str):
    node: Any = config
    for part in dotted.split("."):
        node = getattr(node, part)
    return node


def _build(cls, data: Any, source: str, prefix: str = ""):
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: {prefix.rstrip('.') or 'config'} must be a JSON object")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"{source}: unknown config option {prefix + unknown[0]!r}")
    values = {}
    for name, value in data.items():
        spec = known[name]
        key = prefix + name
        default = spec.default_factory() if spec.default_factory is not dataclasses.MISSING else spec.default
        if dataclasses.is_dataclass(default):
            values[name] = _build(type(default), value, source, key + ".")
        else:
            values[name] = _coerce(value, spec.type, key, source)
    return cls(**values)


def _coerce(value: Any, type_name: str, key: str, source: str):
    """Check a JSON value against the field's annotation (a string, thanks to __future__)."""
    optional = "None" in type_name
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{source}: {key} must not be null")
    base = type_name.replace("| None", "").strip()
    if base == "bool":
        if isinstance(value, bool):
            return value
    elif base == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif base == "float":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif base == "str":
        if isinstance(value, str):
            return value
    else:  # pragma: no cover - a new field type needs a rule here
        raise TypeError(f"no coercion rule for {type_name}")
    raise ConfigError(f"{source}: {key} must be {'a' if base != 'int' else 'an'} {base}"
                      f"{' or null' if optional else ''}, got {value!r}")
