"""``FitRun``: the whole fit as a resumable sequence of stages.

    prepare      decode, align and cache the clip               (prepared.py, alignment.py)
    pivots       K-means pivot frames                           (pivots.py)
    projection   W-space projection of the pivots, or e4e       (projector.py)   } pretrained
    pti          pivotal tuning with the locality regulariser   (pti.py)         } prior
    scratch_prior generator + pivot codes from the pivots alone (scratch_prior.py)  scratch prior
    mapper       pose and expression mappers                    (mapper_training.py)
    evaluate     held-out metrics, baselines, contact sheet     (evaluate.py)
    bundle       the subject bundle, written last and atomically (bundle.py)

The output folder holds ``work/`` (the checkpoint and the aligned clip),
``config.json``, and at the end ``report.json``, ``contact_sheet.png``,
``alignment.npz`` and the bundle.  The checkpoint records the request (inputs
and config), so ``--resume`` needs nothing but the folder.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .. import __version__
from ..bundle import Framing, SubjectBundle, default_provenance, save_bundle
from ..contract.atomic_files import replacing, write_text_atomically
from ..contract.channels import ChannelLayout, ChannelStats
from ..contract.errors import PVPError
from ..image_io import write_png
from ..imaging import srgb_to_uint8
from ..model.pvp import MapperConfig as ModelMapperConfig
from ..model.pvp import PVPModel
from ..model.stylegan2 import Generator, GeneratorConfig, tiny_config
from .alignment import roll_removed
from .checkpoint import CheckpointError, load_checkpoint, load_module, module_tensors, save_checkpoint
from .config import FitConfig
from .data import FitInputs, inspect_inputs
from .encoders import FitNetworks
from .control import control_sheet, moved, sweeps
from .frame_roll import FrameRoll
from .head_framing import measure_head_framing
from .evaluate import Evaluation, evaluate_held_out, evaluation_sheet, render_channels
from .lpips import LPIPS, backbone_file, load_lpips
from .mapper_training import MapperStage
from .matte_eval import evaluate_matte
from .matte_loss import MatteTerm, matte_head_for
from .pivots import PivotChoice, select_pivots
from .prepared import PreparedClip, open_prepared, prepare_clip
from .assets import load_prior
from .projector import EncoderInversion, ProjectionStage
from .pti import PTIStage
from .rng import derived_seed
from .scratch_prior import ScratchPriorStage, initial_codes
from .stage import InterruptGuard, LossHistory, TrainingStage, run_stage

log = logging.getLogger(__name__)
WORK = "work"
CHECKPOINT = "checkpoint.safetensors"
REPORT = "report.json"
SHEET = "contact_sheet.png"
CONTROL_SHEET = "control_sheet.png"
ALIGNMENT = "alignment.npz"
CONFIG = "config.json"


PATH_FIELDS = ("frames", "channels", "landmarks", "mattes", "generator", "e4e", "arcface", "deca", "bundle")


@dataclass
class FitRequest:
    """Everything that defines a fit (stored in the checkpoint, so a resume repeats it exactly)."""

    frames: str
    channels: str
    config: FitConfig = field(default_factory=FitConfig)
    channel_source: str = "auto"   # layout of ``channels``: our channel file or a tracker's output
    num_expressions: int = 50
    landmarks: str | None = None
    mattes: str | None = None
    generator: str | None = None   # pretrained generator (.safetensors); with no e4e either: scratch prior
    e4e: str | None = None         # the networks' files, for the CLI to reload them on --resume
    arcface: str | None = None
    deca: str | None = None
    name: str = "subject"
    bundle: str | None = None      # default: OUTDIR/NAME.pvp
    edits: int = 0                 # GANSpace components added to the bundle as edits (pvp edits compute)

    def __post_init__(self):
        # Absolute, so that --resume works from any folder, and on another node with the same mounts.
        for key in PATH_FIELDS:
            if getattr(self, key) is not None:
                setattr(self, key, os.path.abspath(getattr(self, key)))
        lpips = self.config.lpips
        relative = {f"lpips.{key}": os.path.abspath(getattr(lpips, key)) for key in ("backbone", "eval_backbone")
                    if getattr(lpips, key) is not None and not os.path.isabs(getattr(lpips, key))}
        if relative:
            self.config = self.config.with_overrides(relative)

    def input_files(self) -> dict[str, str]:
        """The files and folders this fit reads, by the option that names them."""
        paths = {key: getattr(self, key) for key in PATH_FIELDS if key != "bundle"}
        paths.update({f"lpips.{key}": getattr(self.config.lpips, key) for key in ("backbone", "eval_backbone")})
        return {key: path for key, path in paths.items() if path is not None}

    @property
    def prior(self) -> str:
        return "pretrained" if self.generator or self.e4e else "scratch"

    def to_dict(self) -> dict:
        data = asdict(self)
        data["config"] = self.config.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "FitRequest":
        data = dict(data)
        data["config"] = FitConfig.from_dict(data["config"], "checkpoint config")
        return cls(**data)

    def inspect(self) -> FitInputs:
        min_train = self.config.pivots.count
        return inspect_inputs(self.frames, self.channels, ChannelLayout(self.num_expressions), self.config.data,
                              self.landmarks, self.mattes, min_train_frames=min_train,
                              channel_source=self.channel_source)


@dataclass
class FitResult:
    bundle: Path
    report: dict
    evaluation: Evaluation


def _file_digest(path: str | None) -> str | None:
    if path is None:
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _lpips_trunks(request: FitRequest) -> dict[str, Path | None]:
    """The LPIPS trunk files a fit reads (an unnamed one comes from the torch hub cache, if there)."""
    c = request.config.lpips
    return {"lpips.backbone": backbone_file(c.net, c.backbone),
            "lpips.eval_backbone": backbone_file(c.eval_net, c.eval_backbone)}


def input_fingerprint(request: FitRequest, inputs: FitInputs) -> dict:
    """What must not change under a resumed run (cheap for video: count and size, not content)."""
    def source(src):
        if src is None:
            return None
        names = [f.name for f in src.files] if src.files is not None else [src.path.stat().st_size]
        return {"count": src.count, "size": [src.width, src.height],
                "names": hashlib.sha256(json.dumps(names).encode()).hexdigest()}
    files = {key: getattr(request, key) for key in ("channels", "landmarks", "generator", "e4e", "arcface", "deca")}
    return {**{key: _file_digest(path) for key, path in {**files, **_lpips_trunks(request)}.items()},
            "frames": source(inputs.frames),
            "mattes": source(inputs.mattes)}


def _input_path(request: FitRequest, key: str) -> str:
    path = {**request.input_files(), **_lpips_trunks(request)}.get(key)
    return str(path) if path is not None else "no file now"


def recorded_request(meta: dict, checkpoint: Path) -> FitRequest:
    """The request a checkpoint records, with every file it reads still in place."""
    request = FitRequest.from_dict(meta["request"])
    for key, path in request.input_files().items():
        if not os.path.exists(path):
            raise CheckpointError(f"{checkpoint}: {path} ({key} of this fit) is gone; put it back there to resume")
    return request


class FitRun:
    def __init__(self, request: FitRequest, inputs: FitInputs, out_dir: Path, networks: FitNetworks | None = None,
                 device="cpu", on_step: Callable[[str, int], None] | None = None):
        self.request = request
        self.config = request.config
        self.inputs = inputs
        self.layout = inputs.layout
        self.out_dir = Path(out_dir)
        self.work = self.out_dir / WORK
        self.networks = networks or FitNetworks()
        self.device = torch.device(device)
        self.on_step = on_step
        self.meta: dict = {"completed": [], "current": None, "history": {}, "timings": {}, "results": {}}
        self.tensors: dict[str, torch.Tensor] = {}
        self.generator: Generator | None = None
        self.pivots_ws: torch.Tensor | None = None
        self.model: PVPModel | None = None
        self.frame_roll: FrameRoll | None = None
        self.matte = None  # the matte head, with --mattes (matte_loss.py)
        self.pivot_choice: dict | None = None
        self._lpips: dict[str, LPIPS] = {}

    # ------------------------------------------------------------------ creation

    @classmethod
    def start(cls, request: FitRequest, inputs: FitInputs, out_dir: Path, **kwargs) -> "FitRun":
        """A new run in an empty (or new) folder."""
        out_dir = Path(out_dir)
        if out_dir.exists() and any(out_dir.iterdir()):
            raise PVPError(f"{out_dir}: output folder is not empty (use --resume to continue a fit there, "
                           f"or --overwrite to start again)")
        if not out_dir.parent.exists():
            raise PVPError(f"{out_dir.parent}: parent folder does not exist")
        run = cls(request, inputs, out_dir, **kwargs)
        run.load_lpips()  # a bad --lpips-backbone is refused before the folder exists
        run.work.mkdir(parents=True, exist_ok=True)
        request.config.save(out_dir / CONFIG)
        run.meta["fingerprint"] = input_fingerprint(request, inputs)
        return run

    @staticmethod
    def read_request(out_dir: Path) -> FitRequest:
        path = Path(out_dir) / WORK / CHECKPOINT
        _, meta = load_checkpoint(path)
        return recorded_request(meta, path)

    @classmethod
    def resume(cls, out_dir: Path, inputs: FitInputs | None = None, **kwargs) -> "FitRun":
        out_dir = Path(out_dir)
        path = out_dir / WORK / CHECKPOINT
        tensors, meta = load_checkpoint(path)
        request = recorded_request(meta, path)
        inputs = inputs or request.inspect()
        fingerprint = input_fingerprint(request, inputs)
        for key, value in meta["fingerprint"].items():
            if fingerprint.get(key) != value:
                raise CheckpointError(f"{path}: the {key} input changed since this fit started "
                                      f"({_input_path(request, key)}); start a new fit")
        run = cls(request, inputs, out_dir, **kwargs)
        run.load_lpips()
        run.meta = meta
        run.tensors = tensors
        log.info("resuming %s: finished %s; %s", out_dir, ", ".join(meta["completed"]) or "nothing",
                 f"continuing {meta['current']['stage']} at step {meta['current']['step']}" if meta["current"] else
                 "starting the next stage")
        return run

    # ------------------------------------------------------------------ helpers

    @property
    def resolution(self) -> int:
        return self._generator_config().resolution

    def _generator_config(self) -> GeneratorConfig:
        if self.generator is not None:
            return self.generator.config
        if self.request.prior == "pretrained":
            self.generator = load_prior(self.request.generator, self.request.e4e, self.device)
            return self.generator.config
        s = self.config.scratch
        return GeneratorConfig(resolution=s.resolution) if s.config_f else tiny_config(s.resolution, s.width)

    def lpips(self, purpose: str) -> LPIPS:
        if purpose not in self._lpips:
            c = self.config.lpips
            net, backbone = (c.net, c.backbone) if purpose == "train" else (c.eval_net, c.eval_backbone)
            self._lpips[purpose] = load_lpips(net, backbone, self.device)
        return self._lpips[purpose]

    def load_lpips(self) -> None:
        self.lpips("train")
        self.lpips("eval")

    def _build_generator(self) -> Generator:
        if self.generator is None:
            if self.request.prior == "pretrained":
                self.generator = load_prior(self.request.generator, self.request.e4e, self.device)
            else:
                torch.manual_seed(derived_seed(self.config.seed, "scratch-generator"))
                self.generator = Generator(self._generator_config()).to(self.device)
        if any(k.startswith("generator.") for k in self.tensors):
            load_module(self.generator, self.tensors, "generator", str(self.work / CHECKPOINT))
        return self.generator

    def _build_model(self) -> PVPModel:
        """The mappers, built once per run (the joint scratch prior trains them before stage 2)."""
        if self.model is not None:
            return self.model
        m = self.config.mapper
        g = self.generator.config
        warp_grid = self.config.scratch.pose_warp_grid if self.request.prior == "scratch" else 0
        expression_warp_grid = self.config.scratch.expression_warp_grid if warp_grid else 0
        torch.manual_seed(derived_seed(self.config.seed, "mapper-init"))
        model = PVPModel(ModelMapperConfig(num_pivots=len(self.pivots_ws), num_expressions=self.layout.num_expressions,
                                           hidden=m.hidden, beta=m.beta, expression_layers=m.expression_layers,
                                           expression_linear=m.expression_linear, pose_warp_grid=warp_grid,
                                           pose_warp_resolution=max(4, g.resolution // 4) if warp_grid else 0,
                                           expression_warp_grid=expression_warp_grid,
                                           gaze=self.capture_has_gaze(), standardized=True),
                         g.num_ws, g.w_dim).to(self.device)
        with torch.no_grad():
            model.pivots.copy_(self.pivots_ws)
        model.standardize_like(self.inputs.channels[self.inputs.split.train], self.layout)
        log.info("mappers: %s", "gaze learnt from the capture's eye channels" if model.config.gaze else
                 "the capture's eyes did not move: the eye channels will have no effect on this subject")
        if any(k.startswith("model.") for k in self.tensors):
            load_module(model, self.tensors, "model", str(self.work / CHECKPOINT))
        self.model = model
        return model

    def _build_frame_roll(self, clip: PreparedClip) -> FrameRoll:
        """Pass-through crops show the head's roll; the renders are rolled like them (frame_roll.py)."""
        if self.frame_roll is None:
            self.frame_roll = FrameRoll(shows_roll=clip.landmarks is None).to(self.device)
            if any(k.startswith("frame_roll.") for k in self.tensors):
                load_module(self.frame_roll, self.tensors, "frame_roll", str(self.work / CHECKPOINT))
        return self.frame_roll

    def _matte_term(self, clip: PreparedClip, frame_roll: FrameRoll | None = None) -> MatteTerm | None:
        """With mattes, the alpha this fit learns: its head (built once per run) and its loss."""
        if clip.mattes is None:
            return None
        if self.matte is None:
            with torch.random.fork_rng(devices=[]):  # its own seed: the RGB fit draws what it drew before
                torch.manual_seed(derived_seed(self.config.seed, "matte-init"))
                self.matte = matte_head_for(self.generator, clip, self.inputs.split.train).to(self.device)
            if any(k.startswith("matte.") for k in self.tensors):
                load_module(self.matte, self.tensors, "matte", str(self.work / CHECKPOINT))
        return MatteTerm(self.matte, clip, frame_roll)

    def capture_has_gaze(self) -> bool:
        """Do the eyes move in the training clip?  Only then can the mappers learn gaze."""
        return moved(self.inputs.channels[self.inputs.split.train], self.layout.slice("eyes"))

    def _save(self, current: tuple[str, int, TrainingStage] | None = None) -> None:
        tensors = {}
        if self.generator is not None:
            tensors.update(module_tensors(self.generator, "generator"))
        if self.pivots_ws is not None:
            tensors["pivots"] = self.pivots_ws
        if self.model is not None:
            tensors.update(module_tensors(self.model, "model"))
        if self.frame_roll is not None:
            tensors.update(module_tensors(self.frame_roll, "frame_roll"))
        if self.matte is not None:
            tensors.update(module_tensors(self.matte, "matte"))
        self.meta["current"] = None
        if current is not None:
            name, step, stage = current
            stage_tensors, stage_meta = stage.state()
            tensors.update({f"stage.{k}": v for k, v in stage_tensors.items()})
            self.meta["current"] = {"stage": name, "step": step, "meta": stage_meta}
        self.meta["request"] = self.request.to_dict()
        self.meta["pivot_choice"] = self.pivot_choice
        # _complete records a finished stage before saving, so its name is the last one.
        where = (f"in stage {current[0]} at step {current[1]}" if current is not None
                 else f"at the end of stage {self.meta['completed'][-1]}")
        save_checkpoint(self.work / CHECKPOINT, tensors, self.meta, where)
        if current is not None:
            self.tensors = {}  # what is in memory is now newer than what was loaded

    def _done(self, stage: str) -> bool:
        return stage in self.meta["completed"]

    def _complete(self, stage: str, started: float, **results) -> None:
        self.meta["completed"].append(stage)
        self.meta["timings"][stage] = self.meta["timings"].get(stage, 0.0) + time.monotonic() - started
        if results:
            self.meta["results"][stage] = results
        self._save()

    def _train(self, stage: TrainingStage, guard: InterruptGuard) -> tuple[int, float]:
        name = stage.name
        start = 0
        current = self.meta.get("current")
        if current and current["stage"] == name:
            stage.load_state({k[len("stage."):]: v for k, v in self.tensors.items() if k.startswith("stage.")},
                             current["meta"])
            start = current["step"]
        saved = self.meta["history"].get(name, {})
        history = LossHistory(stage.total_steps, records=saved.get("records"), pending=saved.get("pending"))

        def save(step: int) -> None:
            self.meta["history"][name] = history.to_dict()
            self._save((name, step, stage))

        began = time.monotonic()
        steps = run_stage(stage, start, history, save, guard, self.config.checkpoint.every_steps,
                          self.config.checkpoint.every_seconds, self.on_step)
        self.meta["history"][name] = history.to_dict()
        if hasattr(stage, "finish"):
            stage.finish()
        self.meta["timings"][name + "_steps"] = steps
        return steps, began

    # ------------------------------------------------------------------ the stages

    def run(self) -> FitResult:
        with InterruptGuard() as guard:
            clip = self._prepare()
            self._select_pivots()
            pivot_frames = np.asarray(self.pivot_choice["frames"])
            self._build_generator()
            if self.request.prior == "pretrained":
                self._pretrained_prior(clip, pivot_frames, guard)
            else:
                self._scratch_prior(clip, pivot_frames, guard)
            self._train_mappers(clip, guard)
            return self._finish(clip, pivot_frames)

    def _prepare(self) -> PreparedClip:
        count, resolution = self.inputs.count, self.resolution
        landmarks, mattes = self.inputs.landmarks is not None, self.inputs.mattes is not None
        if self._done("prepare"):
            return open_prepared(self.work, count, resolution, landmarks, mattes)
        began = time.monotonic()
        clip = prepare_clip(self.inputs, resolution, self.config.data.landmark_smoothing_sigma, self.work)
        self._complete("prepare", began)
        return clip

    def _select_pivots(self) -> None:
        if self._done("pivots"):
            self.pivot_choice = self.meta["pivot_choice"]
            return
        began = time.monotonic()
        choice: PivotChoice = select_pivots(self.inputs.channels, self.inputs.split.train, self.layout,
                                            self.config.pivots.count, self.config.seed,
                                            self.config.pivots.kmeans_restarts)
        self.pivot_choice = choice.to_dict()
        log.info("selected %d pivots from %d training frames on %s", len(choice.frames),
                 len(self.inputs.split.train), ", ".join(choice.features[:6]) +
                 (f" (+{len(choice.features) - 6} more)" if len(choice.features) > 6 else ""))
        self._complete("pivots", began)

    def _load_pivots(self) -> None:
        if self.pivots_ws is None and "pivots" in self.tensors:
            self.pivots_ws = self.tensors["pivots"].to(self.device)

    def _pretrained_prior(self, clip: PreparedClip, pivot_frames: np.ndarray, guard: InterruptGuard) -> None:
        self._load_pivots()
        if not self._done("projection"):
            if self.networks.latent_encoder is not None:
                began = time.monotonic()
                self.pivots_ws = EncoderInversion(self.networks.latent_encoder, self.generator)(
                    clip, pivot_frames, self.device)
                self._complete("projection", began, method=f"encoder ({self.networks.latent_encoder.name})")
            else:
                stage = ProjectionStage(self.generator, clip, pivot_frames, self.lpips("train"),
                                        self.config.projector, self.config.seed, self.device)
                steps, began = self._train(stage, guard)
                self.pivots_ws = stage.pivots_ws()
                self._complete("projection", began, method="W-space projection", steps=steps)
        if not self._done("pti"):
            original = load_prior(self.request.generator, self.request.e4e, self.device)
            stage = PTIStage(self.generator, original, self.pivots_ws, clip, pivot_frames, self.lpips("train"),
                             self.config.pti, self.config.seed, self.device, matte=self._matte_term(clip))
            steps, began = self._train(stage, guard)
            self._complete("pti", began, steps=steps, epochs=len(stage.epoch_lpips),
                           converged=stage.converged,
                           final_epoch_lpips=stage.epoch_lpips[-1] if stage.epoch_lpips else None)

    def _scratch_prior(self, clip: PreparedClip, pivot_frames: np.ndarray, guard: InterruptGuard) -> None:
        self._load_pivots()
        if self._done("scratch_prior"):
            return
        if self.pivots_ws is None:
            self.pivots_ws = initial_codes(self.generator, len(pivot_frames), self.config.seed, self.device)
        model = self._build_model()
        stage = ScratchPriorStage(self.generator, model, self._build_frame_roll(clip), clip, self.inputs.channels,
                                  self.inputs.split.train,
                                  pivot_frames, self.layout, self.lpips("train"), self.config.scratch,
                                  self.config.seed, self.device,
                                  matte=self._matte_term(clip, self._build_frame_roll(clip)))
        log.info("scratch prior (%s): %s", self.config.scratch.mode,
                 "generator, pivot codes and mappers together on every training frame" if stage.joint else
                 "generator and pivot codes on the pivot frames")
        steps, began = self._train(stage, guard)
        self.pivots_ws = stage.pivots_ws()
        self._complete("scratch_prior", began, steps=steps, converged=stage.converged, mode=self.config.scratch.mode)

    def tune_generator(self) -> bool:
        choice = self.config.mapper.tune_generator
        return choice == "on" or (choice == "auto" and self.request.prior == "scratch")

    def _train_mappers(self, clip: PreparedClip, guard: InterruptGuard) -> None:
        self._load_pivots()
        self.model = self._build_model()
        if self._done("mapper"):
            return
        stage = MapperStage(self.generator, self.model, self._build_frame_roll(clip), clip, self.inputs.channels,
                            self.inputs.split.train,
                            self.layout, self.lpips("train"), self.networks, self.config.mapper, self.config.mask,
                            self.tune_generator(), self.config.seed, self.device,
                            matte=self._matte_term(clip, self._build_frame_roll(clip)))
        if stage.total_steps:
            log.info("mapper losses: %s; generator %s", ", ".join(stage.active_losses()),
                     "tuned too (scratch-prior deviation)" if stage.tune_generator else "frozen")
        else:
            log.info("mapper stage: 0 steps (the joint scratch prior trained the mappers)")
        steps, began = self._train(stage, guard)
        self._complete("mapper", began, steps=steps, losses=stage.active_losses(),
                       tune_generator=stage.tune_generator)

    # ------------------------------------------------------------------ outputs

    def bundle_path(self) -> Path:
        return Path(self.request.bundle) if self.request.bundle else self.out_dir / f"{self.request.name}.pvp"

    def _finish(self, clip: PreparedClip, pivot_frames: np.ndarray) -> FitResult:
        began = time.monotonic()
        self.generator.eval().requires_grad_(False)
        self.model.eval().requires_grad_(False)
        evaluation = evaluate_held_out(self.generator, self.model, clip, self.inputs.channels, self.layout,
                                       self.inputs.split, pivot_frames, self.lpips("eval"), self.device,
                                       self.config.eval.batch_size, mask_config=self.config.mask,
                                       frame_roll=self._build_frame_roll(clip))
        matte = self._evaluate_matte(clip)
        self.meta["timings"]["evaluate"] = time.monotonic() - began
        report = self.report(evaluation, clip)
        report["matte"] = matte
        if self.config.eval.contact_sheet_frames > 0:
            with replacing(self.out_dir / SHEET) as sheet_tmp:
                write_png(sheet_tmp, evaluation_sheet(evaluation, self.config.eval.contact_sheet_frames))
        report["control"] = self._control_sheet()
        write_text_atomically(self.out_dir / REPORT, json.dumps(report, indent=2) + "\n")
        with replacing(self.out_dir / ALIGNMENT) as alignment_tmp:
            np.savez(alignment_tmp, frame_to_crop=np.asarray(clip.transforms),
                     **({"crop_landmarks": np.asarray(clip.landmarks)} if clip.landmarks is not None else {}))
        bundle = SubjectBundle(
            name=self.request.name, generator=self.generator, model=self.model, framing=self._framing(clip),
            channel_stats=ChannelStats.of(self.inputs.channels[self.inputs.split.train]),
            provenance=default_provenance("pvp fit", source_video_sha256=self.inputs.frames.content_sha256(), fit={
                "prior": self.request.prior, "config": self.config.to_dict(), "inputs": self.inputs.describe(),
                "pivots": self.pivot_choice, "evaluation": evaluation.summary(),
                "matte": matte.get("summary", matte["alpha"]),
                "lpips": {"train": self.lpips("train").provenance, "eval": self.lpips("eval").provenance},
                "networks": self.networks.describe()}), matte=self.matte)
        if self.request.edits:
            from ..editing import compute_ganspace
            bundle.edits = compute_ganspace(bundle, self.request.edits)
        path = save_bundle(bundle, self.bundle_path())
        if "finished" not in self.meta["completed"]:
            self.meta["completed"].append("finished")
        self._save()
        return FitResult(path, report, evaluation)

    def _framing(self, clip: PreparedClip) -> Framing:
        """The roll centre (learnt or default) and where the head sits in the crop (placement)."""
        head_centre, eye_distance = measure_head_framing(
            clip.landmarks, clip.resolution, self.inputs.channels[:, self.layout.index("head_yaw")])
        return dataclasses.replace(self.frame_roll.framing(), head_centre=head_centre, eye_distance=eye_distance)

    def _evaluate_matte(self, clip: PreparedClip) -> dict:
        """Held-out matte IoU and error of the learnt alpha and of a constant matte (matte_eval.py)."""
        if self._matte_term(clip) is None:
            return {"alpha": "none: fitted without --mattes, so alpha is 1 everywhere"}
        self.matte.eval().requires_grad_(False)
        result = evaluate_matte(self.generator, self.model, self.matte, clip, self.inputs.channels, self.layout,
                                self.inputs.split, self.device, self.config.eval.batch_size,
                                self._build_frame_roll(clip))
        return {"alpha": "learnt from the mattes (matte head on the generator's last features)", **result}

    def _control_sheet(self) -> dict:
        """Sweep every channel that moved in the training clip; write the sheet; describe it."""
        train = self.inputs.channels[self.inputs.split.train]
        all_sweeps = sweeps(train, self.layout)
        if not all_sweeps:
            return {"file": None, "note": "no channel moved in the training clip: nothing to sweep"}
        renders = [srgb_to_uint8(render_channels(self.generator, self.model, sweep.frames, self.layout, self.device,
                                                   self.frame_roll))
                   .permute(0, 2, 3, 1).cpu().numpy() for sweep in all_sweeps]
        with replacing(self.out_dir / CONTROL_SHEET) as sheet_tmp:
            write_png(sheet_tmp, control_sheet(all_sweeps, renders))
        return {"file": CONTROL_SHEET,
                "note": "one row per channel that moved in the training clip: that channel from its 2nd to "
                        "98th percentile, every other channel at its training median",
                "sweeps": {sweep.channel: [float(v) for v in sweep.values] for sweep in all_sweeps}}

    def report(self, evaluation: Evaluation, clip: PreparedClip) -> dict:
        rolls = np.degrees([roll_removed(t) for t in clip.transforms])
        return {
            "name": self.request.name,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "tool": f"pvp-avatar {__version__}",
            "device": str(self.device),
            "prior": self.request.prior,
            "bundle": str(self.bundle_path()),
            "inputs": self.inputs.describe(),
            "request": {k: v for k, v in self.request.to_dict().items() if k != "config"},
            "config": self.config.to_dict(),
            "alignment": {"method": "ffhq-landmarks" if clip.landmarks is not None else "pass-through",
                          "file": ALIGNMENT, "roll_removed_deg": {"mean": float(np.mean(rolls)),
                                                                  "max_abs": float(np.max(np.abs(rolls)))}},
            "pivots": self.pivot_choice,
            "framing": {**self._framing(clip).to_dict(),
                        "roll": "learnt: the frames show the head's roll (pass-through crops)"
                        if self.frame_roll.shows_roll else "taken out by the alignment"},
            "stages": {name: {"seconds": self.meta["timings"].get(name),
                              "steps": self.meta["timings"].get(name + "_steps"),
                              **self.meta["results"].get(name, {}),
                              "loss_history": self.meta["history"].get(name, {}).get("records", [])}
                       for name in ("prepare", "pivots", "projection", "pti", "scratch_prior", "mapper", "evaluate")
                       if name in self.meta["timings"]},
            "networks": self.networks.describe(),
            "lpips": {"train": self.lpips("train").provenance, "eval": self.lpips("eval").provenance},
            "evaluation": evaluation.to_dict(),
        }


def summary_table(evaluation: Evaluation) -> str:
    lpips = evaluation.lpips
    note = "" if lpips.get("backbone_pretrained") else "  [RANDOM backbone: not comparable to published LPIPS]"
    region = evaluation.eyes_mouth == "measured"
    lines = [f"held-out evaluation: {len(evaluation.frames)} frames, "
             f"{'background removed by matte' if evaluation.masked else 'full frame'}; "
             f"LPIPS {lpips.get('net')}{note}",
             f"{'method':<24}{'PSNR':>8}{'SSIM':>8}{'LPIPS':>8}" + (f"{'PSNR e+m':>10}{'SSIM e+m':>10}"
                                                                    if region else "")]
    for method, values in evaluation.summary().items():
        psnr = values["psnr"]
        line = (f"{method:<24}{psnr if math.isfinite(psnr) else float('inf'):>8.2f}"
                f"{values['ssim']:>8.4f}{values['lpips']:>8.4f}")
        if region:
            line += f"{values['psnr_eyes_mouth']:>10.2f}{values['ssim_eyes_mouth']:>10.4f}"
        lines.append(line)
    if not region:
        lines.append(f"eyes and mouth: {evaluation.eyes_mouth}")
    return "\n".join(lines)
