"""Read torch checkpoints of every vintage without running code they carry.

Three containers reach us:

* **zip** (``torch.save`` since torch 1.6: rosinality ``.pt``, e4e, PTI's
  ``torch.save(G)``, recent ``.pth``): ``<name>/data.pkl`` whose storages are
  persistent ids naming raw files ``<name>/data/<key>`` in the archive.
* **legacy** ``torch.save`` (before 1.6, e.g. ``model_ir_se50.pth``): a magic
  number, a pickle whose storages are persistent ids, then the raw storage
  bytes.  Read here through :mod:`pvp_runtime.formats.safe_pickle`.
* **plain pickle** (NVlabs StyleGAN2-ADA ``.pkl``): ``pickle.dump`` of modules;
  every tensor's storage is itself a legacy ``torch.save`` blob behind
  ``torch.storage._load_from_bytes``, read by the same legacy reader.

All three pickles go through :mod:`pvp_runtime.formats.safe_pickle`'s
allow-list, and tensors are rebuilt by our own reconstructors (a strided view
of a flat storage), so no function named by the file is ever called.  (We do
not use ``torch.load(weights_only=True)``: it refuses StyleGAN2-ADA modules
saved by ``torch.save``, and one allow-list gives one behaviour and one error
message for every format.)

Sizes come from the file too, so none is trusted: a storage is allocated only
after its size has been checked against the bytes the file really holds for it
(the rest of a legacy stream; the declared size of an uncompressed zip record),
and zip members are read through :mod:`pvp_runtime.contract.zip_members`.
"""

from __future__ import annotations

import io
import os
import struct
import zipfile
from pathlib import Path
from typing import Any

import torch

from ..contract import zip_members
from ..contract.errors import AssetError
from ..formats.safe_pickle import Globals, _first_line, unpickle

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
# data.pkl holds names, shapes and storage references (plus StyleGAN2-ADA's module source): kB to
# MB.  The cap only stops a deflated pickle from inflating without bound.
MAX_PICKLE_BYTES = 1 << 30

# Legacy typed storages name their element type in the class name.
STORAGE_DTYPES = {
    "FloatStorage": torch.float32, "DoubleStorage": torch.float64, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool, "ComplexFloatStorage": torch.complex64, "ComplexDoubleStorage": torch.complex128,
    "UntypedStorage": torch.uint8,  # raw bytes; _rebuild_tensor_v3 names the dtype (uint16, float8...)
}
# dtype objects are inert values; pickles name them as torch.<name>.
TORCH_DTYPES = {name: value for name in dir(torch) if isinstance(value := getattr(torch, name), torch.dtype)}


class _StorageType:
    def __init__(self, dtype: torch.dtype):
        self.dtype = dtype


def _view(storage, offset, size, stride, source) -> torch.Tensor:
    if not isinstance(storage, torch.Tensor) or storage.ndim != 1:
        raise AssetError(f"{source}: a tensor in the file has no valid storage")
    try:
        return storage.as_strided(tuple(size), tuple(stride), int(offset))
    except (RuntimeError, TypeError, ValueError) as exc:
        raise AssetError(f"{source}: a tensor does not fit its storage ({_first_line(exc)}); "
                         f"the file is corrupt") from None


def torch_globals(source: str) -> Globals:
    """Reconstructors for tensors and parameters, as an extra allow-list for :func:`unpickle`."""

    def rebuild_tensor_v2(storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None):
        return _view(storage, offset, size, stride, source)

    def rebuild_tensor(storage, offset, size, stride):
        return _view(storage, offset, size, stride, source)

    def rebuild_tensor_v3(storage, offset, size, stride, requires_grad, hooks, dtype, metadata=None):
        if not isinstance(dtype, torch.dtype) or not isinstance(storage, torch.Tensor):
            raise AssetError(f"{source}: malformed tensor record")
        try:
            typed = storage.view(torch.uint8).view(dtype)
        except RuntimeError:
            raise AssetError(f"{source}: a {dtype} tensor's storage has {storage.numel()} bytes, not a whole "
                             f"number of elements; the file is corrupt") from None
        return _view(typed, offset, size, stride, source)

    def rebuild_parameter(data, requires_grad=False, hooks=None, state=None):
        return data

    def load_from_bytes(data):
        if not isinstance(data, (bytes, bytearray)):
            raise AssetError(f"{source}: malformed tensor storage")
        return read_legacy_stream(io.BytesIO(data), source)

    entries = {
        ("torch._utils", "_rebuild_tensor_v2"): rebuild_tensor_v2,
        ("torch._utils", "_rebuild_tensor"): rebuild_tensor,
        ("torch._utils", "_rebuild_tensor_v3"): rebuild_tensor_v3,
        ("torch._utils", "_rebuild_parameter"): rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): rebuild_parameter,
        ("torch.storage", "_load_from_bytes"): load_from_bytes,
        ("torch", "Size"): torch.Size,
    }
    entries.update({("torch", name): _StorageType(dtype) for name, dtype in STORAGE_DTYPES.items()})
    entries[("torch.storage", "UntypedStorage")] = _StorageType(torch.uint8)
    entries.update({("torch", name): dtype for name, dtype in TORCH_DTYPES.items()})
    return entries


def _storage_bytes(numel, dtype: torch.dtype, source: str) -> int:
    if not isinstance(numel, int) or isinstance(numel, bool) or numel < 0:
        raise AssetError(f"{source}: corrupt torch checkpoint (a storage of {numel!r} elements)")
    return numel * dtype.itemsize


# --------------------------------------------------------------------------- legacy torch.save

def _bytes_left(stream) -> int:
    position = stream.tell()
    end = stream.seek(0, io.SEEK_END)
    stream.seek(position)
    return end - position


def read_legacy_stream(stream, source: str) -> Any:
    """Read a pre-1.6 ``torch.save`` stream: header pickles, object pickle, raw storages."""
    header = unpickle(stream, source)
    if header != LEGACY_MAGIC:
        raise AssetError(f"{source}: not a torch checkpoint (bad magic number)")
    if unpickle(stream, source) != LEGACY_PROTOCOL:
        raise AssetError(f"{source}: unsupported legacy torch.save protocol version")
    sys_info = unpickle(stream, source)
    if not isinstance(sys_info, dict) or not sys_info.get("little_endian", True):
        raise AssetError(f"{source}: big-endian torch checkpoints are not supported")

    storages: dict[str, torch.Tensor] = {}
    # The storages' bytes follow the object pickle, so together they cannot exceed what is left.
    available, claimed = _bytes_left(stream), 0

    def persistent_load(pid):
        nonlocal claimed
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType)):
            raise AssetError(f"{source}: unexpected persistent reference in the checkpoint")
        _, storage_type, key, _location, numel = pid[:5]
        view = pid[5] if len(pid) > 5 else None
        if key not in storages:
            claimed += _storage_bytes(numel, storage_type.dtype, source)
            if claimed > available:
                raise AssetError(f"{source}: corrupt torch checkpoint (its storages claim {claimed} bytes, "
                                 f"more than the {available} left in the file)")
            storages[key] = torch.empty(numel, dtype=storage_type.dtype)
        storage = storages[key]
        if view is not None:  # (view_key, offset, size): a slice of the root storage (old torch)
            _, offset, size = view
            if not (isinstance(offset, int) and isinstance(size, int) and 0 <= offset <= offset + size
                    <= storage.numel()):
                raise AssetError(f"{source}: corrupt torch checkpoint (a storage view lies outside its storage)")
            storage = storage[offset:offset + size]
        return storage

    obj = unpickle(stream, source, torch_globals(source), persistent_load)
    keys = unpickle(stream, source)
    if not isinstance(keys, list) or set(keys) != set(storages):
        raise AssetError(f"{source}: corrupt torch checkpoint (storage list does not match its contents)")
    for key in keys:
        storage = storages[key]
        count = stream.read(8)
        if len(count) != 8:
            raise AssetError(f"{source}: truncated torch checkpoint (storage data ends early)")
        numel = struct.unpack("<q", count)[0]
        if numel != storage.numel():
            raise AssetError(f"{source}: corrupt torch checkpoint (storage of {numel} elements, expected "
                             f"{storage.numel()})")
        nbytes = numel * storage.element_size()
        # Read straight into the storage: checkpoints are large, copies are not free.
        if nbytes and stream.readinto(memoryview(storage.view(torch.uint8).numpy())) != nbytes:
            raise AssetError(f"{source}: truncated torch checkpoint (storage data ends early)")
    return obj


def _is_legacy(path: Path) -> bool:
    with path.open("rb") as handle:
        try:
            return unpickle(io.BytesIO(handle.read(64)), str(path)) == LEGACY_MAGIC
        except AssetError:
            return False


# --------------------------------------------------------------------------- entry point

def read_torch_file(path: str | os.PathLike, what: str = "torch checkpoint") -> Any:
    """Load any torch checkpoint or StyleGAN2-ADA pickle as plain data, tensors on the CPU.

    ``what`` names the expected kind in error messages ("NVlabs StyleGAN2 pickle").
    """
    path = Path(path)
    if not path.is_file():
        raise AssetError(f"{path}: {what} not found")
    if path.stat().st_size == 0:
        raise AssetError(f"{path}: empty file, expected a {what}")
    if zipfile.is_zipfile(path):
        return _read_zip(path, what)
    with path.open("rb") as handle:
        if handle.read(4) == b"PK\x03\x04":
            raise AssetError(f"{path}: truncated or corrupt zip archive, expected a {what}")
    if _is_legacy(path):
        with path.open("rb") as handle:
            return read_legacy_stream(handle, str(path))
    with path.open("rb") as handle:
        try:
            return unpickle(handle, str(path), torch_globals(str(path)))
        except AssetError as exc:  # neither zip nor legacy torch.save: say what the file should have been
            if what in str(exc):
                raise
            raise AssetError(f"{exc}; expected a {what}") from None


def _read_zip(path: Path, what: str) -> Any:
    """The zip container: ``<name>/data.pkl`` plus one raw file per storage under ``<name>/data/``."""
    source = str(path)
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [name for name in archive.namelist() if name.endswith("data.pkl") and name.count("/") == 1]
            if len(pickles) != 1:
                raise AssetError(f"{path}: a zip archive but not a torch checkpoint (no data.pkl), expected a {what}")
            prefix = pickles[0][: -len("data.pkl")]
            byteorder = prefix + "byteorder"
            if byteorder in archive.namelist() and zip_members.read_member(
                    archive, byteorder, 16, source, AssetError).strip() != b"little":
                raise AssetError(f"{path}: big-endian torch checkpoints are not supported")
            storages: dict[str, torch.Tensor] = {}

            def persistent_load(pid):
                if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                        and isinstance(pid[1], _StorageType)):
                    raise AssetError(f"{path}: unexpected persistent reference in the checkpoint")
                _, storage_type, key, _location, numel = pid
                if key not in storages:
                    nbytes = _storage_bytes(numel, storage_type.dtype, source)
                    data = _read_storage_record(archive, f"{prefix}data/{key}", key, nbytes, source)
                    flat = torch.frombuffer(bytearray(data), dtype=torch.uint8) if data else torch.empty(0, dtype=torch.uint8)
                    dtype = storage_type.dtype
                    storages[key] = flat.view(dtype) if dtype is not torch.uint8 else flat
                return storages[key]

            zip_members.checked_info(archive, pickles[0], MAX_PICKLE_BYTES, source, AssetError)
            with archive.open(pickles[0]) as handle:
                return unpickle(handle, source, torch_globals(source), persistent_load)
    except (zipfile.BadZipFile, EOFError, OSError, RuntimeError) as exc:
        raise AssetError(f"{path}: truncated or corrupt zip archive, expected a {what} ({_first_line(exc)})") from None


def _read_storage_record(archive: zipfile.ZipFile, name: str, key, nbytes: int, source: str) -> bytes:
    """One storage's raw bytes, once its record is known to hold exactly ``nbytes`` uncompressed."""
    try:
        info = archive.getinfo(name)
    except KeyError:
        raise AssetError(f"{source}: corrupt torch checkpoint (storage {key} is missing)") from None
    if info.compress_type != zipfile.ZIP_STORED:
        # torch.save never compresses; a compressed record could claim any amount of memory.
        raise AssetError(f"{source}: storage {key} is compressed, but torch checkpoints store tensor data "
                         f"uncompressed (re-save the file with torch.save)")
    if info.file_size != nbytes:
        raise AssetError(f"{source}: corrupt torch checkpoint (storage {key} holds {info.file_size} bytes, "
                         f"expected {nbytes})")
    data = zip_members.read_member(archive, name, nbytes, source, AssetError)
    if len(data) != nbytes:
        raise AssetError(f"{source}: corrupt torch checkpoint (storage {key} holds {len(data)} bytes, "
                         f"expected {nbytes})")
    return data
