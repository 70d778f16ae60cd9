"""Writing frames: PNG and EXR files with metadata, MP4 previews, and all-or-nothing output folders.

Frame formats (``pvp render --format``): ``png`` (8-bit sRGB, straight alpha), ``png16``
(16-bit sRGB, straight alpha) and ``exr`` (half float, scene-linear Rec.709, premultiplied).
Each file is written atomically and carries its metadata (PNG text chunks, EXR header strings).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Iterator, Mapping

import cv2
import numpy as np

from .contract.atomic_files import replacing
from .contract.errors import ImageFileError, PVPError
from .exr import MAGIC_BYTES as EXR_MAGIC
from .exr import encode_exr, read_exr_header
from .png_text import SIGNATURE as PNG_SIGNATURE
from .png_text import add_text, read_text

FRAME_FORMATS = {"png": ".png", "png16": ".png", "exr": ".exr"}  # --format -> file suffix


def write_png(path: Path, rgba: np.ndarray, metadata: Mapping[str, str] | None = None) -> None:
    """Write one [H, W, 4] uint8 or uint16 RGBA frame (straight alpha), with text chunks."""
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    if not ok:
        raise PVPError(f"{path}: could not encode PNG")
    data = add_text(encoded.tobytes(), metadata) if metadata else encoded.tobytes()
    _write_bytes(path, data)


def write_exr(path: Path, linear: np.ndarray, metadata: Mapping[str, str] | None = None) -> None:
    """Write one [H, W, 4] float frame (scene-linear, premultiplied) as half-float EXR with header strings."""
    _write_bytes(path, encode_exr(linear, metadata))


def _write_bytes(path: Path, data: bytes) -> None:
    try:
        with replacing(path) as tmp:
            tmp.write_bytes(data)
    except OSError as exc:
        raise PVPError(f"{path}: could not write ({exc.strerror or exc})") from None


def read_metadata(path: Path) -> tuple[str, dict]:
    """("PNG" or "EXR", the file's metadata: PNG text chunks, or the EXR header) of a checked file."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ImageFileError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if data.startswith(PNG_SIGNATURE):
        return "PNG", read_text(data, str(path))
    if data.startswith(EXR_MAGIC):
        return "EXR", read_exr_header(data, str(path))
    raise ImageFileError(f"{path}: neither a PNG nor an OpenEXR file")


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
