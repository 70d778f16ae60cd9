"""A subject's learnt alpha: the matte head in the bundle, in `Avatar.render`, `pvp render` and `pvp info`."""

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from pvp_runtime.avatar import Avatar
from pvp_runtime.bundle import MANIFEST, MATTE_FILE, load_bundle, random_bundle, save_bundle
from pvp_runtime.cli.main import main
from pvp_runtime.contract.channel_files import write_channel_file
from pvp_runtime.contract.errors import BundleError
from pvp_runtime.contract.subject_manifest import MATTE_BOUNDS
from pvp_runtime.image_io import read_png_rgba
from pvp_runtime.model.matte import MatteConfig

from alpha_helpers import matte_for
from bundle_helpers import rewrite_bundle
from cli_helpers import fails

REPO = Path(__file__).resolve().parents[1]


def frames_for(avatar, count=3):
    frames = avatar.layout.defaults(count)
    frames[:, avatar.layout.index("head_yaw")] = np.linspace(-0.3, 0.3, count)
    frames[-1, avatar.layout.index("head_roll")] = 0.4  # a rolled frame: alpha is rolled with the colour
    return frames


def test_alpha_round_trips_through_the_bundle(alpha_bundle_path, tiny_generator_config):
    with zipfile.ZipFile(alpha_bundle_path) as archive:
        manifest = json.loads(archive.read(MANIFEST))
        assert MATTE_FILE in archive.namelist() and MATTE_FILE in manifest["tensor_files"]
    config = tiny_generator_config
    assert manifest["matte"] == {"in_channels": config.channels(config.resolution), "resolution": config.resolution,
                                 "hidden": 16}
    loaded = load_bundle(alpha_bundle_path)
    original = matte_for(random_bundle(tiny_generator_config, num_pivots=4, num_expressions=10, seed=1))
    state = loaded.matte.state_dict()
    assert state.keys() == original.state_dict().keys()
    assert all(torch.equal(state[k], v) for k, v in original.state_dict().items())
    # Saving the loaded subject again keeps its alpha.
    again = alpha_bundle_path.with_name("again.pvp")
    save_bundle(loaded, again)
    assert torch.equal(load_bundle(again).matte.prior, original.prior)


def test_render_returns_the_alpha_premultiplied_in_linear_and_straight_in_srgb8(alpha_bundle_path):
    avatar = Avatar.load(alpha_bundle_path, device="cpu")
    frames = frames_for(avatar)
    rendered = avatar.render(frames)
    linear, srgb8 = rendered.linear, rendered.srgb8
    alpha = linear[..., 3]
    assert alpha.min() < 0.05 and alpha.max() > 0.95  # a real matte, not the old opaque square
    assert np.abs(srgb8[..., 3] / 255.0 - alpha).max() <= 0.5 / 255 + 1e-6
    # The colour path is the plain subject's: the matte adds alpha and changes no colour.
    plain = load_bundle(alpha_bundle_path)
    plain.matte = None
    opaque = Avatar(plain, device="cpu").render(frames)
    unrolled = slice(0, 2)
    assert np.array_equal(srgb8[unrolled, ..., :3], opaque.srgb8[unrolled, ..., :3])  # straight colour
    np.testing.assert_allclose(linear[unrolled, ..., :3], opaque.linear[unrolled, ..., :3] * alpha[unrolled, ..., None],
                               atol=1e-6)  # premultiplied
    # The rolled frame: alpha rolled with the colour (premultiplied), colour straight where it is seen.
    solid = alpha[2] > 0.5
    straight = linear[2, ..., :3][solid] / alpha[2][solid][:, None]
    assert np.abs(srgb8_of(straight) - srgb8[2, ..., :3][solid]).max() <= 1
    assert not np.allclose(alpha[2], alpha[1], atol=0.1)


def test_a_bundle_without_alpha_renders_opaque_and_says_so(tiny_bundle_path, capsys):
    # A bundle with no matte member (as every bundle written before subjects carried alphas):
    # it loads, and alpha is exactly 1.
    demo = tiny_bundle_path
    bundle = load_bundle(demo)
    assert bundle.matte is None
    avatar = Avatar(bundle, device="cpu")
    frames = avatar.layout.defaults(1)
    rendered = avatar.render(frames)
    assert np.all(rendered.linear[..., 3] == 1.0) and np.all(rendered.srgb8[..., 3] == 255)
    assert main(["info", str(demo)]) == 0
    assert "alpha          none: alpha is 1 everywhere (fitted without --mattes)" in capsys.readouterr().out


def test_the_shipped_demo_subject_has_a_learnt_alpha():
    bundle = load_bundle(REPO / "demo" / "demo.pvp")
    assert bundle.matte is not None
    alpha = Avatar(bundle, device="cpu").render(bundle.layout.defaults(1)).linear[0, ..., 3]
    assert alpha.min() < 0.05 and alpha.max() > 0.95  # background clear, head solid


def test_info_says_the_alpha_was_learnt(alpha_bundle_path, capsys):
    assert main(["info", str(alpha_bundle_path)]) == 0
    assert "alpha          learnt from the fit's mattes" in capsys.readouterr().out


def test_pvp_render_writes_straight_alpha_png(alpha_bundle_path, tmp_path):
    avatar = Avatar.load(alpha_bundle_path, device="cpu")
    frames = frames_for(avatar)
    clip = tmp_path / "clip.csv"
    write_channel_file(clip, frames, avatar.layout)
    out = tmp_path / "frames"
    assert main(["render", str(alpha_bundle_path), str(clip), "-o", str(out), "--device", "cpu"]) == 0
    written = np.stack([read_png_rgba(path) for path in sorted(out.glob("frame_*.png"))])
    expected = avatar.render(frames)
    assert np.array_equal(written, expected.srgb8)
    # Straight: where the subject is half transparent, the PNG holds the colour divided by alpha
    # (not darkened by it, as a premultiplied PNG would be).
    linear = expected.linear
    half = (linear[..., 3] > 0.2) & (linear[..., 3] < 0.8)
    assert half.sum() > 10
    straight8 = srgb8_of(linear[..., :3][half] / linear[..., 3][half][:, None])
    premultiplied8 = srgb8_of(linear[..., :3][half])
    assert np.abs(written[..., :3][half] - straight8).max() <= 1
    bright = straight8 > 64
    assert np.all(straight8[bright] - premultiplied8[bright] > 10)


def srgb8_of(linear):
    linear = np.clip(linear, 0, 1)
    return np.round(255 * np.where(linear <= 0.0031308, linear * 12.92, 1.055 * linear ** (1 / 2.4) - 0.055)).astype(int)


def _flip_last_byte(name, data):
    return data[:-1] + bytes([data[-1] ^ 0xFF]) if name == MATTE_FILE else data


def _drop_matte(name, data):
    return None if name == MATTE_FILE else data


def _padded_matte(name, data):
    return data + bytes(1 << 20) if name == MATTE_FILE else data


CORRUPTIONS = {
    "flipped byte": (None, _flip_last_byte, f"corrupt bundle, {MATTE_FILE} does not match its checksum"),
    "member gone": (None, _drop_matte, f"corrupt bundle, member {MATTE_FILE} is missing"),
    "unlisted member": (lambda m: m.pop("matte"), None,
                        f"corrupt bundle, {MATTE_FILE} is present but the manifest lists no matte"),
    "no checksum": (lambda m: m["tensor_files"].pop(MATTE_FILE), None,
                    f"corrupt bundle, manifest lists no checksum for {MATTE_FILE}"),
    "wrong channels": (lambda m: m["matte"].update(in_channels=7), None,
                       "corrupt bundle, manifest matte.in_channels is 7, expected 16, the generator's channels at 32 px"),
    "wrong resolution": (lambda m: m["matte"].update(resolution=64), None,
                         "corrupt bundle, manifest matte.resolution is 64, expected 32, the generator's resolution"),
    "huge hidden": (lambda m: m["matte"].update(hidden=10 ** 9), None,
                    "corrupt bundle, manifest matte.hidden is 1000000000, expected an integer in 1..256"),
    "not an object": (lambda m: m.update(matte=[16, 32]), None, "corrupt bundle, manifest matte is [16, 32]"),
    "oversized member": (None, _padded_matte, f"{MATTE_FILE} declares"),
}


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_a_corrupt_alpha_gets_one_line_naming_the_file(alpha_bundle_path, tmp_path, capsys, corruption):
    edit_manifest, edit_member, message = CORRUPTIONS[corruption]
    broken = tmp_path / "broken.pvp"
    rewrite_bundle(alpha_bundle_path, broken, edit_manifest, edit_member)
    with pytest.raises(BundleError) as error:
        load_bundle(broken)
    assert str(error.value).startswith(f"{broken}: ") and message in str(error.value)
    clip = tmp_path / "clip.csv"
    clip.write_text("head_yaw\n0.1\n")
    fails(capsys, ["render", str(broken), str(clip), "-o", str(tmp_path / "out"), "--device", "cpu"], str(broken))
    assert not (tmp_path / "out").exists()


def test_every_matte_config_number_has_a_sane_range():
    assert set(MatteConfig.__dataclass_fields__) == set(MATTE_BOUNDS)
    for key, value in MatteConfig(in_channels=32, resolution=1024).to_dict().items():
        assert MATTE_BOUNDS[key].problem(value) is None, key
