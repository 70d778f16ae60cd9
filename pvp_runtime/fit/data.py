"""The inputs of a fit: frames (video or folder), per-frame channels, optional landmarks and mattes.

:func:`inspect_inputs` checks everything *before* any work starts: every frame
and matte is decoded once, counts and sizes are compared, landmarks are
checked for shape and finiteness, and the train/held-out split is made.  Any
problem is a one-line :class:`InputError` naming the file and frame.

Layouts
  frames     a video file (anything OpenCV decodes) or a folder of images, sorted
             by natural order (frame_2 before frame_10); all the same size.
  channels   a channel file in the runtime's layout (.csv/.json/.npz, see
             ``contract/channel_files.py``) or a tracker's output (DECA/SMIRK
             codes, EMOCA folder, feats.json: ``formats/channel_sources.py``),
             one record per frame.
  landmarks  68 iBUG points per frame in frame pixels (x right, y down):
             ``.npy`` [F, 68, 2], ``.npz`` with a ``landmarks`` array, or
             ``.json`` ``{"landmarks": [[[x, y], ...], ...]}``.
  mattes     a video or folder like the frames: grey 0..255 (alpha of RGBA, or
             the mean of RGB, is used), 255 = subject.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from ..formats.channel_sources import read_any_channels
from ..contract.channels import ChannelLayout
from ..contract.errors import PVPError
from ..contract.provenance import file_sha256
from .config import DataConfig

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
NUM_LANDMARKS = 68


class InputError(PVPError):
    """Fit inputs that are missing, unreadable, or inconsistent with each other."""


def _natural_key(path: Path):
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


@dataclass
class FrameSource:
    """An ordered, validated sequence of images: a video file or a folder of images."""

    path: Path
    files: list[Path] | None  # None for a video
    count: int
    width: int
    height: int
    matte: bool = False

    @property
    def kind(self) -> str:
        return "video" if self.files is None else "folder"

    def describe(self, index: int) -> str:
        return f"{self.files[index]}" if self.files is not None else f"{self.path}: frame {index}"

    def content_sha256(self) -> str:
        """SHA-256 of the video file, or of a folder's images in frame order (each file's name and
        SHA-256, one line each), so a bundle can name exactly the footage it was fitted to."""
        if self.files is None:
            return file_sha256(self.path)
        lines = "".join(f"{path.name}\t{file_sha256(path)}\n" for path in self.files)
        return hashlib.sha256(lines.encode("utf-8")).hexdigest()

    @classmethod
    def open(cls, path: str | Path, what: str = "frames", matte: bool = False) -> "FrameSource":
        """Decode every image once to prove it is readable and the same size as the first."""
        path = Path(path)
        if not path.exists():
            raise InputError(f"{path}: {what} not found")
        files = None
        if path.is_dir():
            files = sorted((p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()),
                           key=_natural_key)
            if not files:
                raise InputError(f"{path}: folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
        source = cls(path, files, 0, 0, 0, matte)
        count = 0
        for index, image in enumerate(source._decode()):
            h, w = image.shape[:2]
            if index == 0:
                source.width, source.height = w, h
            elif (w, h) != (source.width, source.height):
                raise InputError(f"{source.describe(index)}: {what} image is {w}x{h}, but the first is "
                                 f"{source.width}x{source.height} (all must be the same size)")
            count += 1
        if count == 0:
            raise InputError(f"{path}: no decodable {what} (not a video OpenCV can read?)")
        source.count = count
        return source

    def _decode(self) -> Iterator[np.ndarray]:
        if self.files is not None:
            for i, file in enumerate(self.files):
                image = cv2.imread(str(file), cv2.IMREAD_UNCHANGED)
                if image is None or image.size == 0:
                    raise InputError(f"{file}: unreadable image (frame {i})")
                yield self._convert(image)
            return
        capture = cv2.VideoCapture(str(self.path))
        if not capture.isOpened():
            raise InputError(f"{self.path}: not a video OpenCV can open, nor a folder of images")
        try:
            while True:
                ok, image = capture.read()
                if not ok:
                    break
                yield self._convert(image)
        finally:
            capture.release()

    def _convert(self, image: np.ndarray) -> np.ndarray:
        if image.dtype == np.uint16:
            image = (image.astype(np.float32) / 257.0).round().astype(np.uint8)
        elif image.dtype != np.uint8:
            image = np.clip(image, 0, 255).astype(np.uint8)
        if self.matte:
            if image.ndim == 2:
                return image
            if image.shape[2] == 4:
                return np.ascontiguousarray(image[..., 3])
            return np.round(image[..., :3].astype(np.float32).mean(axis=2)).astype(np.uint8)
        if image.ndim == 2:
            return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
        if image.shape[2] == 4:
            return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)

    def __iter__(self) -> Iterator[np.ndarray]:
        """RGB uint8 [H, W, 3] frames (or [H, W] mattes), in order."""
        count = 0
        for image in self._decode():
            if image.shape[1] != self.width or image.shape[0] != self.height:
                raise InputError(f"{self.describe(count)}: changed size since it was inspected")
            yield image
            count += 1
        if count != self.count:
            raise InputError(f"{self.path}: decoded {count} images, {self.count} when inspected")


@dataclass
class Split:
    """Indices of the training and held-out frames (held out: the last frames)."""

    train: np.ndarray
    held_out: np.ndarray

    def to_dict(self) -> dict:
        return {"train": [int(self.train[0]), int(self.train[-1]) + 1],
                "held_out": [int(self.held_out[0]), int(self.held_out[-1]) + 1]}


def split_frames(count: int, config: DataConfig) -> Split:
    held = config.held_out_frames if config.held_out_frames is not None else int(round(count * config.held_out_fraction))
    held = max(1, held)
    if held >= count:
        raise InputError(f"holding out {held} of {count} frames leaves none to train on "
                         f"(lower --held-out)")
    return Split(np.arange(count - held), np.arange(count - held, count))


@dataclass
class FitInputs:
    frames: FrameSource
    channels: np.ndarray               # [F, layout.size] float32, validated
    layout: ChannelLayout
    channels_path: Path
    split: Split
    fps: float | None = None
    landmarks: np.ndarray | None = None  # [F, 68, 2] float32, frame pixels
    landmarks_path: Path | None = None
    mattes: FrameSource | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        return self.frames.count

    @property
    def aligned_by_landmarks(self) -> bool:
        return self.landmarks is not None

    def describe(self) -> dict:
        return {
            "frames": str(self.frames.path), "frame_source": self.frames.kind, "frame_count": self.count,
            "frame_size": [self.frames.width, self.frames.height],
            "channels": str(self.channels_path), "num_expressions": self.layout.num_expressions,
            "landmarks": str(self.landmarks_path) if self.landmarks_path else None,
            "mattes": str(self.mattes.path) if self.mattes else None,
            "split": self.split.to_dict(), "fps": self.fps,
        }


def read_landmarks(path: str | Path) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: landmarks file not found")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            array = np.load(path, allow_pickle=False)
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                if "landmarks" not in data.files:
                    raise InputError(f"{path}: no 'landmarks' array (found {', '.join(data.files) or 'none'})")
                array = data["landmarks"]
        elif suffix == ".json":
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict) or "landmarks" not in data:
                raise InputError(f"{path}: expected an object with a 'landmarks' list")
            array = np.asarray(data["landmarks"], dtype=np.float64)
        else:
            raise InputError(f"{path}: unsupported landmarks file type {suffix!r} (expected .npy, .npz or .json)")
    except InputError:
        raise
    except (ValueError, OSError, zipfile.BadZipFile, EOFError, UnicodeDecodeError, TypeError) as exc:
        raise InputError(f"{path}: not a readable landmarks file ({str(exc).splitlines()[0]})") from None
    if array.ndim != 3 or array.shape[1:] != (NUM_LANDMARKS, 2) or not np.issubdtype(array.dtype, np.number):
        raise InputError(f"{path}: expected landmarks of shape [frames, 68, 2], got {list(array.shape)} "
                         f"({array.dtype})")
    array = array.astype(np.float32)
    bad = ~np.isfinite(array).all(axis=(1, 2))
    if bad.any():
        raise InputError(f"{path}: frame {int(np.argmax(bad))} has non-finite landmarks")
    return array


def inspect_inputs(frames: str | Path, channels: str | Path, layout: ChannelLayout, config: DataConfig,
                   landmarks: str | Path | None = None, mattes: str | Path | None = None,
                   min_train_frames: int = 1, channel_source: str = "auto") -> FitInputs:
    """Validate every input against the others; nothing is written and no training runs."""
    clip = read_any_channels(channels, layout, channel_source)
    landmark_array = read_landmarks(landmarks) if landmarks is not None else None
    source = FrameSource.open(frames, "frames")
    if len(clip.frames) != source.count:
        raise InputError(f"{channels}: has {len(clip.frames)} frames of channels, but {frames} has "
                         f"{source.count} frames")
    if landmark_array is not None:
        if len(landmark_array) != source.count:
            raise InputError(f"{landmarks}: has landmarks for {len(landmark_array)} frames, but {frames} has "
                             f"{source.count} frames")
        margin = max(source.width, source.height)
        outside = ((landmark_array < -margin) | (landmark_array[..., 0:1] > source.width + margin)
                   | (landmark_array[..., 1:2] > source.height + margin)).any(axis=(1, 2))
        if outside.any():
            raise InputError(f"{landmarks}: frame {int(np.argmax(outside))} has landmarks far outside the "
                             f"{source.width}x{source.height} frame (wrong units or frame order?)")
    elif source.width != source.height:
        raise InputError(f"{frames}: frames are {source.width}x{source.height}, not square aligned crops; "
                         f"pass --landmarks to crop and align them")
    matte_source = None
    if mattes is not None:
        matte_source = FrameSource.open(mattes, "mattes", matte=True)
        if matte_source.count != source.count:
            raise InputError(f"{mattes}: has {matte_source.count} mattes, but {frames} has {source.count} frames")
        if (matte_source.width, matte_source.height) != (source.width, source.height):
            raise InputError(f"{mattes}: mattes are {matte_source.width}x{matte_source.height}, frames are "
                             f"{source.width}x{source.height}")
    split = split_frames(source.count, config)
    if len(split.train) < min_train_frames:
        raise InputError(f"{frames}: {len(split.train)} training frames are fewer than the {min_train_frames} "
                         f"pivots asked for (lower --pivots or --held-out)")
    return FitInputs(frames=source, channels=clip.frames, layout=layout, channels_path=Path(channels), split=split,
                     fps=clip.fps, landmarks=landmark_array,
                     landmarks_path=Path(landmarks) if landmarks is not None else None, mattes=matte_source)
