"""User-facing errors.

Every error a user can cause by what they feed the product derives from
:class:`PVPError`; its message is one line naming the file, frame or channel.
The CLI prints it without a traceback and exits non-zero; the Blender engine
reports it and fails the render.  Anything else escaping is a bug.
"""


class PVPError(Exception):
    """A problem with the user's input or environment, explained in one line."""

    exit_code = 2


class ChannelError(PVPError):
    """Bad rig channel values or a bad channel file."""


class BundleError(PVPError):
    """A subject bundle that is missing, corrupt, or from a newer version."""


class RuntimeProcessError(PVPError):
    """The runtime process could not be started, crashed, or stopped answering."""

    exit_code = 3


class AssetError(PVPError):
    """A third-party file (checkpoint, face model, tracker output) of the wrong kind, truncated,
    with unexpected shapes, or one that would need code to run to be read."""


class ImageFileError(PVPError):
    """A frame file (PNG, EXR) that is not readable, truncated or damaged, or carries no PVP metadata."""
