"""``Avatar``: the render API.  Rig channels in, RGBA frames out.

    avatar = Avatar.load("subject.pvp")            # device="auto": CUDA when present
    frames = avatar.render(channel_array)           # [F, layout.size] or list of {name: value}
    frames.srgb8    # [F, H, W, 4] uint8, straight alpha, top row first
    frames.linear   # [F, H, W, 4] float32 scene-linear, premultiplied, top row first

Rendering is the mappers plus one synthesis pass per frame, under
``torch.inference_mode`` with the generator's constant noise, so the same
channels give bit-identical pixels on the same device and batch size.  Head
roll is applied after synthesis as a 2D rotation of the aligned crop (the
mappers never see roll, as in the paper); pixels rotated in from outside the
crop get alpha 0.  A subject fitted with mattes carries a matte head (``model/matte.py``) whose
alpha comes with every frame (premultiplied in ``linear``, straight in ``srgb8``); without one
alpha is 1.  A subject's appearance edits
are channels too (``edit_<name>``, after the rig channels), added to W+ after the mappers
(``model/edits.py``); at strength 0 a frame renders exactly as without the edit.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .bundle import SubjectBundle, load_bundle, random_bundle
from .contract.channels import ChannelLayout, frames_from_records, validate_frames
from .contract.errors import PVPError
from .imaging import generator_to_srgb, linear_to_srgb, srgb_to_linear, srgb_to_uint8, to_channels_last_numpy, unpremultiply
from .model.stylegan2 import GeneratorConfig

log = logging.getLogger(__name__)
ROLL_EPSILON = 1e-6
OUTPUTS = ("linear", "srgb8")


@dataclass
class RenderedFrames:
    linear: np.ndarray | None  # [F, H, W, 4] float32, premultiplied
    srgb8: np.ndarray | None   # [F, H, W, 4] uint8, straight alpha

    def __len__(self) -> int:
        return len(self.linear if self.linear is not None else self.srgb8)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise PVPError(f"unknown device {device!r} (use auto, cpu, cuda or cuda:N)") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise PVPError(f"device {device!r} requested but this torch build sees no CUDA GPU")
    return resolved


class Avatar:
    def __init__(self, bundle: SubjectBundle, device: str | torch.device = "auto", half: bool = False):
        self.bundle = bundle
        self.device = resolve_device(device)
        self.half = bool(half and self.device.type == "cuda")
        if self.device.type == "cuda":
            # Bit-identical frames on re-render matter more to compositors than the last few percent.
            torch.backends.cudnn.benchmark = False
            torch.backends.cudnn.deterministic = True
        self.generator = bundle.generator.to(self.device).eval().requires_grad_(False)
        self.model = bundle.model.to(self.device).eval().requires_grad_(False)
        if bundle.matte is not None:
            bundle.matte.to(self.device).eval().requires_grad_(False)
        self.layout: ChannelLayout = bundle.layout
        self._told_about_eyes = False

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device = "auto", half: bool = False) -> "Avatar":
        return cls(load_bundle(path), device=device, half=half)

    @classmethod
    def random(cls, config: GeneratorConfig, num_pivots: int = 8, num_expressions: int = 50, seed: int = 0,
               device: str | torch.device = "cpu", expression_scale: float = 0.0) -> "Avatar":
        """A random-weight subject of the given size, for tests and benchmarks."""
        return cls(random_bundle(config, num_pivots, num_expressions, seed, expression_scale=expression_scale),
                   device=device)

    @property
    def resolution(self) -> int:
        return self.bundle.resolution

    @property
    def name(self) -> str:
        return self.bundle.name

    def validate(self, frames: np.ndarray | Sequence[Mapping[str, float]], source: str = "channels",
                 first_frame: int = 0) -> np.ndarray:
        if isinstance(frames, (list, tuple)) and frames and isinstance(frames[0], Mapping):
            return frames_from_records(frames, self.layout, source)
        return validate_frames(frames, self.layout, source, first_frame)

    @torch.inference_mode()
    def render(self, frames, batch_size: int = 8, outputs: Sequence[str] = OUTPUTS,
               source: str = "channels") -> RenderedFrames:
        unknown = set(outputs) - set(OUTPUTS)
        if unknown:
            raise ValueError(f"unknown output kinds {sorted(unknown)}; choose from {OUTPUTS}")
        array = self.validate(frames, source)
        self._tell_once_if_eyes_do_nothing(array, source)
        linear_parts, srgb_parts = [], []
        for start in range(0, len(array), max(1, batch_size)):
            linear, srgb8 = self._render_batch(array[start:start + batch_size], outputs)
            linear_parts.append(linear)
            srgb_parts.append(srgb8)
        join = lambda parts: np.concatenate(parts) if parts[0] is not None else None
        return RenderedFrames(linear=join(linear_parts), srgb8=join(srgb_parts))

    def _tell_once_if_eyes_do_nothing(self, frames: np.ndarray, source: str) -> None:
        if self.model.config.gaze or self._told_about_eyes or not np.any(frames[:, self.layout.slice("eyes")]):
            return
        self._told_about_eyes = True
        log.warning("%s: the eye channels have no effect on subject %s (its capture had no gaze)", source, self.name)

    def _render_batch(self, frames: np.ndarray, outputs):
        inputs = self.model.inputs(frames, self.layout, self.device)
        ws, _ = self.model(inputs)
        ws = self.bundle.edits.apply(ws, frames[:, self.layout.slice("edit")])  # after the mappers
        matte = self.bundle.matte
        warp = self.model.warp(inputs)
        with torch.autocast("cuda", dtype=torch.float16, enabled=self.half):
            if matte is None:
                img = self.generator.synthesis(ws, noise_mode="const", warp=warp)
            else:
                img, features = self.generator.synthesis(ws, noise_mode="const", return_features=True, warp=warp)
                learnt_alpha = matte(features, img)
        srgb = generator_to_srgb(img)
        alpha = torch.ones_like(srgb[:, :1]) if matte is None else learnt_alpha
        if inputs.roll.abs().max() > ROLL_EPSILON:
            rgba = roll_about(torch.cat([srgb_to_linear(srgb) * alpha, alpha], dim=1), inputs.roll,
                              self.bundle.framing.roll_center)
            linear_rgb, alpha = rgba[:, :3], rgba[:, 3:]
            srgb = linear_to_srgb(unpremultiply(linear_rgb, alpha))
        else:
            linear_rgb = srgb_to_linear(srgb) * alpha  # premultiplied; srgb stays straight
        linear = srgb8 = None
        if "linear" in outputs:
            linear = to_channels_last_numpy(torch.cat([linear_rgb, alpha], dim=1).float())
        if "srgb8" in outputs:
            srgb8 = to_channels_last_numpy(srgb_to_uint8(torch.cat([srgb, alpha], dim=1)))
        return linear, srgb8


def roll_about(rgba: torch.Tensor, roll: torch.Tensor, center: tuple[float, float]) -> torch.Tensor:
    """Rotate premultiplied RGBA counter-clockwise (as seen) by ``roll`` about ``center``.

    ``center`` is in 0..1 crop coordinates, y down.  Bilinear sampling of
    premultiplied linear colour, zeros outside the crop.
    """
    cos, sin = torch.cos(roll), torch.sin(roll)
    # affine_grid works in [-1, 1] coordinates, y down.  The output pixel q samples
    # the input at c + R^-1 (q - c), where R is the on-screen counter-clockwise rotation.
    cx, cy = 2 * center[0] - 1, 2 * center[1] - 1
    rows = torch.stack([
        torch.stack([cos, -sin, cx - (cos * cx - sin * cy)], dim=-1),
        torch.stack([sin, cos, cy - (sin * cx + cos * cy)], dim=-1),
    ], dim=1).to(rgba.dtype)
    grid = F.affine_grid(rows, list(rgba.shape), align_corners=False)
    return F.grid_sample(rgba, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
