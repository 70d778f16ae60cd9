"""PNG text chunks: adding key/value metadata to an encoded PNG, and reading it back.

OpenCV encodes the pixels but cannot write text chunks, so the encoded bytes get them inserted
after the IHDR chunk.  ASCII/Latin-1 values go in ``tEXt``; anything else in ``iTXt`` (UTF-8), as
the PNG specification asks.  Reading accepts ``tEXt``, ``zTXt`` and ``iTXt``, and also the UTF-8
that Blender writes into ``tEXt``.  Reading checks the file's structure (signature, chunk CRCs,
IHDR first, IEND last) so a truncated or damaged file is reported, not half-read.
"""

from __future__ import annotations

import struct
import zlib
from typing import Mapping

from .contract.errors import ImageFileError

SIGNATURE = b"\x89PNG\r\n\x1a\n"
TEXT_CHUNKS = (b"tEXt", b"zTXt", b"iTXt")


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def text_chunk(key: str, value: str) -> bytes:
    name = key.encode("latin-1")
    if not 1 <= len(name) <= 79 or b"\0" in name:
        raise ValueError(f"PNG text key {key!r} must be 1-79 Latin-1 characters")
    try:
        return _chunk(b"tEXt", name + b"\0" + value.encode("latin-1"))
    except UnicodeEncodeError:  # flag 0 (uncompressed), method 0, no language tag, no translated key
        return _chunk(b"iTXt", name + b"\0\0\0\0\0" + value.encode("utf-8"))


def chunks(data: bytes, source: str) -> list[tuple[bytes, bytes]]:
    """(type, body) of every chunk, after checking the signature, each CRC, and IHDR ... IEND."""
    if not data.startswith(SIGNATURE):
        raise ImageFileError(f"{source}: not a PNG file (bad signature)")
    found, offset = [], len(SIGNATURE)
    while offset < len(data):
        if offset + 12 > len(data):
            raise ImageFileError(f"{source}: corrupt PNG, truncated after {len(found)} chunks")
        length, kind = struct.unpack(">I4s", data[offset:offset + 8])
        end = offset + 8 + length
        if end + 4 > len(data):
            raise ImageFileError(f"{source}: corrupt PNG, chunk {kind!r} runs past the end of the file")
        body = data[offset + 8:end]
        if struct.unpack(">I", data[end:end + 4])[0] != zlib.crc32(kind + body) & 0xFFFFFFFF:
            raise ImageFileError(f"{source}: corrupt PNG, chunk {kind.decode('latin-1')} fails its CRC check")
        found.append((kind, body))
        offset = end + 4
        if kind == b"IEND":
            break
    if not found or found[0][0] != b"IHDR":
        raise ImageFileError(f"{source}: corrupt PNG, it does not start with IHDR")
    if found[-1][0] != b"IEND":
        raise ImageFileError(f"{source}: corrupt PNG, truncated (no IEND chunk)")
    return found


def add_text(png: bytes, metadata: Mapping[str, str]) -> bytes:
    """The encoded PNG with one text chunk per entry, right after IHDR."""
    parts = chunks(png, "encoded PNG")
    text = b"".join(text_chunk(key, value) for key, value in metadata.items())
    return SIGNATURE + _chunk(*parts[0]) + text + b"".join(_chunk(kind, body) for kind, body in parts[1:])


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def read_text(data: bytes, source: str) -> dict[str, str]:
    """Every text chunk's key and value (a checked file; later chunks win on repeated keys)."""
    text = {}
    for kind, body in chunks(data, source):
        if kind not in TEXT_CHUNKS:
            continue
        key, sep, rest = body.partition(b"\0")
        try:
            if not sep:
                raise ValueError("no separator")
            if kind == b"tEXt":
                value = _decode(rest)
            elif kind == b"zTXt":
                value = _decode(zlib.decompress(rest[1:]))
            else:
                compressed, rest = rest[0], rest[2:]
                _language, _, rest = rest.partition(b"\0")
                _translated, _, rest = rest.partition(b"\0")
                value = (zlib.decompress(rest) if compressed else rest).decode("utf-8")
        except (ValueError, IndexError, zlib.error) as exc:
            raise ImageFileError(f"{source}: corrupt PNG text chunk {key[:40]!r} ({exc})") from None
        text[key.decode("latin-1")] = value
    return text
