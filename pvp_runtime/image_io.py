"""Writing frames: PNG sequences, MP4 previews, and all-or-nothing output folders."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from .contract.errors import PVPError


def write_png(path: Path, rgba8: np.ndarray) -> None:
    """Write one [H, W, 4] uint8 RGBA frame (straight alpha)."""
    if not cv2.imwrite(str(path), cv2.cvtColor(rgba8, cv2.COLOR_RGBA2BGRA)):
        raise PVPError(f"{path}: could not write PNG")


def read_png_rgba(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise PVPError(f"{path}: not a readable image")
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGRA)
    elif image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2BGRA)
    return cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA)


class VideoWriter:
    """MP4 (mp4v) preview; alpha is composited over black because MP4 has none."""

    def __init__(self, path: Path, fps: float, size: int | tuple[int, int]):
        self.path = path
        size = (size, size) if isinstance(size, int) else tuple(size)  # (width, height)
        self._writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
        if not self._writer.isOpened():
            raise PVPError(f"{path}: this OpenCV build cannot write MP4 video")

    def write(self, rgba8: np.ndarray) -> None:
        alpha = rgba8[..., 3:4].astype(np.float32) / 255.0
        rgb = (rgba8[..., :3].astype(np.float32) * alpha).round().astype(np.uint8)
        self._writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))

    def close(self) -> None:
        self._writer.release()


@contextlib.contextmanager
def staged_directory(target: Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a staging folder that becomes ``target`` only if the block succeeds.

    A failed or interrupted job leaves neither a half-filled ``target`` nor a
    damaged earlier result: the earlier folder is replaced only at the end, and
    only with ``overwrite``.
    """
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise PVPError(f"{target}: exists and is not a folder")
    if target.is_dir() and any(target.iterdir()) and not overwrite:
        raise PVPError(f"{target}: folder is not empty (pass --overwrite to replace it)")
    if not target.parent.exists():
        raise PVPError(f"{target.parent}: parent folder does not exist")
    staging = target.with_name(f".{target.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        yield staging
        if target.exists():
            backup = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, backup)
            os.replace(staging, target)
            shutil.rmtree(backup, ignore_errors=True)
        else:
            os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def contact_sheet(images: list[np.ndarray], columns: int = 8, background: int = 32) -> np.ndarray:
    """Tile equally sized [H, W, C] uint8 images into one image, row by row."""
    if not images:
        raise ValueError("contact sheet needs at least one image")
    h, w, c = images[0].shape
    rows = (len(images) + columns - 1) // columns
    sheet = np.full((rows * h, min(columns, len(images)) * w, c), background, dtype=np.uint8)
    if c == 4:
        sheet[..., 3] = 255
    for i, image in enumerate(images):
        r, col = divmod(i, columns)
        sheet[r * h:(r + 1) * h, col * w:(col + 1) * w] = image
    return sheet
