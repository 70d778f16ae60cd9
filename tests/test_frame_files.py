"""Frame files and provenance: PNG text chunks, the EXR writer, `pvp render --format`, `pvp verify`,
and the footage digest a bundle records."""

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from pvp_runtime.avatar import Avatar
from pvp_runtime.cli.main import main
from pvp_runtime.contract.channel_files import read_channel_file
from pvp_runtime.contract.provenance import BUNDLE_SHA256, KEYS, SUBJECT, SYNTHETIC, TOOL, file_sha256, tool_version
from pvp_runtime.exr import NO_COMPRESSION, ZIP, encode_exr, read_exr_header
from pvp_runtime.fit.data import FrameSource
from pvp_runtime.image_io import read_metadata, read_png_rgba, write_exr, write_png
from pvp_runtime.png_text import add_text, read_text
from pvp_runtime.contract.errors import ImageFileError

from cli_helpers import fails

REPO = Path(__file__).resolve().parents[1]


def read_exr_pixels(*paths):
    """RGBA float32 pixels of EXR files, read by OpenCV in a fresh process (its EXR codec is
    enabled by an environment variable read once per process)."""
    out = [Path(p).with_suffix(".npy") for p in paths]
    code = ("import sys, cv2, numpy as np\n"
            "for src, dst in zip(sys.argv[1::2], sys.argv[2::2]):\n"
            "    img = cv2.imread(src, cv2.IMREAD_UNCHANGED)\n"
            "    np.save(dst, cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA) if img.shape[2] == 4 else img)\n")
    args = [str(x) for pair in zip(paths, out) for x in pair]
    subprocess.run([sys.executable, "-c", code, *args], check=True,
                   env={**os.environ, "OPENCV_IO_ENABLE_OPENEXR": "1"})
    return [np.load(p) for p in out]


@pytest.fixture
def clip_csv(tmp_path):
    path = tmp_path / "clip.csv"
    assert main(["example-channels", str(path), "--frames", "5", "--expressions", "10"]) == 0
    return path


def test_exr_writer_is_read_back_by_opencv_with_four_half_channels_and_metadata(tmp_path):
    rng = np.random.default_rng(1)
    image = rng.random((37, 21, 4)).astype(np.float32) * 2  # 37 rows: the last ZIP chunk is partial
    image[:5] = 0.25  # flat rows compress
    metadata = {SYNTHETIC: "yes", SUBJECT: "Zoë 张", BUNDLE_SHA256: "ab" * 32}
    paths = []
    for compression in (ZIP, NO_COMPRESSION):
        data = encode_exr(image, metadata, compression)
        paths.append(tmp_path / f"c{compression}.exr")
        paths[-1].write_bytes(data)
        header = read_exr_header(data, "test")
        assert header["channels"] == ["A", "B", "G", "R"]
        assert {k: header[k] for k in metadata} == metadata
    zipped, raw = read_exr_pixels(*paths)
    for pixels in (zipped, raw):
        assert pixels.shape == (37, 21, 4) and pixels.dtype == np.float32
        assert np.array_equal(pixels, image.astype(np.float16).astype(np.float32))
    assert paths[0].stat().st_size < paths[1].stat().st_size


def test_png_text_chunks_hold_the_keys_in_8_and_16_bit(tmp_path):
    metadata = {SYNTHETIC: "yes", SUBJECT: "Zoë 张", TOOL: tool_version()}
    rgba8 = np.random.default_rng(0).integers(0, 256, (9, 7, 4), dtype=np.uint8)
    rgba16 = rgba8.astype(np.uint16) * 257 + 3
    for name, image in (("a8.png", rgba8), ("a16.png", rgba16)):
        write_png(tmp_path / name, image, metadata)
        assert read_metadata(tmp_path / name) == ("PNG", metadata)
        read = cv2.imread(str(tmp_path / name), cv2.IMREAD_UNCHANGED)
        assert read.dtype == image.dtype and np.array_equal(cv2.cvtColor(read, cv2.COLOR_BGRA2RGBA), image)
    data = (tmp_path / "a8.png").read_bytes()
    assert b"tEXtPVP-Synthetic\0yes" in data  # Latin-1 values in tEXt, as the PNG spec asks
    assert b"iTXtPVP-Subject\0\0\0\0\0Zo\xc3\xab \xe5\xbc\xa0" in data  # others in iTXt (UTF-8)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_png_text_reads_blender_style_utf8_text_and_refuses_damage():
    ok, encoded = cv2.imencode(".png", np.zeros((4, 4, 4), np.uint8))
    png = add_text(encoded.tobytes(), {"Note": "plain"})
    # Blender writes UTF-8 bytes into tEXt chunks; build one the way it does.
    from pvp_runtime.png_text import _chunk, chunks, SIGNATURE
    parts = chunks(png, "x")
    blender = SIGNATURE + _chunk(*parts[0]) + _chunk(b"tEXt", "PVP-Subject\0Zoë".encode()) + \
        b"".join(_chunk(k, b) for k, b in parts[1:])
    assert read_text(blender, "x") == {"PVP-Subject": "Zoë", "Note": "plain"}
    with pytest.raises(ImageFileError, match="truncated"):
        read_text(png[:-12], "cut.png")
    damaged = bytearray(png)
    damaged[40] ^= 0xFF
    with pytest.raises(ImageFileError, match="CRC"):
        read_text(bytes(damaged), "bad.png")


@pytest.mark.parametrize("fmt", ["png", "png16", "exr"])
def test_render_formats_carry_pixels_and_provenance(tmp_path, tiny_bundle_path, clip_csv, fmt, capsys):
    out = tmp_path / "frames"
    assert main(["render", str(tiny_bundle_path), str(clip_csv), "-o", str(out), "--device", "cpu",
                 "--batch-size", "5", "--format", fmt]) == 0
    suffix = ".exr" if fmt == "exr" else ".png"
    files = sorted(out.iterdir())
    assert [p.name for p in files] == [f"frame_{i:04d}{suffix}" for i in range(5)]
    expected = {SYNTHETIC: "yes", SUBJECT: "tiny", BUNDLE_SHA256: file_sha256(tiny_bundle_path), TOOL: tool_version()}
    for path in files:
        kind, metadata = read_metadata(path)
        assert {key: metadata[key] for key in KEYS} == expected
    avatar = Avatar.load(tiny_bundle_path, device="cpu")
    rendered = avatar.render(read_channel_file(clip_csv, avatar.layout).frames, batch_size=5)
    if fmt == "exr":
        pixels = read_exr_pixels(*files)
        for got, linear in zip(pixels, rendered.linear):
            assert got.shape == (32, 32, 4)
            assert np.array_equal(got, linear.astype(np.float16).astype(np.float32))  # premultiplied, linear
    elif fmt == "png16":
        for path, srgb8 in zip(files, rendered.srgb8):
            got = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_UNCHANGED), cv2.COLOR_BGRA2RGBA)
            assert got.dtype == np.uint16
            assert np.abs(got.astype(np.int64) - srgb8.astype(np.int64) * 257).max() <= 129  # same image, finer steps
            assert len(np.unique(got[..., :3] % 257)) > 1  # really 16-bit, not 8-bit scaled
    else:
        for path, srgb8 in zip(files, rendered.srgb8):
            assert np.array_equal(read_png_rgba(path), srgb8)
    assert main(["verify", str(files[0])]) == 0
    printed = capsys.readouterr().out
    assert "PVP-Synthetic       yes" in printed and file_sha256(tiny_bundle_path) in printed


def test_verify_a_bundle_prints_its_digest_and_provenance(tmp_path, tiny_bundle_path, capsys):
    assert main(["verify", "--json", str(tiny_bundle_path)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["kind"] == "subject bundle" and report["name"] == "tiny"
    assert report["sha256"] == file_sha256(tiny_bundle_path) and report["tensor_checksums"] == "match"
    assert report["tool"] == tool_version() and report["source_video_sha256"] == "not recorded"
    # A tensor member changed after saving no longer matches its recorded checksum.
    tampered = tmp_path / "tampered.pvp"
    with zipfile.ZipFile(tiny_bundle_path) as src, zipfile.ZipFile(tampered, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "mappers.safetensors":
                data = data[:-4] + b"\0\0\0\0"
            dst.writestr(info, data)
    fails(capsys, ["verify", str(tampered)], str(tampered), "mappers.safetensors", "checksum")


def test_verify_refuses_unmarked_damaged_and_foreign_files(tmp_path, capsys):
    plain = tmp_path / "plain.png"
    write_png(plain, np.zeros((4, 4, 4), np.uint8))
    fails(capsys, ["verify", str(plain)], str(plain), "no PVP metadata")
    marked = tmp_path / "marked.png"
    write_png(marked, np.zeros((4, 4, 4), np.uint8), {SYNTHETIC: "yes"})
    cut = tmp_path / "cut.png"
    cut.write_bytes(marked.read_bytes()[:-20])
    fails(capsys, ["verify", str(cut)], str(cut), "corrupt PNG")
    exr = tmp_path / "frame.exr"
    write_exr(exr, np.ones((40, 8, 4), np.float32), {SYNTHETIC: "yes"})
    cut_exr = tmp_path / "cut.exr"
    cut_exr.write_bytes(exr.read_bytes()[:-10])
    fails(capsys, ["verify", str(cut_exr)], str(cut_exr), "corrupt EXR", "truncated")
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    fails(capsys, ["verify", str(text)], str(text), "neither a PNG nor an OpenEXR")
    fails(capsys, ["verify", str(tmp_path / "missing.png")], "missing.png", "cannot read")


def test_footage_digest_follows_the_frames(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"f{i}.png"), np.full((8, 8, 3), 40 * i, np.uint8))
    first = FrameSource.open(folder).content_sha256()
    assert first == FrameSource.open(folder).content_sha256() and len(first) == 64
    cv2.imwrite(str(folder / "f1.png"), np.full((8, 8, 3), 41, np.uint8))
    assert FrameSource.open(folder).content_sha256() != first
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (8, 8))
    for i in range(3):
        writer.write(np.full((8, 8, 3), 40 * i, np.uint8))
    writer.release()
    assert FrameSource.open(video).content_sha256() == file_sha256(video)
