"""Read per-frame channels from any supported file: our own channel files or a tracker's output.

``pvp render``, ``pvp convert-channels``, ``pvp fit`` and the Blender import
operator all call :func:`read_any_channels`, so every one of them accepts the
same files:

=============  ==============================================================
source         file
=============  ==============================================================
``channels``   our ``.csv`` / ``.json`` / ``.npz`` (contract/channel_files.py)
``deca``       ``.npz`` with ``pose`` [F,6] and ``exp`` [F,50]
``emoca``      a folder of per-frame folders with ``pose.npy`` / ``exp.npy``
``smirk``      ``.npz`` with ``pose_params``, ``jaw_params``, ``expression_params``
``feats``      ``.json`` list of ``{"pose": [6], "expr": [50]}`` (PVP authors)
``live_link``  a Live Link Face ``.csv`` (ARKit weights), through an ARKit map
=============  ==============================================================

``source="auto"`` decides from the contents (folder, array names, JSON shape).
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

from ..contract.channel_files import ChannelClip, read_channel_file
from ..contract.channels import ChannelLayout
from ..contract.errors import ChannelError
from .arkit_maps import HOW_TO_GET_ONE, read_arkit_map
from .live_link import capture_frames, is_live_link_csv, read_live_link_csv
from .trackers import FlameParams, params_to_frames, read_deca_codes, read_emoca_codes, read_feats_json, read_smirk_codes

SOURCES = ("auto", "channels", "deca", "emoca", "smirk", "feats", "live_link")
TRACKER_READERS = {"deca": read_deca_codes, "emoca": read_emoca_codes, "smirk": read_smirk_codes,
                   "feats": read_feats_json}


def detect_source(path: str | os.PathLike) -> str:
    path = Path(path)
    if path.is_dir():
        return "emoca"
    if not path.is_file():
        raise ChannelError(f"{path}: channel file not found")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        try:
            with zipfile.ZipFile(path) as archive:
                names = {Path(name).stem for name in archive.namelist()}
        except (zipfile.BadZipFile, OSError):
            raise ChannelError(f"{path}: not a readable .npz file (truncated or not a zip archive)") from None
        if {"pose", "exp"} <= names:
            return "deca"
        if {"pose_params", "expression_params"} <= names:
            return "smirk"
        return "channels"
    if suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ChannelError(f"{path}: not valid JSON ({exc})") from None
        return "feats" if isinstance(data, list) else "channels"
    return "live_link" if is_live_link_csv(path) else "channels"


def read_tracker_params(path: str | os.PathLike, source: str) -> FlameParams:
    if source not in TRACKER_READERS:
        raise ChannelError(f"{path}: {source!r} is not a tracker format (expected one of "
                           f"{', '.join(TRACKER_READERS)})")
    return TRACKER_READERS[source](path)


def read_any_channels(path: str | os.PathLike, layout: ChannelLayout, source: str = "auto",
                      expected_frames: int | None = None, arkit_map=None) -> ChannelClip:
    """Channel frames for ``layout`` from any supported file; ``expected_frames`` checks the count.

    ``arkit_map`` (an ``ArkitMap`` or a path to one) turns a Live Link Face capture into channels;
    a capture without one is an error saying how to get one.
    """
    if source not in SOURCES:
        raise ChannelError(f"unknown channel source {source!r} (expected one of {', '.join(SOURCES)})")
    if source == "auto":
        source = detect_source(path)
    if arkit_map is not None and source != "live_link":
        raise ChannelError(f"{path}: an ARKit map was given, but this is not a Live Link Face capture ({source})")
    if source == "live_link":
        if arkit_map is None:
            raise ChannelError(f"{path}: a Live Link Face capture holds ARKit weights, not FLAME channels: pass an "
                               f"ARKit map (--arkit-map MAP.npz); {HOW_TO_GET_ONE}")
        if not hasattr(arkit_map, "on_layout"):
            arkit_map = read_arkit_map(arkit_map)
        capture = read_live_link_csv(path)
        clip = ChannelClip(capture_frames(capture, arkit_map, layout), fps=capture.fps)
    elif source == "channels":
        clip = read_channel_file(path, layout)
    else:
        clip = ChannelClip(params_to_frames(read_tracker_params(path, source), layout), fps=None)
    if expected_frames is not None and len(clip.frames) != expected_frames:
        raise ChannelError(f"{path}: holds {len(clip.frames)} frames, expected {expected_frames} "
                           f"(one per video frame)")
    return clip
