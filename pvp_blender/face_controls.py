"""Named face controls: ARKit's 52 blendshapes as keyframable sliders on the rig, through a map.

With an ARKit -> FLAME map set on the rig (``rig.pvp_rig.arkit_map``: our ``.npz``, EMAGE's
``mat_final.npy`` or a mediapipe ``mappings/`` folder), the rig carries one custom property per
ARKit name (``rig["arkit_jawOpen"]``, 0..1: ID data, so keys, drivers, NLA and library overrides
work).  Every time the rig's channels are read (``rig.read_channels``: renders, prefetched frames,
the viewport, the FLAME mesh's correctives) the sliders add ``matrix @ sliders`` to the FLAME
channels, on top of whatever ``expr_NN`` and the jaw and eye bones hold.  The map's bias is not
added: with every slider at 0 the rig is exactly what its other channels say (a capture's bias is
keyed into those channels by the clip import instead).
"""

from __future__ import annotations

import os

import bpy
import numpy as np

from ..pvp_runtime.contract.arkit import ARKIT_NAMES, PROPERTY_PREFIX, ArkitMap
from ..pvp_runtime.contract.channels import ChannelLayout
from ..pvp_runtime.contract.errors import ChannelError, PVPError
from ..pvp_runtime.formats.arkit_maps import read_arkit_map

PROPERTY_NAMES = tuple(PROPERTY_PREFIX + name for name in ARKIT_NAMES)
_MAPS: dict[str, tuple[tuple, ArkitMap]] = {}           # absolute path -> (file stamp, map)
_ON_LAYOUT: dict[tuple, tuple[np.ndarray, list]] = {}   # (path, stamp, layout) -> (weights [C, 52], dropped)


def map_file(rig) -> str:
    """The rig's map as an absolute path ('' when none is set)."""
    original = getattr(rig, "original", rig) or rig
    path = original.pvp_rig.arkit_map
    return bpy.path.abspath(path, library=original.library) if path else ""


def _stamp(path: str) -> tuple:
    try:
        if os.path.isdir(path):
            return tuple((entry.name, entry.stat().st_mtime_ns) for entry in sorted(os.scandir(path), key=lambda e: e.name))
        info = os.stat(path)
        return (info.st_mtime_ns, info.st_size)
    except OSError:
        return ()


def load_map(path: str) -> ArkitMap:
    """The map at ``path``, read once per change of the file (every frame reads the rig)."""
    stamp = _stamp(path)
    cached = _MAPS.get(path)
    if cached is None or cached[0] != stamp:
        _MAPS[path] = (stamp, read_arkit_map(path))
    return _MAPS[path][1]


def ensure_properties(rig) -> None:
    for name in PROPERTY_NAMES:
        if name not in rig.keys():
            rig[name] = 0.0
        ui = rig.id_properties_ui(name)
        ui.update(min=0.0, max=1.0, soft_min=0.0, soft_max=1.0, default=0.0, step=10, precision=3,
                  description=f"ARKit {name[len(PROPERTY_PREFIX):]} (0..1), through the rig's ARKit map")
        rig.property_overridable_library_set(f'["{name}"]', True)


def sync_map(rig) -> str | None:
    """Check the rig's map and give the rig its ARKit sliders; the problem in one line, or None."""
    path = map_file(rig)
    if not path:
        rig.pvp_rig.face_status = ""
        return None
    try:
        arkit_map = load_map(path)
    except PVPError as exc:
        rig.pvp_rig.face_status = str(exc)
        return str(exc)
    ensure_properties(rig)
    rig.pvp_rig.face_status = (f"{arkit_map.source}: {len(arkit_map.targets)} FLAME channels from "
                               f"{len(arkit_map.arkit_names)} ARKit weights")
    from . import flame_mesh  # local: flame_mesh imports rig, which imports this module
    for mesh in flame_mesh.flame_meshes(rig):
        flame_mesh.update_face_shape_keys(rig, mesh)
    return None


def slider_values(rig_eval, frame: int) -> np.ndarray:
    """``[52]`` the evaluated sliders (keys, drivers and NLA applied)."""
    values = np.zeros(len(PROPERTY_NAMES))
    for i, name in enumerate(PROPERTY_NAMES):
        raw = rig_eval.get(name, 0.0)
        try:
            values[i] = float(raw)
        except (TypeError, ValueError):
            raise ChannelError(f"rig '{rig_eval.name}': frame {frame}, '{name}' holds {raw!r}, not a number") from None
    return values


def layout_weights(path: str, layout: ChannelLayout) -> np.ndarray:
    """``[C, 52]``: the map at ``path`` onto ``layout``'s columns (bias left out, see the module docstring)."""
    arkit_map = load_map(path)
    key = (path, _MAPS[path][0], layout)
    if key not in _ON_LAYOUT:
        weights, _, dropped = arkit_map.on_layout(layout)
        if len(_ON_LAYOUT) > 32:  # rigs rarely change maps or subjects; keep the cache small anyway
            _ON_LAYOUT.clear()
        _ON_LAYOUT[key] = (weights, dropped)
    return _ON_LAYOUT[key][0]


def add_face_controls(channels: np.ndarray, rig_eval, layout: ChannelLayout, frame: int) -> np.ndarray:
    """``channels`` plus what the rig's ARKit sliders say through its map (unchanged without a map)."""
    path = map_file(rig_eval)
    if not path:
        return channels
    try:
        weights = layout_weights(path, layout)
    except PVPError as exc:
        raise ChannelError(f"rig '{rig_eval.name}': ARKit map: {exc}") from None
    sliders = slider_values(rig_eval, frame)
    if not sliders.any():
        return channels
    return (channels.astype(np.float64) + weights @ sliders).astype(np.float32)


def reset(rig) -> None:
    for name in PROPERTY_NAMES:
        if name in rig.keys():
            rig[name] = 0.0
