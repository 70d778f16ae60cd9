"""Held-out evaluation (paper section 5): PSNR, SSIM, LPIPS of the fit and of three baselines.

Every held-out frame is rendered from its channels (mappers + tuned
generator, in the aligned crop, so without roll) and compared with its
aligned ground truth; with mattes, both lose their background first, as in
the paper's protocol.  In the same run, three baselines put the numbers in
context:

``nearest_training_frame``  the ground-truth training frame nearest in
                            standardised pose and expression: what retrieval
                            from the training clip alone achieves;
``nearest_pose_frame``      the training frame nearest in head pose alone
                            (yaw, pitch, roll): right head, unrelated face.
                            Beating it inside the eyes and mouth is what
                            "expression transfers" means;
``nearest_pivot``           the tuned generator at the nearest pivot's latent:
                            the personalised manifold without the mappers.

With landmarks, PSNR and SSIM are also measured inside the eyes-and-mouth mask
(``masks.py``); full-frame scores reward a blurry average head and hide a
channel the fit ignores.

The contact sheet shows, per row, ground truth | render | error (absolute
difference, x4, inferno colour map) for evenly spaced held-out frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from ..contract.channels import ChannelLayout
from ..image_io import contact_sheet
from ..imaging import generator_to_srgb, srgb_to_uint8
from ..model.pvp import MapperInputs, PVPModel
from ..model.stylegan2 import Generator
from .config import MaskConfig
from .data import Split
from .frame_roll import FrameRoll
from .lpips import LPIPS
from .metrics import frame_metrics
from .masks import batch_masks
from .pivots import head_pose_features, nearest_frames
from .prepared import PreparedClip

METHODS = ("pvp", "nearest_training_frame", "nearest_pose_frame", "nearest_pivot")
NO_LANDMARKS = "no landmarks in this capture: eyes-and-mouth metrics need --landmarks"
ERROR_GAIN = 4.0


@dataclass
class Evaluation:
    frames: np.ndarray                # held-out frame indices
    per_frame: dict[str, dict]        # method -> metric -> [N] values
    masked: bool
    lpips: dict
    renders: np.ndarray               # [N, R, R, 3] uint8, the fit's renders (for the contact sheet)
    truth: np.ndarray                 # [N, R, R, 3] uint8
    baseline_sources: dict[str, list[int]]
    eyes_mouth: str = "measured"      # or why it was not (no landmarks)

    def summary(self) -> dict:
        return {method: {metric: float(np.mean(values)) for metric, values in metrics.items()}
                for method, metrics in self.per_frame.items()}

    def to_dict(self) -> dict:
        return {
            "held_out_frames": [int(f) for f in self.frames],
            "masked_by_matte": self.masked,
            "eyes_mouth": self.eyes_mouth,
            "lpips": self.lpips,
            "summary": self.summary(),
            "per_frame": {m: {k: [float(x) for x in v] for k, v in metrics.items()}
                          for m, metrics in self.per_frame.items()},
            "baseline_sources": self.baseline_sources,
        }


@torch.no_grad()
def render_channels(generator: Generator, model: PVPModel, channels: np.ndarray, layout: ChannelLayout,
                    device, frame_roll: FrameRoll | None = None) -> torch.Tensor:
    """sRGB renders in [0, 1]; with ``frame_roll`` (pass-through crops) rolled as the frames are."""
    inputs = model.inputs(channels, layout, device)
    ws, _ = model(inputs)
    return as_shown(generator.synthesis(ws, noise_mode="const", warp=model.warp(inputs)), inputs.roll, frame_roll)


def as_shown(images: torch.Tensor, roll: torch.Tensor, frame_roll: FrameRoll | None) -> torch.Tensor:
    """Generator output -> sRGB in [0, 1], rolled like the frames when they show roll."""
    if frame_roll is not None and frame_roll.shows_roll:
        rolled, coverage = frame_roll(images, roll)
        # Outside the rolled crop the runtime shows transparency, i.e. whatever is behind the
        # avatar; here that is the render's own background, unrolled (a pass-through capture's
        # backdrop continues into the corners a roll uncovers).
        images = rolled + (1 - coverage) * images
    return generator_to_srgb(images)


@torch.no_grad()
def evaluate_held_out(generator: Generator, model: PVPModel, clip: PreparedClip, channels: np.ndarray,
                      layout: ChannelLayout, split: Split, pivot_frames: np.ndarray, lpips: LPIPS | None,
                      device, batch_size: int = 8, region_landmarks: np.ndarray | None = None,
                      mask_config: MaskConfig = MaskConfig(), frame_roll: FrameRoll | None = None) -> Evaluation:
    """``region_landmarks`` (crop pixels at the clip's resolution, one set per frame) default to the
    clip's own; a benchmark with ground truth may pass them for a capture fitted without."""
    generator.eval()
    model.eval()
    held = split.held_out
    landmarks = clip.landmarks if region_landmarks is None else region_landmarks
    nearest_train = nearest_frames(channels, layout, split.train, held, split.train)
    nearest_pose = nearest_frames(channels, layout, split.train, held, split.train, features=head_pose_features)
    nearest_pivot = nearest_frames(channels, layout, pivot_frames, held, split.train)
    pivot_slot = {int(f): i for i, f in enumerate(pivot_frames)}
    per_frame = {m: {} for m in METHODS}
    renders, truths = [], []
    for start in range(0, len(held), batch_size):
        chunk = slice(start, start + batch_size)
        frames = held[chunk]
        truth = (clip.images(frames, device) + 1) / 2
        matte = clip.matte_tensor(frames, device)
        region = None if landmarks is None else torch.from_numpy(
            batch_masks(landmarks[frames], clip.resolution, clip.resolution, mask_config)).to(device)
        fit = render_channels(generator, model, channels[frames], layout, device, frame_roll)
        retrieval = (clip.images(nearest_train[chunk], device) + 1) / 2
        pose_retrieval = (clip.images(nearest_pose[chunk], device) + 1) / 2
        slots = torch.as_tensor([pivot_slot[int(f)] for f in nearest_pivot[chunk]], device=device)
        inputs = model.inputs(channels[frames], layout, device)  # placed like the frame it stands in for
        pivot = as_shown(generator.synthesis(model.pivots[slots], noise_mode="const", warp=model.warp(inputs)),
                         inputs.roll, frame_roll)
        for method, image in zip(METHODS, (fit, retrieval, pose_retrieval, pivot)):
            for metric, values in frame_metrics(image, truth, lpips, matte, region).items():
                per_frame[method].setdefault(metric, []).append(values.cpu().numpy())
        renders.append(srgb_to_uint8(fit).permute(0, 2, 3, 1).cpu().numpy())
        truths.append(srgb_to_uint8(truth).permute(0, 2, 3, 1).cpu().numpy())
    per_frame = {m: {k: np.concatenate(v) for k, v in metrics.items()} for m, metrics in per_frame.items()}
    return Evaluation(frames=held, per_frame=per_frame, masked=clip.mattes is not None,
                      lpips=lpips.provenance if lpips is not None else {},
                      renders=np.concatenate(renders), truth=np.concatenate(truths),
                      baseline_sources={"nearest_training_frame": [int(f) for f in nearest_train],
                                        "nearest_pose_frame": [int(f) for f in nearest_pose],
                                        "nearest_pivot": [int(f) for f in nearest_pivot]},
                      eyes_mouth="measured" if landmarks is not None else NO_LANDMARKS)


def error_image(render: np.ndarray, truth: np.ndarray) -> np.ndarray:
    error = np.abs(render.astype(np.float32) - truth.astype(np.float32)).mean(axis=2)
    scaled = np.clip(error * ERROR_GAIN, 0, 255).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(scaled, cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB)


def evaluation_sheet(evaluation: Evaluation, rows: int) -> np.ndarray:
    """``[rows * R, 3 * R, 4]`` RGBA: ground truth | render | error per sampled held-out frame."""
    count = len(evaluation.frames)
    picks = np.unique(np.linspace(0, count - 1, min(rows, count)).round().astype(int))
    tiles = []
    opaque = lambda rgb: np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], axis=2)
    for i in picks:
        truth, render = evaluation.truth[i], evaluation.renders[i]
        tiles += [opaque(truth), opaque(render), opaque(error_image(render, truth))]
    return contact_sheet(tiles, columns=3)
