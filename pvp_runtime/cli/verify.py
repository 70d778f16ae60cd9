"""``pvp verify FILE``: what a rendered frame (PNG, EXR) or a subject bundle says about itself.

A frame: its PVP provenance keys (``contract/provenance.py``), after checking the file's
structure.  A bundle: its SHA-256 (the value its frames carry), name, provenance (tool, source
video's SHA-256, fit config) and whether every tensor file matches its recorded checksum.
A file that is damaged, or a frame without PVP metadata, is one error line and a non-zero exit.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
import zlib
from pathlib import Path

from ..contract.errors import BundleError, ImageFileError
from ..contract.provenance import KEYS, file_sha256, pvp_fields
from ..contract.subject_manifest import open_archive, read_subject_manifest
from ..contract.zip_members import checked_info
from ..image_io import read_metadata

ZIP_SIGNATURE = b"PK\x03\x04"
MEMBER_LIMIT = 16 << 30  # far above any generator's tensors; the stream stops at the declared size anyway


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "verify", help="show what a rendered frame or a bundle says about itself",
        description="For a frame (PNG or EXR): its PVP provenance (synthetic, subject, bundle SHA-256, tool). "
                    "For a subject bundle (.pvp): its SHA-256, provenance and tensor checksums. Exits non-zero "
                    "with one line for a damaged file or a frame that carries no PVP metadata.")
    parser.add_argument("file", type=Path, help="a frame (.png, .exr) or a subject bundle (.pvp)")
    parser.add_argument("--json", action="store_true", help="print the findings as JSON")
    parser.set_defaults(run=run)


def verify_frame(path: Path) -> dict:
    kind, metadata = read_metadata(path)
    found = pvp_fields({key: value for key, value in metadata.items() if isinstance(value, str)})
    if not found:
        raise ImageFileError(f"{path}: {kind} file carries no PVP metadata (not rendered by PVP Avatar, "
                             "or its metadata was stripped)")
    report = {"file": str(path), "kind": f"{kind} frame", **found}
    if kind == "EXR":
        report["channels"] = metadata.get("channels", [])
    return report


def _member_sha256(archive: zipfile.ZipFile, name: str, path: Path) -> str:
    info = checked_info(archive, name, MEMBER_LIMIT, str(path), BundleError)
    digest, size = hashlib.sha256(), 0
    try:
        with archive.open(info) as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                size += len(block)
                if size > info.file_size:
                    raise BundleError(f"{path}: {name} holds more than it declares; the file is corrupt")
                digest.update(block)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
        raise BundleError(f"{path}: corrupt or truncated bundle ({name}: {exc})") from None
    return digest.hexdigest()


def verify_bundle(path: Path) -> dict:
    manifest = read_subject_manifest(path)
    with open_archive(path) as archive:
        for name, expected in sorted(manifest["tensor_files"].items()):
            try:
                actual = _member_sha256(archive, name, path)
            except KeyError:
                raise BundleError(f"{path}: corrupt bundle, member {name} is missing") from None
            if actual != expected:
                raise BundleError(f"{path}: corrupt bundle, {name} does not match its checksum")
    provenance = manifest.get("provenance", {}) if isinstance(manifest.get("provenance"), dict) else {}
    fit = provenance.get("fit") if isinstance(provenance.get("fit"), dict) else {}
    return {
        "file": str(path), "kind": "subject bundle", "name": manifest.get("name"),
        "sha256": file_sha256(path), "tensor_checksums": "match",
        "tool": provenance.get("tool"), "created": provenance.get("created"), "source": provenance.get("source"),
        "source_video_sha256": provenance.get("source_video_sha256", "not recorded"),
        "fit_config": "recorded" if isinstance(fit.get("config"), dict) else "not recorded",
    }


def run(args) -> int:
    path = args.file
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
    except OSError as exc:
        raise ImageFileError(f"{path}: cannot read ({exc.strerror or exc})") from None
    report = verify_bundle(path) if head.startswith(ZIP_SIGNATURE) else verify_frame(path)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    order = [key for key in report if key not in KEYS] + [key for key in KEYS if key in report]
    for key in order:
        value = report[key]
        print(f"{key:<20}{', '.join(value) if isinstance(value, list) else value}")
    if report["kind"] == "subject bundle":
        print(f"{'':<20}(frames rendered from this bundle carry PVP-Bundle-SHA256: {report['sha256']})")
    return 0
