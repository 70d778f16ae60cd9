"""What the final render asks the runtime for at a frame, in one place.

F12 (the engine), Preview Frame and the 3D viewport's camera view all read the rig and the
camera through :func:`shot_frame`, so the preview shows the avatar where the render puts it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..pvp_runtime.contract.subject_manifest import SubjectSummary
from . import rig as rig_module
from .placement import frame_placement
from .runtime_session import SESSION


@dataclass(frozen=True)
class ShotFrame:
    rig: object
    subject: SubjectSummary
    frame: int
    channels: np.ndarray           # [C]
    width: int                     # canvas pixels
    height: int
    placement: np.ndarray | None   # [2, 3] crop px -> canvas px, or None: centred (Lock to Frame Centre)


def render_size(render) -> tuple[int, int]:
    """The final render's size in pixels: resolution times percentage, truncated as Blender does."""
    percentage = render.resolution_percentage
    return (max(1, render.resolution_x * percentage // 100), max(1, render.resolution_y * percentage // 100))


def shot_frame(depsgraph, width: int, height: int) -> ShotFrame:
    """The scene's rig at its current frame, placed on a ``width`` x ``height`` canvas as the
    final render places it (raises PVPError for a missing rig, subject, channel or camera)."""
    scene = depsgraph.scene
    rig = rig_module.scene_rig(scene)
    subject = SESSION.subject(rig_module.subject_file(rig))
    frame = scene.frame_current
    channels = rig_module.read_channels(rig.evaluated_get(depsgraph), subject.layout, frame)
    placement = frame_placement(depsgraph, rig, subject, width, height)
    return ShotFrame(rig, subject, frame, channels, width, height, placement)


def render_shot_frame(options, shot: ShotFrame) -> np.ndarray:
    """One frame as the final render draws it: ``[height, width, 4]`` linear premultiplied, top row first."""
    placement = None if shot.placement is None else shot.placement[None]
    return SESSION.render(options, shot.subject, [shot.frame], shot.channels[None], shot.width, shot.height,
                          placement)[0]
