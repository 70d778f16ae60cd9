"""OpenEXR: writing half-float RGBA frames with string metadata, and reading any EXR's header.

OpenCV writes EXR pixels but no custom header attributes, so frames are written here: a
single-part scanline file, channels A, B, G, R as HALF, ZIP compression (16 lines per chunk,
OpenEXR's byte reordering and delta predictor before zlib), Rec.709 chromaticities (the
values are scene-linear Rec.709), and one ``string`` attribute per metadata entry.

Reading (for ``pvp verify``) parses the header of any EXR, Blender's included, and checks that
the chunk offset table and every chunk it points to lie inside the file, so truncation and a
damaged header are reported.  Pixels are not decoded (tests read them with OpenCV and Blender).
"""

from __future__ import annotations

import struct
import zlib
from typing import Mapping

import numpy as np

from .contract.errors import ImageFileError

MAGIC = 20000630
MAGIC_BYTES = struct.pack("<i", MAGIC)  # what an EXR file starts with
VERSION = 2
SINGLE_PART_SCANLINE_FLAGS = 0
TILED, LONG_NAMES, DEEP, MULTIPART = 0x200, 0x400, 0x800, 0x1000
HALF = 1
NO_COMPRESSION, ZIP = 0, 3
# Scanlines per chunk for each compression (OpenEXR's table; the ids are the file's byte).
LINES_PER_CHUNK = {0: 1, 1: 1, 2: 1, 3: 16, 4: 32, 5: 16, 6: 32, 7: 32, 8: 32, 9: 256}
REC709_D65 = (0.64, 0.33, 0.30, 0.60, 0.15, 0.06, 0.3127, 0.3290)  # red, green, blue, white x/y


def _attribute(name: str, kind: str, value: bytes) -> bytes:
    return name.encode() + b"\0" + kind.encode() + b"\0" + struct.pack("<i", len(value)) + value


def _reorder_and_predict(raw: bytes) -> bytes:
    """OpenEXR's ZIP preprocessing: even bytes then odd bytes, then byte deltas (+128)."""
    data = np.frombuffer(raw, dtype=np.uint8)
    shuffled = np.concatenate([data[0::2], data[1::2]])
    deltas = shuffled.astype(np.int16)
    deltas[1:] = shuffled[1:].astype(np.int16) - shuffled[:-1].astype(np.int16) + 128
    return (deltas & 0xFF).astype(np.uint8).tobytes()


def encode_exr(rgba: np.ndarray, metadata: Mapping[str, str] | None = None, compression: int = ZIP) -> bytes:
    """An EXR file of an [H, W, 4] float RGBA image (top row first), stored as half floats."""
    if rgba.ndim != 3 or rgba.shape[2] != 4:
        raise ValueError(f"expected an [H, W, 4] RGBA image, got shape {rgba.shape}")
    if compression not in (NO_COMPRESSION, ZIP):
        raise ValueError("compression must be NO_COMPRESSION or ZIP")
    height, width = rgba.shape[:2]
    half = rgba.astype("<f2")
    planar = half[..., [3, 2, 1, 0]]  # OpenEXR stores channels sorted by name: A, B, G, R
    channels = b"".join(name + b"\0" + struct.pack("<iB3xii", HALF, 0, 1, 1) for name in (b"A", b"B", b"G", b"R"))
    window = struct.pack("<4i", 0, 0, width - 1, height - 1)
    attributes = {
        "channels": ("chlist", channels + b"\0"),
        "chromaticities": ("chromaticities", struct.pack("<8f", *REC709_D65)),
        "compression": ("compression", bytes([compression])),
        "dataWindow": ("box2i", window),
        "displayWindow": ("box2i", window),
        "lineOrder": ("lineOrder", b"\0"),
        "pixelAspectRatio": ("float", struct.pack("<f", 1.0)),
        "screenWindowCenter": ("v2f", struct.pack("<2f", 0.0, 0.0)),
        "screenWindowWidth": ("float", struct.pack("<f", 1.0)),
    }
    for key, value in (metadata or {}).items():
        if key in attributes or not key or "\0" in key or len(key.encode()) > 31:
            raise ValueError(f"EXR metadata key {key!r} is reserved, empty or longer than 31 bytes")
        attributes[key] = ("string", str(value).encode("utf-8"))
    header = struct.pack("<ii", MAGIC, VERSION | SINGLE_PART_SCANLINE_FLAGS)
    header += b"".join(_attribute(name, kind, value) for name, (kind, value) in sorted(attributes.items())) + b"\0"
    lines = LINES_PER_CHUNK[compression]
    blocks = []
    for y in range(0, height, lines):
        # Within a chunk: line by line, and within a line, channel by channel.
        raw = np.ascontiguousarray(planar[y:y + lines].transpose(0, 2, 1)).tobytes()
        if compression == ZIP:
            packed = zlib.compress(_reorder_and_predict(raw), 6)
            raw = packed if len(packed) < len(raw) else raw  # readers take an uncompressed-size chunk as raw
        blocks.append(struct.pack("<ii", y, len(raw)) + raw)
    offset = len(header) + 8 * len(blocks)
    table = []
    for block in blocks:
        table.append(offset)
        offset += len(block)
    return header + struct.pack(f"<{len(table)}Q", *table) + b"".join(blocks)


def _parse_header(data: bytes, source: str) -> tuple[dict[str, tuple[str, bytes]], int, int]:
    """(attributes by name as (type, raw value), flags, offset just past the header)."""
    def corrupt(what: str) -> ImageFileError:
        return ImageFileError(f"{source}: corrupt EXR, {what}")

    if len(data) < 8 or struct.unpack("<i", data[:4])[0] != MAGIC:
        raise ImageFileError(f"{source}: not an OpenEXR file (bad magic number)")
    version = struct.unpack("<i", data[4:8])[0]
    if version & 0xFF != VERSION:
        raise corrupt(f"unknown version {version & 0xFF}")
    flags = version & ~0xFF
    attributes, offset = {}, 8
    while True:
        if offset >= len(data):
            raise corrupt("the header is truncated")
        if data[offset] == 0:
            return attributes, flags, offset + 1
        try:
            name_end = data.index(b"\0", offset)
            kind_end = data.index(b"\0", name_end + 1)
        except ValueError:
            raise corrupt("the header is truncated") from None
        if kind_end + 5 > len(data):
            raise corrupt("the header is truncated")
        size = struct.unpack("<i", data[kind_end + 1:kind_end + 5])[0]
        start = kind_end + 5
        if size < 0 or start + size > len(data):
            raise corrupt(f"attribute {data[offset:name_end][:40]!r} runs past the end of the file")
        attributes[data[offset:name_end].decode("utf-8", "replace")] = (
            data[name_end + 1:kind_end].decode("utf-8", "replace"), data[start:start + size])
        offset = start + size


def _check_chunks(data: bytes, attributes: dict, offset: int, source: str) -> None:
    """Every chunk the offset table lists lies inside the file (single-part scanline files)."""
    try:
        x0, y0, x1, y1 = struct.unpack("<4i", attributes["dataWindow"][1])
        compression = attributes["compression"][1][0]
    except (KeyError, struct.error, IndexError):
        raise ImageFileError(f"{source}: corrupt EXR, no valid dataWindow or compression attribute") from None
    if compression not in LINES_PER_CHUNK or x1 < x0 or y1 < y0:
        raise ImageFileError(f"{source}: corrupt EXR, unknown compression {compression} or empty data window")
    count = -(-(y1 - y0 + 1) // LINES_PER_CHUNK[compression])
    if offset + 8 * count > len(data):
        raise ImageFileError(f"{source}: corrupt EXR, truncated in its chunk offset table")
    table = struct.unpack(f"<{count}Q", data[offset:offset + 8 * count])
    for index, start in enumerate(table):
        if not offset + 8 * count <= start <= len(data) - 8:
            raise ImageFileError(f"{source}: corrupt EXR, truncated (chunk {index} of {count} is missing)")
        size = struct.unpack("<i", data[start + 4:start + 8])[0]
        if size < 0 or start + 8 + size > len(data):
            raise ImageFileError(f"{source}: corrupt EXR, truncated (chunk {index} of {count} is cut short)")


def read_exr_header(data: bytes, source: str) -> dict[str, object]:
    """The header of a checked EXR: ``string`` attributes as text, ``channels`` as a list of names,
    other attributes as their type name."""
    attributes, flags, offset = _parse_header(data, source)
    if not flags & (TILED | DEEP | MULTIPART):
        _check_chunks(data, attributes, offset, source)
    header: dict[str, object] = {}
    for name, (kind, value) in attributes.items():
        if kind == "string":
            header[name] = value.decode("utf-8", "replace")
        elif kind == "chlist":
            header[name] = [entry.decode("utf-8", "replace") for entry in _channel_names(value)]
        else:
            header[name] = kind
    return header


def _channel_names(chlist: bytes) -> list[bytes]:
    names, offset = [], 0
    while offset < len(chlist) and chlist[offset] != 0:
        end = chlist.index(b"\0", offset)
        names.append(chlist[offset:end])
        offset = end + 1 + 16  # pixel type, pLinear + 3 reserved bytes, x and y sampling
    return names
