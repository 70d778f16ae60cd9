"""The aligned clip a fit trains on, cached in the run's work folder.

Preparing decodes every frame once, aligns it (``alignment.py``) and stores
the crops at the generator's resolution as ``.npy`` arrays that later stages
and a resumed run memory-map instead of decoding the video again:

    work/frames.npy      uint8 [F, R, R, 3]  aligned RGB crops
    work/transforms.npy  float64 [F, 2, 3]    frame px -> crop px, per frame
    work/landmarks.npy   float32 [F, 68, 2]   landmarks in crop px (with --landmarks)
    work/mattes.npy      uint8 [F, R, R]      aligned mattes (with --mattes)

Each file is written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..contract.atomic_files import replacing
from .alignment import alignment_transforms, passthrough_transform, transform_points, warp
from .checkpoint import CheckpointError
from .data import FitInputs

log = logging.getLogger(__name__)
FILES = {"frames": "frames.npy", "transforms": "transforms.npy", "landmarks": "landmarks.npy", "mattes": "mattes.npy"}


@dataclass
class PreparedClip:
    frames: np.ndarray
    transforms: np.ndarray
    landmarks: np.ndarray | None
    mattes: np.ndarray | None

    @property
    def resolution(self) -> int:
        return self.frames.shape[1]

    def __len__(self) -> int:
        return len(self.frames)

    def images(self, indices, device) -> torch.Tensor:
        """``[B, 3, R, R]`` float in [-1, 1], the generator's range."""
        batch = np.ascontiguousarray(self.frames[np.asarray(indices)])
        return torch.from_numpy(batch).to(device).permute(0, 3, 1, 2).float() / 127.5 - 1.0

    def matte_tensor(self, indices, device) -> torch.Tensor | None:
        if self.mattes is None:
            return None
        batch = np.ascontiguousarray(self.mattes[np.asarray(indices)])
        return torch.from_numpy(batch).to(device)[:, None].float() / 255.0


def _save(path: Path, array: np.ndarray) -> None:
    with replacing(path) as tmp:
        np.save(tmp, array)


def prepare_clip(inputs: FitInputs, resolution: int, sigma: float, work_dir: Path) -> PreparedClip:
    count = inputs.count
    if inputs.landmarks is not None:
        transforms = alignment_transforms(inputs.landmarks, resolution, sigma)
        crop_landmarks = np.stack([transform_points(lm, t) for lm, t in zip(inputs.landmarks, transforms)])
    else:
        transforms = np.repeat(passthrough_transform(inputs.frames.width, resolution)[None], count, axis=0)
        crop_landmarks = None
    # The frames file is renamed into place last: its presence marks a finished preparation.
    with replacing(work_dir / FILES["frames"]) as frames_tmp:
        frames = np.lib.format.open_memmap(frames_tmp, mode="w+", dtype=np.uint8,
                                           shape=(count, resolution, resolution, 3))
        for i, image in enumerate(tqdm(inputs.frames, total=count, desc="align", unit="frame", disable=None)):
            frames[i] = warp(image, transforms[i], resolution)
        frames.flush()
        del frames
        mattes = None
        if inputs.mattes is not None:
            mattes = np.empty((count, resolution, resolution), dtype=np.uint8)
            for i, matte in enumerate(inputs.mattes):
                mattes[i] = warp(matte, transforms[i], resolution, matte=True)
            _save(work_dir / FILES["mattes"], mattes)
        if crop_landmarks is not None:
            _save(work_dir / FILES["landmarks"], crop_landmarks.astype(np.float32))
        _save(work_dir / FILES["transforms"], transforms)
    log.info("aligned %d frames to %dx%d (%s)", count, resolution, resolution,
             "FFHQ crop from landmarks" if inputs.landmarks is not None else "pass-through")
    return open_prepared(work_dir, count, resolution, inputs.landmarks is not None, inputs.mattes is not None)


def open_prepared(work_dir: Path, count: int, resolution: int, landmarks: bool, mattes: bool) -> PreparedClip:
    def load(key, shape, required=True):
        path = work_dir / FILES[key]
        if not required:
            return None
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"{path}: prepared data missing or unreadable ({exc}); start the fit again") from None
        if tuple(array.shape) != shape:
            raise CheckpointError(f"{path}: prepared data has shape {list(array.shape)}, expected {list(shape)}")
        return array

    return PreparedClip(frames=load("frames", (count, resolution, resolution, 3)),
                        transforms=np.asarray(load("transforms", (count, 2, 3))),
                        landmarks=load("landmarks", (count, 68, 2), landmarks),
                        mattes=load("mattes", (count, resolution, resolution), mattes))
