"""ARKit -> FLAME maps in the layouts people already have, read into ``contract.arkit.ArkitMap``.

=================================  ==========================================================
file                               what it is (checked against the public files, 2026-12)
=================================  ==========================================================
``MAP.npz``                        ours (``contract/arkit.py``; ``pvp learn-arkit-map`` writes it)
``mat_final.npy``                  EMAGE / PantoMatrix: a float [51, 103] array used as
                                   ``arkit51 @ mat``: 51 rows = ARKit without ``tongueOut`` in
                                   alphabetical order (PantoMatrix issue #199; the maintainers
                                   say "103x51", but the file is [51, 103], issue #205), 103
                                   columns = FLAME 2020's 100 expressions, then jaw axis-angle
                                   (issue #130).  jawOpen was weakened on purpose (issue #139).
``mappings/`` (or a file in it)    mediapipe-blendshapes-to-flame: ``bs2exp.npy`` [52, 100]
                                   (the README says 50; the file holds FLAME's 100),
                                   ``bs2jaw.npy`` [52, 3], optional ``bs2eye.npy`` [52, 6]
                                   (left eye axis-angle, then right), each used as
                                   ``scores52 @ bs2x``.  Rows are MediaPipe's blendshape order:
                                   ``_neutral``, then the 51 ARKit names (no ``tongueOut``)
                                   alphabetically.  ``_neutral`` has no ARKit counterpart (a
                                   Live Link capture has no such column); its row is dropped.
                                   Research use only, FLAME 2020.
=================================  ==========================================================

Neither public map has a bias.  Anything else is a one-line error naming the file and its shape.
DECA's and EMOCA's 50 expressions are FLAME's first 50, so 100-expression maps drive 50-expression
subjects with their first 50 rows (the rest are dropped, as channel files drop them).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..contract.arkit import ARKIT_NAMES, ArkitMap, read_map_npz
from ..contract.channels import EYE_CHANNELS, JAW_CHANNELS
from ..contract.errors import ChannelError

#: ARKit without tongueOut, alphabetically: the row order of EMAGE's and MediaPipe's maps.
ALPHABETICAL_51 = tuple(sorted((name for name in ARKIT_NAMES if name != "tongueOut"), key=str.lower))
EMAGE_SHAPE = (len(ALPHABETICAL_51), 103)
MEDIAPIPE_FILES = {"bs2exp.npy": None, "bs2jaw.npy": 3, "bs2eye.npy": 6}  # name -> columns (None: 50 or 100)
_JAW = tuple(spec.name for spec in JAW_CHANNELS)
_EYES = tuple(spec.name for spec in EYE_CHANNELS)

HOW_TO_GET_ONE = ("fit one with `pvp learn-arkit-map CAPTURE.csv CHANNELS -o MAP.npz`, or use EMAGE's mat_final.npy "
                  "or a mediapipe-blendshapes-to-flame mappings/ folder")


def read_arkit_map(path: str | os.PathLike) -> ArkitMap:
    """Any supported map file (see the module docstring), or a one-line error."""
    path = Path(path)
    if path.is_dir():
        return read_mediapipe_mappings(path)
    if not path.is_file():
        raise ChannelError(f"{path}: ARKit map not found ({HOW_TO_GET_ONE})")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return read_map_npz(path)
    if suffix == ".npy" and path.name in MEDIAPIPE_FILES:
        return read_mediapipe_mappings(path.parent)
    if suffix == ".npy":
        return read_emage_matrix(path)
    raise ChannelError(f"{path}: unsupported ARKit map file {suffix!r} (expected our .npz, EMAGE's mat_final.npy "
                       "or a mediapipe-blendshapes-to-flame mappings/ folder)")


def _load_npy(path: Path) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)  # an object array would unpickle code
    except (ValueError, OSError, EOFError) as exc:
        raise ChannelError(f"{path}: not a readable .npy array ({exc})") from None
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "fiu":
        raise ChannelError(f"{path}: expected a numeric array, got {getattr(array, 'dtype', type(array))}")
    return array


def read_emage_matrix(path: Path) -> ArkitMap:
    matrix = _load_npy(path)
    if matrix.shape != EMAGE_SHAPE:
        raise ChannelError(f"{path}: shape {matrix.shape} is not EMAGE's mat_final layout {EMAGE_SHAPE} "
                           "(51 ARKit rows without tongueOut, alphabetical; 100 FLAME expressions + 3 jaw columns)")
    targets = tuple(f"expr_{i:02d}" for i in range(100)) + _JAW
    return ArkitMap(ALPHABETICAL_51, targets, matrix.T, np.zeros(len(targets)), source=f"{path.name} (EMAGE)")


def read_mediapipe_mappings(folder: Path) -> ArkitMap:
    blocks, targets = [], []
    for name, columns in MEDIAPIPE_FILES.items():
        path = folder / name
        if not path.is_file():
            if name == "bs2eye.npy":
                continue  # optional: a map without eyes
            raise ChannelError(f"{folder}: not a mediapipe-blendshapes-to-flame mappings folder (no {name})")
        array = _load_npy(path)
        wanted = (50, 100) if columns is None else (columns,)
        if array.ndim != 2 or array.shape[0] != 1 + len(ALPHABETICAL_51) or array.shape[1] not in wanted:
            expected = " or ".join(f"(52, {c})" for c in wanted)
            raise ChannelError(f"{path}: shape {array.shape}, expected {expected} (MediaPipe's 52 blendshape rows)")
        blocks.append(array[1:])  # row 0 is MediaPipe's "_neutral", which ARKit lacks
        if name == "bs2exp.npy":
            targets += [f"expr_{i:02d}" for i in range(array.shape[1])]
        else:
            targets += list(_JAW if name == "bs2jaw.npy" else _EYES)
    matrix = np.concatenate(blocks, axis=1).T
    return ArkitMap(ALPHABETICAL_51, tuple(targets), matrix, np.zeros(len(targets)),
                    source=f"{folder.name}/ (mediapipe-blendshapes-to-flame)")
