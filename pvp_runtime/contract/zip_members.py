"""Members of untrusted zip archives (``.pvp`` bundles, torch checkpoints), read with bounded memory.

A zip's central directory declares each member's size and compression method,
and a crafted archive can declare anything: 400 MB of deflated whitespace fits
in 400 kB of file.  So a member is read only after its declared size has been
checked against what the caller needs it to hold, only when it is stored or
deflated (what our writers and torch use; no bzip2/lzma decoders are run on
untrusted input), and through a read that stops one byte past the limit
whatever the header says.  Callers choose the limit (a manifest is small, a
tensor record holds exactly its tensor) and the error class.
"""

from __future__ import annotations

import zipfile
import zlib

from .errors import PVPError

READABLE_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflated"}


def checked_info(archive: zipfile.ZipFile, name: str, limit: int, source: str,
                 error: type[PVPError]) -> zipfile.ZipInfo:
    """The member's directory entry, once its method and declared size are acceptable.
    Raises ``KeyError`` when there is no such member (callers word that themselves)."""
    info = archive.getinfo(name)
    if info.compress_type not in READABLE_METHODS:
        raise error(f"{source}: {name} is compressed with zip method {info.compress_type}; only stored or "
                    f"deflated members are read")
    if info.file_size > limit:
        raise error(f"{source}: {name} declares {info.file_size} bytes, more than the {limit} it may hold; "
                    f"the file is corrupt or not what it claims to be")
    return info


def read_member(archive: zipfile.ZipFile, name: str, limit: int, source: str, error: type[PVPError]) -> bytes:
    """A member's bytes, at most ``limit`` of them.  ``KeyError`` when the member is missing."""
    info = checked_info(archive, name, limit, source, error)
    try:
        with archive.open(info) as handle:
            # One byte past the limit tells a member that holds more than its header admits.
            data = handle.read(limit + 1)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as exc:
        raise error(f"{source}: corrupt or truncated archive ({name}: {exc})") from None
    if len(data) > limit:
        raise error(f"{source}: {name} holds more than the {limit} bytes it may hold; the file is corrupt")
    return data
