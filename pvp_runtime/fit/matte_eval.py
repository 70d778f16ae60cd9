"""Held-out evaluation of the learnt alpha: matte IoU and mean absolute error, and a constant baseline.

Every held-out frame's alpha is rendered from its channels as the runtime
renders it (rolled like the frame for pass-through crops) and compared with
its aligned matte:

``iou``  intersection over union of alpha > 0.5 and matte > 0.5 (1 when both are empty);
``mae``  mean absolute difference of alpha and matte, both in 0..1.

The baseline is one constant matte for every frame, the mean of the training
frames' mattes: what a fit would score without learning where the head is in
each frame.  The learnt alpha should beat it on both.
"""

from __future__ import annotations

import numpy as np
import torch

from ..contract.channels import ChannelLayout
from ..model.matte import MatteHead
from ..model.pvp import PVPModel
from ..model.stylegan2 import Generator
from .data import Split
from .frame_roll import FrameRoll
from .matte_loss import mean_training_matte, rolled_alpha
from .prepared import PreparedClip

THRESHOLD = 0.5


def matte_scores(alpha: torch.Tensor, truth: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-frame IoU (at :data:`THRESHOLD`) and mean absolute error of ``[B, 1, H, W]`` mattes in 0..1."""
    predicted, actual = alpha > THRESHOLD, truth > THRESHOLD
    intersection = (predicted & actual).flatten(1).sum(dim=1).double()
    union = (predicted | actual).flatten(1).sum(dim=1).double()
    iou = torch.where(union > 0, intersection / union.clamp(min=1), torch.ones_like(union))
    return {"iou": iou.float(), "mae": (alpha - truth).abs().flatten(1).mean(dim=1)}


@torch.no_grad()
def evaluate_matte(generator: Generator, model: PVPModel, head: MatteHead, clip: PreparedClip, channels: np.ndarray,
                   layout: ChannelLayout, split: Split, device, batch_size: int = 8,
                   frame_roll: FrameRoll | None = None) -> dict:
    """The learnt alpha and the constant baseline on the held-out frames (report.json's ``matte``)."""
    held = split.held_out
    constant = mean_training_matte(clip, np.asarray(split.train), device)
    per_frame = {"learnt": {}, "constant_baseline": {}}
    for start in range(0, len(held), batch_size):
        frames = held[start:start + batch_size]
        inputs = model.inputs(channels[frames], layout, device)
        ws, _ = model(inputs)
        images, features = generator.synthesis(ws, noise_mode="const", return_features=True, warp=model.warp(inputs))
        alpha, _ = rolled_alpha(head(features, images), inputs.roll, frame_roll)
        truth = clip.matte_tensor(frames, device)
        for method, prediction in (("learnt", alpha), ("constant_baseline", constant.expand_as(truth))):
            for metric, values in matte_scores(prediction, truth).items():
                per_frame[method].setdefault(metric, []).append(values.cpu().numpy())
    per_frame = {m: {k: np.concatenate(v) for k, v in metrics.items()} for m, metrics in per_frame.items()}
    return {
        "threshold": THRESHOLD,
        "baseline": "the training frames' mean matte, the same for every frame",
        "summary": {m: {k: float(np.mean(v)) for k, v in metrics.items()} for m, metrics in per_frame.items()},
        "per_frame": {m: {k: [float(x) for x in v] for k, v in metrics.items()} for m, metrics in per_frame.items()},
    }


def matte_summary_line(report: dict) -> str:
    """One line for the fit's printout."""
    if "summary" not in report:
        return f"alpha: {report['alpha']}"
    learnt, constant = report["summary"]["learnt"], report["summary"]["constant_baseline"]
    return (f"alpha (held out): IoU {learnt['iou']:.4f}, MAE {learnt['mae']:.4f}; constant mean matte: "
            f"IoU {constant['iou']:.4f}, MAE {constant['mae']:.4f}")
