"""The runtime protocol: how a client (the Blender extension) talks to ``pvp_runtime.server``.

Transport is any ordered byte stream; the extension uses the server's
stdin/stdout pipes, so the server dies with Blender (EOF on stdin).  Every
message, in both directions, is::

    magic    4 bytes   b"PVPm"
    hlen     uint32    little-endian, length of the header
    plen     uint64    little-endian, length of the payload
    header   hlen bytes: a UTF-8 JSON object with at least "type"
    payload  plen bytes: raw array data (little-endian float32, C order) or empty

Nothing is ever pickled.  Each request gets exactly one reply, in order.
Lengths are checked before anything is allocated for them: a header holds at
most ``MAX_HEADER_BYTES``, a request's payload at most
``MAX_REQUEST_PAYLOAD_BYTES``, and the client accepts a reply payload only as
large as the frames it asked for.

====================  ==========================================  =====================================
request               header fields                               reply
====================  ==========================================  =====================================
``hello``             ``protocol`` (int), ``client`` (str)        ``hello``: ``protocol``, ``runtime``,
                                                                  ``torch``, ``cuda``, ``pid``,
                                                                  ``threads`` (torch intra-op threads)
``load``              ``bundle`` (absolute path), ``device``,     ``loaded``: ``name``, ``resolution``,
                      ``half`` (bool)                             ``num_expressions``, ``channels``,
                                                                  ``device``
``render``            ``frames`` F, ``channels`` C, ``width``,    ``frames``: ``count``, ``width``,
                      ``height``; payload float32 [F, C]          ``height``; payload float32
                                                                  [F, height, width, 4]
``free``              (none): drop the subject, release memory    ``freed``
``shutdown``          (none)                                      ``bye``, then the server exits
====================  ==========================================  =====================================

Rendered pixels are scene-linear RGBA, alpha premultiplied, top row first: the
square avatar scaled to fit ``width`` x ``height`` and centred, transparent
outside (see ``pvp_runtime.canvas``).  Any request may instead get an ``error``
reply: ``error`` (the :mod:`.errors` class name) and ``message`` (one line).
A version mismatch is answered with an error at ``hello``.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from . import errors
from .errors import RuntimeProcessError

PROTOCOL_VERSION = 2  # 2: render requests carry head angles as channels.HEAD_ROTATION (roll outermost)
MAGIC = b"PVPm"
PREFIX = struct.Struct("<4sIQ")
MAX_HEADER_BYTES = 1 << 20
# A render request is [F, C] float32: 256 MiB is 150,000 frames of a 400-expression subject.
MAX_REQUEST_PAYLOAD_BYTES = 1 << 28
FLOAT32 = np.dtype("<f4")

# Message types.
HELLO, LOAD, LOADED, RENDER, FRAMES, FREE, FREED, SHUTDOWN, BYE, ERROR = (
    "hello", "load", "loaded", "render", "frames", "free", "freed", "shutdown", "bye", "error")
REQUESTS = (HELLO, LOAD, RENDER, FREE, SHUTDOWN)


class ProtocolError(RuntimeProcessError):
    """The byte stream does not follow this protocol (wrong program, corrupted pipe)."""


class ConnectionClosed(RuntimeProcessError):
    """The other side closed the stream between messages."""


@dataclass
class Message:
    type: str
    fields: dict = field(default_factory=dict)
    payload: bytes = b""

    def require(self, name: str, kind: type | tuple):
        value = self.fields.get(name)
        if not isinstance(value, kind) or isinstance(value, bool) and kind is int:
            raise ProtocolError(f"'{self.type}' message: field '{name}' is missing or not {_kind_name(kind)}")
        return value


def _kind_name(kind) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


def encode_message(kind: str, fields: dict | None = None, payload: bytes | memoryview = b"") -> list:
    """The message as a list of buffers (prefix + header, payload), so big payloads are not copied."""
    header = json.dumps({**(fields or {}), "type": kind}, separators=(",", ":")).encode("utf-8")
    if len(header) > MAX_HEADER_BYTES:
        raise ProtocolError(f"'{kind}' message header is too large ({len(header)} bytes)")
    payload = memoryview(payload).cast("B")
    return [PREFIX.pack(MAGIC, len(header), payload.nbytes) + header, payload]


def write_message(write: Callable[[bytes], object], kind: str, fields: dict | None = None,
                  payload: bytes | memoryview = b"") -> None:
    for part in encode_message(kind, fields, payload):
        if len(part):
            write(part)


def read_message(read_exact: Callable[[int], bytes],
                 max_payload: int | Callable[[], int] = MAX_REQUEST_PAYLOAD_BYTES) -> Message:
    """Read one message.  ``read_exact(n)`` returns exactly n bytes, or fewer only at end of stream.

    ``max_payload`` (bytes, or a function asked once the prefix has arrived) bounds the payload:
    a longer claim is refused before anything is allocated for it.
    """
    prefix = read_exact(PREFIX.size)
    if not prefix:
        raise ConnectionClosed("the other side closed the connection")
    if len(prefix) < PREFIX.size:
        raise ProtocolError("stream ended in the middle of a message prefix")
    magic, header_len, payload_len = PREFIX.unpack(prefix)
    if magic != MAGIC:
        raise ProtocolError(f"not a PVP runtime message (starts with {magic!r}); "
                            "is something else writing to the runtime's output?")
    if header_len > MAX_HEADER_BYTES:
        raise ProtocolError(f"message header of {header_len} bytes is over the {MAX_HEADER_BYTES}-byte limit")
    limit = max_payload() if callable(max_payload) else max_payload
    if payload_len > limit:
        raise ProtocolError(f"message payload of {payload_len} bytes is over the {limit}-byte limit for it")
    raw_header = read_exact(header_len)
    if len(raw_header) < header_len:
        raise ProtocolError("stream ended in the middle of a message header")
    try:
        header = json.loads(raw_header.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"message header is not JSON ({exc})") from None
    if not isinstance(header, dict) or not isinstance(header.get("type"), str):
        raise ProtocolError("message header has no 'type'")
    payload = read_exact(payload_len) if payload_len else b""
    if len(payload) < payload_len:
        raise ProtocolError("stream ended in the middle of a message payload")
    kind = header.pop("type")
    return Message(kind, header, payload)


def stream_reader(stream) -> Callable[[int], bytes | bytearray]:
    """``read_exact`` for a binary file object (a pipe).  Returns the filled bytearray itself,
    so a large frame payload is not copied again."""
    def read_exact(n: int) -> bytes:
        buffer = bytearray(n)
        view = memoryview(buffer)
        got = 0
        while got < n:
            count = stream.readinto(view[got:])
            if not count:
                break
            got += count
        return bytes(buffer[:got]) if got < n else buffer
    return read_exact


# --------------------------------------------------------------------------- arrays

def array_to_payload(array: np.ndarray) -> memoryview:
    """float32 little-endian, C order, as a buffer (no copy when it already is)."""
    return memoryview(np.ascontiguousarray(array, dtype=FLOAT32)).cast("B")


def array_from_payload(payload: bytes, shape: tuple[int, ...], what: str) -> np.ndarray:
    if any(not isinstance(n, int) or n < 0 for n in shape):
        raise ProtocolError(f"{what}: bad array shape {shape}")
    expected = int(np.prod(shape, dtype=np.int64)) * FLOAT32.itemsize
    if len(payload) != expected:
        raise ProtocolError(f"{what}: payload holds {len(payload)} bytes, shape {list(shape)} needs {expected}")
    return np.frombuffer(payload, dtype=FLOAT32).reshape(shape)


# --------------------------------------------------------------------------- placement

# A render request may carry "placement": one 2x3 affine per frame (crop pixels -> canvas pixels,
# y down; ``pvp_runtime/canvas.py: warp_on_canvas``), in the JSON header.  Without it the crop is
# centred as before.  The reply then says "placement": PLACED, so a client never takes a centred
# frame from a runtime that predates placement for a placed one (no new protocol version needed:
# an older client never sends it).
PLACEMENT = "placement"
PLACED = "affine"


def placement_fields(placement: np.ndarray | None) -> dict:
    if placement is None:
        return {}
    array = np.asarray(placement, dtype=np.float64)
    return {PLACEMENT: array.reshape(len(array), 6).tolist()}


def placement_from_fields(message: Message, count: int) -> np.ndarray | None:
    """The request's ``[count, 2, 3]`` affines, or None; a malformed one is a ProtocolError."""
    value = message.fields.get(PLACEMENT)
    if value is None:
        return None
    try:
        array = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        array = np.zeros(0)
    if array.shape != (count, 6) or not np.isfinite(array).all():
        raise ProtocolError(f"'{message.type}' message: field '{PLACEMENT}' must hold {count} rows of 6 finite numbers")
    return array.reshape(count, 2, 3)


# --------------------------------------------------------------------------- errors

ERROR_CLASSES = {cls.__name__: cls for cls in (errors.PVPError, errors.ChannelError, errors.BundleError,
                                               errors.RuntimeProcessError)}


def error_fields(exc: BaseException) -> dict:
    """The ``error`` reply for an exception (the class name travels, never the object)."""
    name = type(exc).__name__ if type(exc).__name__ in ERROR_CLASSES else (
        "PVPError" if isinstance(exc, errors.PVPError) else "RuntimeProcessError")
    message = " ".join(str(exc).split()) or type(exc).__name__
    return {"error": name, "message": message}


def raise_error_reply(message: Message, prefix: str = "") -> None:
    """Raise the error an ``error`` reply describes."""
    cls = ERROR_CLASSES.get(message.fields.get("error"), RuntimeProcessError)
    raise cls(prefix + str(message.fields.get("message", "the runtime reported an unknown error")))
