"""The runtime renders scene-linear Rec.709; Blender's working space may be another linear RGB space.

Blender 5.0 lets a file choose its working space (Linear Rec.709, Linear Rec.2020, ACEScg); on
4.2 and 4.5 it is the OpenColorIO config's ``scene_linear`` role.  Blender itself says how to get
there: ``mathutils.Color.from_rec709_linear_to_scene_linear`` follows both.  That conversion,
probed on the unit colours, is a 3x3 matrix applied to the premultiplied pixels (a linear map
commutes with premultiplication).  A working space the probe shows is not linear RGB is refused.

F12's Render Result, Preview Frame's image and the viewport's texture all hold working-space
values (Blender applies the view transform to each), so all three convert here.  Only
:func:`working_space_matrix` reads Blender (on the main thread); the rest is numpy, testable
without Blender.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from ..pvp_runtime.contract.errors import PVPError

LINEARITY_TOLERANCE = 1e-4


def conversion_matrix(convert: Callable[[Sequence[float]], Sequence[float]], name: str) -> np.ndarray | None:
    """The 3x3 matrix of ``convert`` (Rec.709 linear -> working space), or None for the identity."""
    matrix = np.array([convert(unit) for unit in np.eye(3).tolist()], dtype=np.float64).T
    probes = np.array([[0.0, 0.0, 0.0], [0.5, 0.25, 0.125], [2.0, 0.75, 0.01]])
    mapped = np.array([convert(rgb) for rgb in probes.tolist()], dtype=np.float64)
    if (not np.all(np.isfinite(matrix)) or
            np.abs(mapped - probes @ matrix.T).max() > LINEARITY_TOLERANCE * max(1.0, np.abs(mapped).max())):
        raise PVPError(f"the scene's working colour space ({name}) is not a linear RGB space; PVP Avatar renders "
                       "scene-linear Rec.709 and cannot produce it (use Linear Rec.709, Linear Rec.2020 or ACEScg)")
    if np.abs(matrix - np.eye(3)).max() <= LINEARITY_TOLERANCE:
        return None
    return matrix.astype(np.float32)


def working_space_matrix() -> np.ndarray | None:
    """Rec.709 linear -> the open file's working space, as Blender converts it (None: the same space)."""
    import bpy  # here, not at the top: the module's numpy part imports without Blender
    from mathutils import Color
    colorspace = getattr(bpy.data, "colorspace", None)  # 5.0: the file chooses its working space
    name = colorspace.working_space if colorspace is not None else "the colour config's scene_linear role"
    return conversion_matrix(lambda rgb: tuple(Color(rgb).from_rec709_linear_to_scene_linear()), name)


def to_working_space(image: np.ndarray, matrix: np.ndarray | None) -> np.ndarray:
    """[..., 4] premultiplied Rec.709-linear RGBA in the working space (alpha unchanged)."""
    if matrix is None:
        return image
    out = image.copy()
    out[..., :3] = image[..., :3] @ matrix.T
    return out
