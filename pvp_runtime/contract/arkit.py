"""ARKit face blendshapes and ARKit -> FLAME maps: names, the map file, applying a map.

ARKit (Apple's ``ARFaceAnchor.BlendShapeLocation``) describes a face with 52 named weights in
0..1 (``jawOpen``, ``mouthSmileLeft`` ...).  The rig speaks FLAME: unnamed PCA expression
coefficients and jaw / eye axis-angles.  There is no official mapping between the two; every
public one is a linear fit to paired data, so a map is data:

    channels = matrix @ arkit + bias

``arkit`` holds the map's ``arkit_names`` in order, ``channels`` its ``targets`` (rig channel
names from :mod:`.channels`: ``expr_NN``, ``jaw_x/y/z``, optionally ``eye_l_*``/``eye_r_*``).

**The map file** (``.npz``, read with ``allow_pickle=False``):

================  ===========================  ==============================================
array             shape / dtype                meaning
================  ===========================  ==============================================
``format``        scalar str                   ``"pvp-arkit-map/1"``
``arkit_names``   [N] str                      ARKit names (Apple's camelCase spelling)
``targets``       [M] str                      rig channel names
``matrix``        [M, N] float                 row m: how each ARKit weight moves target m
``bias``          [M] float                    the targets when every weight is 0
``source``        scalar str (optional)        where the map came from
``r2``            [M] float (optional)         held-out R^2 per target (learnt maps)
================  ===========================  ==============================================

Units are the rig's: FLAME PCA units for ``expr_NN``, radians (axis-angle) for jaw and eyes.
The public layouts (EMAGE's ``mat_final.npy``, mediapipe-blendshapes-to-flame's ``mappings/``)
are read by ``formats/arkit_maps.py`` into the same :class:`ArkitMap`.  numpy only: the
Blender extension applies maps to the rig's ARKit sliders with this module.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .atomic_files import replacing
from .channels import _EXPRESSION_NAME, EYE_CHANNELS, JAW_CHANNELS, ChannelLayout
from .errors import ChannelError

MAP_FORMAT = "pvp-arkit-map/1"

#: The 52 ARKit blendshapes in the order Live Link Face writes its CSV columns (Apple's names).
ARKIT_NAMES = (
    "eyeBlinkLeft", "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft", "eyeLookUpLeft", "eyeSquintLeft",
    "eyeWideLeft", "eyeBlinkRight", "eyeLookDownRight", "eyeLookInRight", "eyeLookOutRight", "eyeLookUpRight",
    "eyeSquintRight", "eyeWideRight",
    "jawForward", "jawRight", "jawLeft", "jawOpen",
    "mouthClose", "mouthFunnel", "mouthPucker", "mouthRight", "mouthLeft", "mouthSmileLeft", "mouthSmileRight",
    "mouthFrownLeft", "mouthFrownRight", "mouthDimpleLeft", "mouthDimpleRight", "mouthStretchLeft",
    "mouthStretchRight", "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper",
    "mouthPressLeft", "mouthPressRight", "mouthLowerDownLeft", "mouthLowerDownRight", "mouthUpperUpLeft",
    "mouthUpperUpRight",
    "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight",
    "noseSneerLeft", "noseSneerRight",
    "tongueOut",
)
_BY_LOWER = {name.lower(): name for name in ARKIT_NAMES}

#: Panel groups, as Apple groups them (the first word of each name says which).
ARKIT_GROUPS = ("eyes", "jaw", "mouth", "brows", "cheeks", "nose", "tongue")
_GROUP_PREFIX = {"eye": "eyes", "jaw": "jaw", "mouth": "mouth", "brow": "brows", "cheek": "cheeks",
                 "nose": "nose", "tongue": "tongue"}

#: Blender custom property of each ARKit control on the rig (``rig["arkit_jawOpen"]``).
PROPERTY_PREFIX = "arkit_"

_MAX_TARGETS = 512


def arkit_group(name: str) -> str:
    prefix = next(p for p in _GROUP_PREFIX if name.startswith(p))
    return _GROUP_PREFIX[prefix]


def canonical_arkit_name(name: str, source: str = "ARKit names") -> str:
    """Apple's spelling of an ARKit name given in any case (Live Link writes ``JawOpen``)."""
    try:
        return _BY_LOWER[str(name).strip().lower()]
    except KeyError:
        raise ChannelError(f"{source}: {name!r} is not an ARKit blendshape name") from None


_ROTATION_TARGETS = tuple(spec.name for spec in JAW_CHANNELS + EYE_CHANNELS)


def check_target(name: str, source: str) -> str:
    """A map target must be an expression, jaw or eye channel (what a face capture can say)."""
    if name in _ROTATION_TARGETS:
        return name
    match = _EXPRESSION_NAME.fullmatch(name)
    if match:
        return f"expr_{int(match.group(1)):02d}"
    raise ChannelError(f"{source}: target {name!r} is not an expression (expr_NN), jaw_* or eye_* channel")


@dataclass(frozen=True)
class ArkitMap:
    """``channels[targets] = matrix @ arkit[arkit_names] + bias`` (see the module docstring)."""

    arkit_names: tuple[str, ...]
    targets: tuple[str, ...]
    matrix: np.ndarray          # [M, N] float64
    bias: np.ndarray            # [M]
    source: str = ""
    r2: np.ndarray | None = field(default=None, compare=False)

    def __post_init__(self):
        where = self.source or "ARKit map"
        names = tuple(canonical_arkit_name(n, where) for n in self.arkit_names)
        targets = tuple(check_target(str(t), where) for t in self.targets)
        for label, values in (("ARKit name", names), ("target", targets)):
            if len(set(values)) != len(values):
                repeated = next(v for v in values if values.count(v) > 1)
                raise ChannelError(f"{where}: {label} {repeated!r} appears twice")
        if not names or not targets or len(targets) > _MAX_TARGETS:
            raise ChannelError(f"{where}: a map needs 1..52 ARKit names and 1..{_MAX_TARGETS} targets, "
                               f"got {len(names)} and {len(targets)}")
        matrix = _finite(self.matrix, (len(targets), len(names)), "matrix", where)
        bias = _finite(self.bias, (len(targets),), "bias", where)
        object.__setattr__(self, "arkit_names", names)
        object.__setattr__(self, "targets", targets)
        object.__setattr__(self, "matrix", matrix)
        object.__setattr__(self, "bias", bias)
        if self.r2 is not None:
            object.__setattr__(self, "r2", np.asarray(self.r2, dtype=np.float64).reshape(len(targets)))

    def full_matrix(self) -> np.ndarray:
        """``[M, 52]``: the matrix over all of :data:`ARKIT_NAMES` (names the map lacks weigh 0)."""
        full = np.zeros((len(self.targets), len(ARKIT_NAMES)))
        for column, name in enumerate(self.arkit_names):
            full[:, ARKIT_NAMES.index(name)] = self.matrix[:, column]
        return full

    def on_layout(self, layout: ChannelLayout) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """``(W [C, 52], b [C], dropped)``: the map onto ``layout``'s columns, so that
        ``frames += arkit52 @ W.T + b``.  Expression targets past the subject's count are dropped
        (``dropped`` names them), as channel files drop them."""
        weights, bias, dropped = np.zeros((layout.size, len(ARKIT_NAMES))), np.zeros(layout.size), []
        full = self.full_matrix()
        for row, target in enumerate(self.targets):
            column = layout.column_of(target, self.source or "ARKit map")
            if column is None:
                dropped.append(target)
                continue
            weights[column] += full[row]
            bias[column] += self.bias[row]
        return weights, bias, dropped


def _finite(values, shape, what: str, where: str) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ChannelError(f"{where}: {what} must hold numbers") from None
    if array.shape != shape:
        raise ChannelError(f"{where}: {what} has shape {array.shape}, expected {shape}")
    if not np.isfinite(array).all():
        raise ChannelError(f"{where}: {what} holds NaN or infinite values")
    return array


def arkit_columns(values: np.ndarray, names, source: str) -> np.ndarray:
    """``[F, 52]`` in :data:`ARKIT_NAMES` order from ``[F, len(names)]`` columns named ``names``."""
    out = np.zeros((len(values), len(ARKIT_NAMES)))
    for column, name in enumerate(names):
        out[:, ARKIT_NAMES.index(canonical_arkit_name(name, source))] = values[:, column]
    return out


# --------------------------------------------------------------------------- the .npz file

def write_arkit_map(path: str | os.PathLike, arkit_map: ArkitMap) -> None:
    """Write ``arkit_map`` as our ``.npz`` layout, atomically, and check it reads back."""
    path = Path(path)
    if path.suffix.lower() != ".npz":
        raise ChannelError(f"{path}: an ARKit map is written as .npz")
    arrays = {"format": np.array(MAP_FORMAT), "arkit_names": np.array(arkit_map.arkit_names),
              "targets": np.array(arkit_map.targets), "matrix": arkit_map.matrix.astype(np.float64),
              "bias": arkit_map.bias.astype(np.float64), "source": np.array(arkit_map.source or str(path.name))}
    if arkit_map.r2 is not None:
        arrays["r2"] = np.asarray(arkit_map.r2, dtype=np.float64)
    with replacing(path) as tmp:
        np.savez(tmp, **arrays)
        read_map_npz(tmp)


def read_map_npz(path: str | os.PathLike) -> ArkitMap:
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise ChannelError(f"{path}: not a readable ARKit map .npz ({exc})") from None
    marker = arrays.get("format")
    if marker is None or marker.dtype.kind != "U" or str(marker.reshape(-1)[0]) != MAP_FORMAT:
        raise ChannelError(f"{path}: not an ARKit map (no format '{MAP_FORMAT}'; arrays: "
                           f"{', '.join(sorted(arrays)) or 'none'})")
    missing = [key for key in ("arkit_names", "targets", "matrix", "bias") if key not in arrays]
    if missing:
        raise ChannelError(f"{path}: ARKit map lacks {', '.join(missing)}")
    for key in ("arkit_names", "targets"):
        if arrays[key].dtype.kind != "U" or arrays[key].ndim != 1:
            raise ChannelError(f"{path}: '{key}' must be a 1-D string array, got {arrays[key].dtype} "
                               f"{arrays[key].shape}")
    source = str(arrays["source"].reshape(-1)[0]) if "source" in arrays and arrays["source"].size else ""
    r2 = arrays.get("r2")
    if r2 is not None and r2.shape != arrays["targets"].shape:
        raise ChannelError(f"{path}: 'r2' has shape {r2.shape}, expected {arrays['targets'].shape}")
    return ArkitMap(tuple(arrays["arkit_names"].tolist()), tuple(arrays["targets"].tolist()), arrays["matrix"],
                    arrays["bias"], source=f"{path.name}" + (f" ({source})" if source and source != path.name else ""),
                    r2=r2)


def r2_summary(arkit_map: ArkitMap) -> str:
    if arkit_map.r2 is None:
        return "no R^2 recorded"
    finite = arkit_map.r2[np.isfinite(arkit_map.r2)]
    return f"held-out R^2 mean {finite.mean():.3f}" if finite.size else "no R^2 recorded"

