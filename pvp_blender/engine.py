"""The "PVP Avatar" render engine.

F12 / ``blender -b -f N``: read the rig from the render depsgraph, get the
frame from the runtime, write it into the Render Result (scene-linear in the
scene's working space, premultiplied, bottom row first) with the provenance
stamp fields.  Blender's compositor and output settings (PNG 8/16-bit, EXR...)
take it from there.

Animation renders (Ctrl+F12 / ``-a``): on a frame that is not cached, the
engine also evaluates the rig for the next frames with ``RenderEngine.frame_set``
(the same depsgraph evaluation the frame itself gets, so drivers, NLA and
constraints are honoured) and renders them in one request; the frames after it
come from the cache.  See ``runtime_session``.

Failures (no rig, no subject, bad channel, runtime missing/crashed/hung) are
reported as errors, which stops the render before anything is written: a
failed frame is never saved as a blank image.
"""

from __future__ import annotations

import traceback

import bpy
import numpy as np

from ..pvp_runtime.contract.errors import ChannelError, PVPError
from . import frame_provenance
from . import rig as rig_module
from . import viewport, working_space
from .placement import frame_placement, stack_placements
from .preferences import runtime_options
from .runtime_session import SESSION, prefetch_frames
from .shot_frame import shot_frame

ENGINE_ID = "PVP_AVATAR"
# Built-in panels that make sense for this engine (colour management above all: tests and
# compositors compare under "Standard").
COMPATIBLE_PANELS = (
    "RENDER_PT_color_management", "RENDER_PT_color_management_display_settings",
    "RENDER_PT_color_management_curves", "RENDER_PT_color_management_white_balance",
    "RENDER_PT_format", "RENDER_PT_frame_range", "RENDER_PT_output",
)


def border_rect(render, width: int, height: int) -> tuple[int, int, int, int]:
    """(x, y, w, h) of the render region in pixels, y from the bottom, as Blender cuts it."""
    if not render.use_border:
        return 0, 0, width, height
    x0, x1 = int(render.border_min_x * width), int(render.border_max_x * width)
    y0, y1 = int(render.border_min_y * height), int(render.border_max_y * height)
    return x0, y0, x1 - x0, y1 - y0


class PVPAvatarEngine(bpy.types.RenderEngine):
    bl_idname = ENGINE_ID
    bl_label = "PVP Avatar"
    bl_use_preview = False
    bl_use_postprocess = True  # the compositor runs on our frames

    # -- final render

    def render(self, depsgraph):
        try:
            self._render(depsgraph)
        except PVPError as exc:
            self.report({"ERROR"}, f"PVP Avatar: {exc}")
        except Exception as exc:  # a bug, but still: fail the frame loudly rather than write a blank one
            traceback.print_exc()
            self.report({"ERROR"}, f"PVP Avatar: internal error ({type(exc).__name__}: {exc})")

    def _render(self, depsgraph):
        scene = depsgraph.scene
        to_working_space = working_space.working_space_matrix()  # refuses a working space it cannot produce, before any work
        width, height = self.resolution_x, self.resolution_y
        shot = shot_frame(depsgraph, width, height)  # what Preview Frame and the camera view ask for too
        rig, subject, frame, channels = shot.rig, shot.subject, shot.frame, shot.channels
        placement = shot.placement  # None: locked to the frame centre
        image = SESSION.lookup(subject, width, height, frame, channels, placement)
        if image is None:
            options = runtime_options()
            frames, rows, places = [frame], [channels], [placement]
            if self.is_animation and scene.pvp.prefetch:
                self._prefetch_channels(depsgraph, rig, subject, frame, options.batch_size, width * height * 16,
                                        frames, rows, places)
            if self.test_break():
                return
            image = SESSION.render(options, subject, frames, np.stack(rows), width, height,
                                   stack_placements(places))[0]
        self._write(scene, working_space.to_working_space(image, to_working_space), width, height)
        # On the full result: Blender writes its stamp fields into PNG text chunks and EXR headers.
        frame_provenance.stamp(self.get_result(), subject)

    def _prefetch_channels(self, depsgraph, rig, subject, frame, batch_size, frame_bytes, frames, rows, places):
        scene = depsgraph.scene
        ahead = prefetch_frames(frame, scene.frame_end, scene.frame_step, batch_size, frame_bytes)[1:]
        if not ahead:
            return
        try:
            for other in ahead:
                if self.test_break():
                    break
                self.frame_set(other, 0.0)
                try:
                    row = rig_module.read_channels(rig.evaluated_get(depsgraph), subject.layout, other)
                    place = frame_placement(depsgraph, rig, subject, self.resolution_x, self.resolution_y)
                except PVPError:
                    break  # that frame reports its own error when its turn comes
                if (place is None) != (places[0] is None):
                    break  # "Lock to Frame Centre" is keyed to change here: a batch is all placed or all centred
                rows.append(row)
                places.append(place)
                frames.append(other)
        finally:
            self.frame_set(frame, 0.0)

    def _write(self, scene, image: np.ndarray, width: int, height: int) -> None:
        x, y, w, h = border_rect(scene.render, width, height)
        result = self.begin_result(0, 0, width, height)
        try:
            if (result.resolution_x, result.resolution_y) != (w, h):
                raise PVPError(f"render region is {result.resolution_x} x {result.resolution_y}, expected {w} x {h}; "
                               "turn off Render Region to render the whole frame")
            # The runtime sends the top row first; Blender wants the bottom row first.
            region = image[::-1][y:y + h, x:x + w]
            result.layers[0].passes["Combined"].rect.foreach_set(np.ascontiguousarray(region).ravel())
        except BaseException:
            self.end_result(result, cancel=True)
            raise
        self.end_result(result)

    # -- viewport (needs a GPU context: an interactive Blender)

    def view_update(self, context, depsgraph):
        viewport.preview_for(context.region_data).update(depsgraph)

    def view_draw(self, context, depsgraph):
        viewport.preview_for(context.region_data).draw(self, context, depsgraph)


def register():
    bpy.utils.register_class(PVPAvatarEngine)
    for name in COMPATIBLE_PANELS:
        panel = getattr(bpy.types, name, None)
        if panel is not None and hasattr(panel, "COMPAT_ENGINES"):
            panel.COMPAT_ENGINES.add(ENGINE_ID)


def unregister():
    viewport.stop_previews()
    for name in COMPATIBLE_PANELS:
        panel = getattr(bpy.types, name, None)
        if panel is not None and hasattr(panel, "COMPAT_ENGINES"):
            panel.COMPAT_ENGINES.discard(ENGINE_ID)
    bpy.utils.unregister_class(PVPAvatarEngine)
