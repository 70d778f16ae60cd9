"""Showing the avatar outside a final render: the Image Editor preview and the 3D viewport.

Both render on a worker thread so the UI never waits for the runtime (nor for finding an
interpreter, which happens where the runtime starts); a timer picks the result up on the main
thread.  Each has one :class:`LatestOnlyWorker`: while the animator scrubs, only the render in
progress and the newest request exist, never a queue.  In background mode (no event loop,
timers never fire) Preview Frame renders synchronously instead.

Preview Frame and the viewport's camera view show what F12 renders: the frame at the render
size, placed where the camera sees the rig (``shot_frame``, the engine's own request).  Outside
camera view there is no shot frame to show, so the viewport draws the unplaced crop, centred.
Both hold what F12's Render Result holds: the runtime's Rec.709 linear converted to the scene's
working space (``working_space``), which Blender's view transform then shows as it shows F12's.
"""

from __future__ import annotations

import bpy
import numpy as np

from ..pvp_runtime.contract.errors import PVPError
from . import rig as rig_module
from . import working_space
from .latest_only import LatestOnlyWorker
from .runtime_session import SESSION
from .shot_frame import render_shot_frame, render_size, shot_frame

PREVIEW_IMAGE = "PVP Preview"
POLL_SECONDS = 0.05
IMAGE_RENDERS = LatestOnlyWorker("pvp-preview-frame")  # the Preview Frame operator's renders


def current_frame_request(scene, depsgraph):
    """(subject, channels) of the scene's rig at its current frame, from an evaluated depsgraph."""
    rig = rig_module.scene_rig(scene)
    subject = SESSION.subject(rig_module.subject_file(rig))
    channels = rig_module.read_channels(rig.evaluated_get(depsgraph), subject.layout, scene.frame_current)
    return subject, channels


def render_native(options, subject, frame: int, channels: np.ndarray) -> np.ndarray:
    """One frame at the subject's own resolution, ``[S, S, 4]`` linear premultiplied, top row first."""
    size = subject.resolution
    return SESSION.render(options, subject, [frame], channels[None], size, size)[0]


def write_image(pixels: np.ndarray, name: str = PREVIEW_IMAGE):
    """Put top-row-first Rec.709 linear premultiplied RGBA into a float Image datablock, in the
    working space as F12's Render Result (a float image's pixels are scene-linear), and show it in
    every Image Editor.  A working space it cannot produce raises PVPError before any image changes."""
    pixels = working_space.to_working_space(pixels, working_space.working_space_matrix())
    height, width = pixels.shape[:2]
    image = bpy.data.images.get(name)
    if image is None or tuple(image.size) != (width, height) or not image.is_float:
        if image is not None:
            bpy.data.images.remove(image)
        image = bpy.data.images.new(name, width, height, alpha=True, float_buffer=True)
    image.alpha_mode = "PREMUL"
    image.pixels.foreach_set(np.ascontiguousarray(pixels[::-1], dtype=np.float32).ravel())
    image.update()
    for window in getattr(bpy.context.window_manager, "windows", []):
        for area in window.screen.areas:
            if area.type == "IMAGE_EDITOR":
                area.spaces.active.image = image
                area.tag_redraw()
    return image


def fit_in_region(size: int, region_width: int, region_height: int) -> tuple[int, int, int]:
    """(x, y, side) of the square avatar drawn as large as fits, centred."""
    side = max(1, min(region_width, region_height))
    return (region_width - side) // 2, (region_height - side) // 2, side


def in_camera_view(rv3d) -> bool:
    return rv3d is not None and rv3d.view_perspective == "CAMERA"


def camera_frame_rect(depsgraph, region, rv3d) -> tuple[float, float, float, float] | None:
    """(x, y, width, height) in region pixels (y up) of the scene camera's frame as this view
    shows it (the passepartout's hole), or None without a camera."""
    from bpy_extras.view3d_utils import location_3d_to_region_2d
    scene = depsgraph.scene
    if scene.camera is None:
        return None
    camera = scene.camera.evaluated_get(depsgraph)
    # The frame's corners for the scene's render size, pixel aspect, sensor fit and shift.
    corners = [location_3d_to_region_2d(region, rv3d, camera.matrix_world @ corner)
               for corner in camera.data.view_frame(scene=scene)]
    if any(corner is None for corner in corners):
        return None
    xs, ys = [corner.x for corner in corners], [corner.y for corner in corners]
    return min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)


def make_texture(pixels: np.ndarray):
    """A GPU texture of top-row-first premultiplied RGBA (GPU textures are bottom row first)."""
    import gpu
    height, width = pixels.shape[:2]
    flat = np.ascontiguousarray(pixels[::-1], dtype=np.float32).ravel()
    buffer = gpu.types.Buffer("FLOAT", flat.size, flat)
    return gpu.types.GPUTexture((width, height), format="RGBA16F", data=buffer)


def draw_texture(texture, x: float, y: float, width: float, height: float) -> None:
    """Draw premultiplied linear colour; the caller binds the display-space shader for colour management."""
    import gpu
    from gpu_extras.presets import draw_texture_2d
    gpu.state.blend_set("ALPHA_PREMULT")
    draw_texture_2d(texture, (x, y), width, height)
    gpu.state.blend_set("NONE")


class ViewportPreview:
    """The 3D viewport in "Rendered" shading: re-render when what it shows changes.

    One for views outside camera view (the crop at the subject's resolution, centred and as
    large as fits) and one for camera views (the final render's frame over the camera frame),
    so two viewports, one in camera view and one not, do not undo each other's request.
    """

    def __init__(self, name: str = "pvp-viewport", in_camera: bool = False):
        self.in_camera = in_camera
        self.requested: tuple | None = None
        self.pixels: np.ndarray | None = None
        self.texture = None
        self.texture_space = None  # the working-space matrix (bytes) the texture was converted with
        self.message = ""
        self.pending = None  # the Future of the newest request, until the timer picks it up
        self._renders = LatestOnlyWorker(name)
        # One bound method for the timer: every `self._poll` is a new object, which
        # `timers.is_registered` never recognises, so each update would register another timer.
        self._poll_timer = self._poll

    def update(self, depsgraph) -> None:
        """On every depsgraph change (UI thread): ask for the current frame if its channels changed."""
        try:
            key, job, args = self._request(depsgraph)
        except PVPError as exc:
            self.message = str(exc)
            return
        if key == self.requested:
            return
        self.requested = key
        self.pending = self._renders.submit(job, *args)
        if not bpy.app.timers.is_registered(self._poll_timer):
            bpy.app.timers.register(self._poll_timer, first_interval=POLL_SECONDS)

    def _request(self, depsgraph) -> tuple:
        """(key, job, args): what this view shows now, and the render that makes it."""
        from .preferences import runtime_options
        scene = depsgraph.scene
        if self.in_camera:  # what F12 renders: the same request at the same size
            shot = shot_frame(depsgraph, *render_size(scene.render))
            placed = b"" if shot.placement is None else shot.placement.tobytes()
            key = (shot.subject.path, shot.channels.tobytes(), shot.width, shot.height, placed)
            return key, render_shot_frame, (runtime_options(), shot)  # runtime_options probes nothing
        subject, channels = current_frame_request(scene, depsgraph)
        return ((subject.path, channels.tobytes()), render_native,
                (runtime_options(), subject, scene.frame_current, channels))

    def stop(self) -> None:
        """Stop waiting for the pending render (the add-on is being disabled)."""
        self.pending = None
        if bpy.app.timers.is_registered(self._poll_timer):
            bpy.app.timers.unregister(self._poll_timer)

    def _poll(self):
        future = self.pending
        if future is None:
            return None
        if not future.done():
            return POLL_SECONDS
        self.pending = None
        try:
            self.pixels = future.result()
            self.texture = None  # rebuilt on the drawing thread's GPU context
            self.message = ""
        except PVPError as exc:
            self.message = str(exc)
        for window in bpy.context.window_manager.windows:
            for area in window.screen.areas:
                if area.type == "VIEW_3D":
                    area.tag_redraw()
        return None

    def draw(self, engine, context, depsgraph) -> None:
        # A view just switched into or out of camera view last asked the other preview: ask this one now.
        self.update(depsgraph)
        rect = self.layout(depsgraph, context.region, context.region_data)
        if rect is None:
            return
        try:
            texture = self.working_space_texture()
        except PVPError as exc:
            self.message = str(exc)
            return
        engine.bind_display_space_shader(depsgraph.scene)
        draw_texture(texture, *rect)
        engine.unbind_display_space_shader()

    def working_space_texture(self):
        """The newest pixels as a texture in the working space (GPU context needed).  The viewport
        draws a scene-linear buffer and applies the view transform to all of it, as to F12's
        result, so the texture holds what the Render Result would.  Rebuilt when the pixels or the
        file's working space change (raises PVPError for a working space it cannot produce)."""
        to_working = working_space.working_space_matrix()
        space = None if to_working is None else to_working.tobytes()
        if self.texture is None or space != self.texture_space:
            self.texture = make_texture(working_space.to_working_space(self.pixels, to_working))
            self.texture_space = space
        return self.texture

    def layout(self, depsgraph, region, rv3d) -> tuple | None:
        """(x, y, width, height) in region pixels where the newest pixels go, or None (none yet)."""
        if self.pixels is None:
            return None
        if self.in_camera:
            return camera_frame_rect(depsgraph, region, rv3d)
        x, y, side = fit_in_region(self.pixels.shape[0], region.width, region.height)
        return x, y, side, side


PREVIEW = ViewportPreview()  # outside camera view
CAMERA_PREVIEW = ViewportPreview("pvp-viewport-camera", in_camera=True)


def preview_for(rv3d) -> ViewportPreview:
    return CAMERA_PREVIEW if in_camera_view(rv3d) else PREVIEW


def stop_previews() -> None:
    for preview in (PREVIEW, CAMERA_PREVIEW):
        preview.stop()
