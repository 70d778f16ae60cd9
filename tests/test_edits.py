"""Appearance edits: GANSpace / InterFaceGAN directions in the bundle, ``edit_<name>`` channels."""

import hashlib
import json
import zipfile

import numpy as np
import pytest
import torch

from pvp_runtime.avatar import Avatar
from pvp_runtime.bundle import load_bundle, random_bundle, save_bundle
from pvp_runtime.cli.main import main

from cli_helpers import fails
from pvp_runtime.contract.channel_files import read_channel_file, write_channel_file
from pvp_runtime.contract.channels import ChannelLayout, EditChannel, validate_frames
from pvp_runtime.contract.edits import EDITS_FILE, EditSpec
from pvp_runtime.contract.errors import BundleError, ChannelError
from pvp_runtime.contract.subject_manifest import MANIFEST, SubjectSummary
from pvp_runtime.editing import ganspace, read_direction, sample_codes

W_DIM = 32  # tiny_config(32, 32)


@pytest.fixture(scope="module")
def direction_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("directions") / "age.npy"
    np.save(path, np.random.default_rng(7).standard_normal((1, W_DIM)).astype(np.float32) * 5)
    return path


@pytest.fixture(scope="module")
def edited_path(tmp_path_factory, tiny_bundle_path, direction_file):
    path = tmp_path_factory.mktemp("edited") / "edited.pvp"
    assert main(["edits", "add", str(tiny_bundle_path), "age", str(direction_file), "--layers", "2:5",
                 "-o", str(path)]) == 0
    assert main(["edits", "compute", str(path), "-k", "3", "--samples", "512", "-o", str(path)]) == 0
    return path


# --------------------------------------------------------------------------- GANSpace

def test_pca_directions_are_orthonormal_and_ordered_by_variance():
    rng = np.random.default_rng(0)
    basis = np.linalg.qr(rng.standard_normal((W_DIM, W_DIM)))[0]
    spreads = np.array([5.0, 3.0, 2.0, 1.0] + [0.1] * (W_DIM - 4))
    w = (rng.standard_normal((4000, W_DIM)) * spreads) @ basis.T + 3.0
    codes = torch.from_numpy(np.repeat(w[:, None], 6, axis=1)).float()  # W broadcast to 6 layers
    components = ganspace(codes, 4)
    vectors = np.stack([c[0] for c in components]).astype(np.float64)
    assert np.allclose(vectors @ vectors.T, np.eye(4), atol=1e-5)
    scales = [c[1] for c in components]
    assert scales == sorted(scales, reverse=True)
    assert np.allclose(scales, spreads[:4], rtol=0.06)
    for vector, truth in zip(vectors, basis.T[:4]):  # the planted axes, recovered
        assert abs(vector @ truth) > 0.99
    assert all(c[2] == (0, 6) for c in components)  # W: every layer moves alike


def test_ganspace_layers_follow_where_a_component_varies():
    rng = np.random.default_rng(1)
    codes = rng.standard_normal((2000, 8, W_DIM)) * 0.01
    axis = np.eye(W_DIM)[3]
    codes[:, 2:5] += rng.standard_normal((2000, 1, 1)) * 4.0 * axis  # one direction, on layers 2..4 only
    vector, scale, layers, share = ganspace(torch.from_numpy(codes).float(), 1)[0]
    assert layers == (2, 5) and abs(vector @ axis) > 0.999 and scale == pytest.approx(4.0, rel=0.06)


def test_scratch_subject_samples_pivots_and_mapper_codes(tiny_generator_config):
    bundle = random_bundle(tiny_generator_config, num_pivots=4, num_expressions=10, seed=2, expression_scale=0.05)
    bundle.provenance = {"fit": {"prior": "scratch"}}
    codes, described = sample_codes(bundle, samples=64, seed=0)
    assert codes.shape == (4 + 64, tiny_generator_config.num_ws, W_DIM)
    assert torch.equal(codes[:4], bundle.model.pivots)
    assert "pivots" in described and "channel_stats" in described
    bundle.provenance = {"fit": {"prior": "pretrained"}}
    codes, described = sample_codes(bundle, samples=64, seed=0)
    assert codes.shape == (64, tiny_generator_config.num_ws, W_DIM) and "mapping-network" in described


# --------------------------------------------------------------------------- files and bundle

def test_interfacegan_file_round_trips(edited_path, direction_file, tmp_path, capsys):
    raw = np.load(direction_file).reshape(-1)
    bundle = load_bundle(edited_path)
    assert [s.name for s in bundle.edits.specs] == ["age", "pc00", "pc01", "pc02"]
    age = bundle.edits.specs[0]
    assert (age.kind, age.layers, age.range, age.scale, age.source) == ("interfacegan", (2, 5), (-3.0, 3.0), 1.0,
                                                                        "age.npy")
    assert np.allclose(bundle.edits.vectors[0].numpy(), raw / np.linalg.norm(raw), atol=1e-7)
    again = tmp_path / "again.pvp"
    save_bundle(bundle, again)
    assert torch.equal(load_bundle(again).edits.vectors, bundle.edits.vectors)
    assert main(["edits", "list", str(edited_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in lines] == ["edit_age", "edit_pc00", "edit_pc01", "edit_pc02"]
    assert lines[0].split("\t")[1:4] == ["interfacegan", "layers 2:5", "range -3..3"]
    # Removing it gives back the directions that remain, and the subject's channels shrink.
    removed = tmp_path / "removed.pvp"
    assert main(["edits", "remove", str(edited_path), "edit_age", "-o", str(removed)]) == 0
    assert load_bundle(removed).layout.edit_names == ("edit_pc00", "edit_pc01", "edit_pc02")


def test_e4e_torch_direction_files(tmp_path):
    vector = torch.randn(1, W_DIM)
    torch.save(vector, tmp_path / "smile.pt")
    got, kind, scale = read_direction(tmp_path / "smile.pt", W_DIM)
    assert kind == "interfacegan" and scale == 1.0 and np.allclose(got, (vector / vector.norm()).numpy()[0])
    comp = torch.nn.functional.normalize(torch.randn(4, 1, W_DIM), dim=-1)
    torch.save({"mean": torch.zeros(1, W_DIM), "comp": comp, "std": torch.tensor([4.0, 3.0, 2.0, 1.0])},
               tmp_path / "ffhq_pca.pt")
    got, kind, scale = read_direction(tmp_path / "ffhq_pca.pt", W_DIM, component=2)
    assert kind == "ganspace" and scale == 2.0 and np.allclose(got, comp[2, 0].numpy(), atol=1e-6)
    with pytest.raises(Exception, match="choose one with --component 0..3"):
        read_direction(tmp_path / "ffhq_pca.pt", W_DIM)


def test_a_bundle_without_edits_is_written_as_before(tmp_path, tiny_bundle_path):
    names = zipfile.ZipFile(tiny_bundle_path).namelist()
    manifest = json.loads(zipfile.ZipFile(tiny_bundle_path).read(MANIFEST))
    assert EDITS_FILE not in names and "edits" not in manifest and "edits" not in manifest["channels"]
    assert load_bundle(tiny_bundle_path).layout == ChannelLayout(10)


# --------------------------------------------------------------------------- applying

def test_strength_zero_is_bit_identical_to_no_edit(tiny_bundle_path, edited_path):
    plain, edited = Avatar.load(tiny_bundle_path, device="cpu"), Avatar.load(edited_path, device="cpu")
    frames = plain.layout.defaults(5)
    frames[:, plain.layout.index("head_yaw")] = np.linspace(-0.5, 0.5, 5)
    frames[:, plain.layout.index("expr_01")] = np.linspace(1.0, -1.0, 5)
    with_edits = edited.layout.defaults(5)
    with_edits[:, :plain.layout.size] = frames
    with_edits[1, edited.layout.index("edit_pc01")] = 2.0  # another frame of the batch is edited
    want, got = plain.render(frames, batch_size=5), edited.render(with_edits, batch_size=5)
    keep = [0, 2, 3, 4]
    assert np.array_equal(want.linear[keep], got.linear[keep]) and np.array_equal(want.srgb8[keep], got.srgb8[keep])
    assert np.abs(want.linear[1] - got.linear[1]).max() > 0.01


def test_a_strength_changes_the_frame_on_its_layers_only(edited_path):
    avatar = Avatar.load(edited_path, device="cpu")
    layout = avatar.layout
    frames = layout.defaults(2)
    frames[1, layout.index("edit_age")] = 2.0
    inputs = avatar.model.inputs(frames, layout)
    ws = avatar.model(inputs)[0]
    edited = avatar.bundle.edits.apply(ws, frames[:, layout.slice("edit")])
    delta = (edited[1] - ws[1]).numpy()
    direction = avatar.bundle.edits.vectors[0].numpy()
    assert np.abs(delta[[0, 1, 5, 6, 7]]).max() == 0.0  # layers outside 2:5 untouched
    assert np.allclose(delta[2:5], 2.0 * direction[None], atol=1e-6)
    assert torch.equal(edited[0], ws[0])
    images = avatar.render(frames).linear
    assert np.abs(images[0] - images[1]).max() > 0.01


# --------------------------------------------------------------------------- channels

def test_edit_channels_follow_the_rig_channels_and_keep_their_range():
    layout = ChannelLayout(10, (EditChannel("age", -2, 4), EditChannel("pc00")))
    assert layout.names[-3:] == ("eye_r_z", "edit_age", "edit_pc00") and layout.size == layout.rig_size + 2
    frames = layout.defaults(2)
    frames[1, layout.index("edit_age")] = 4.5
    with pytest.raises(ChannelError, match=r"frame 1, channel 'edit_age' = 4.5 strength is outside \[-2, 4\]"):
        validate_frames(frames, layout)
    for bad in ("Age", "2x", "a-b", "x" * 40):
        with pytest.raises(ChannelError, match="edit name"):
            EditChannel(bad)
    with pytest.raises(ChannelError, match="must be finite and hold 0"):
        EditChannel("age", 0.5, 3)


def test_old_channel_files_load_and_unknown_edits_are_named(tmp_path, edited_path, tiny_bundle_path, capsys):
    old = ChannelLayout(10)
    clip = old.defaults(3)
    clip[:, old.index("jaw_x")] = 0.2
    write_channel_file(tmp_path / "old.csv", clip, old)
    layout = load_bundle(edited_path).layout
    frames = read_channel_file(tmp_path / "old.csv", layout).frames
    assert frames.shape == (3, layout.size) and np.array_equal(frames[:, :old.size], clip)
    assert not frames[:, old.size:].any()  # edits default to 0
    full = layout.defaults(2)
    full[:, layout.index("edit_age")] = 1.0
    write_channel_file(tmp_path / "edited.csv", full, layout)
    fails(capsys, ["render", str(tiny_bundle_path), str(tmp_path / "edited.csv"), "-o", str(tmp_path / "out")],
           "unknown edit channel 'edit_age'", "this subject's edits: none")
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- bad input

def test_bad_direction_files_and_names_fail_with_one_line_and_write_nothing(tmp_path, capsys, tiny_bundle_path):
    out = tmp_path / "out.pvp"
    bundle = str(tiny_bundle_path)
    np.save(tmp_path / "wide.npy", np.ones((1, 512), np.float32))
    np.save(tmp_path / "nan.npy", np.full((1, W_DIM), np.nan, np.float32))
    np.save(tmp_path / "zero.npy", np.zeros((1, W_DIM), np.float32))
    np.save(tmp_path / "ints.npy", np.ones((1, W_DIM), np.int64))
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    (tmp_path / "text.npy").write_text("not an array")
    (tmp_path / "fine.npy").write_bytes((tmp_path / "zero.npy").read_bytes())
    np.save(tmp_path / "fine.npy", np.ones((1, W_DIM), np.float32))
    cases = [
        (["wide.npy"], "has shape [1, 512], expected [1, 32] (this subject's w_dim is 32)"),
        (["nan.npy"], "NaN"),
        (["zero.npy"], "direction is zero"),
        (["ints.npy"], "must hold floats"),
        (["objects.npy"], "not a readable .npy array"),
        (["text.npy"], "not a readable .npy array"),
        (["missing.npy"], "not found"),
        (["fine.npy", "--layers", "6:2"], "need 0 <= A < B <= 8"),
        (["fine.npy", "--layers", "0:9"], "need 0 <= A < B <= 8"),
        (["fine.npy", "--range", "1", "3"], "LOW < 0 < HIGH"),
        (["fine.npy", "--range", "-100.5", "3"], "LOW < 0 < HIGH within +-100"),
        (["fine.npy", "--range", "-2", "nan"], "LOW < 0 < HIGH"),
    ]
    for extra, words in cases:
        fails(capsys, ["edits", "add", bundle, "age", str(tmp_path / extra[0]), *extra[1:], "-o", str(out)], words)
    fails(capsys, ["edits", "add", bundle, "Bad-Name", str(tmp_path / "fine.npy"), "-o", str(out)], "edit name")
    fails(capsys, ["edits", "remove", bundle, "age", "-o", str(out)], "no edit 'age'")
    fails(capsys, ["edits", "compute", bundle, "-k", "0", "-o", str(out)], "-k 0")
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".pvp") == []
    assert main(["edits", "add", bundle, "age", str(tmp_path / "fine.npy"), "-o", str(out)]) == 0
    fails(capsys, ["edits", "add", str(out), "age", str(tmp_path / "fine.npy"), "-o", str(tmp_path / "b.pvp")],
           "already has an edit 'age'")
    assert not (tmp_path / "b.pvp").exists()


def _rewrite(src, dst, edit_manifest=None, edit_member=None):
    with zipfile.ZipFile(src) as a, zipfile.ZipFile(dst, "w") as b:
        manifest = json.loads(a.read(MANIFEST))
        members = {name: a.read(name) for name in a.namelist() if name != MANIFEST}
        if edit_member:
            members = edit_member(members)
            manifest["tensor_files"] = {n: hashlib.sha256(d).hexdigest() for n, d in members.items()}
        if edit_manifest:
            edit_manifest(manifest)
        b.writestr(MANIFEST, json.dumps(manifest))
        for name, data in members.items():
            b.writestr(name, data)


def _set(index, **values):
    return lambda m: m["edits"][index].update(values)


@pytest.mark.parametrize("edit, problem", [
    (_set(0, layers=[2, 9]), "edits[0].layers is [2, 9], expected [A, B] with 0 <= A < B <= 8"),
    (_set(1, range=[-3, float("nan")]), "edits[1].range is [-3, nan], expected two finite numbers"),
    (_set(1, range=[-1e9, 3]), "edits[1].range is [-1000000000.0, 3], expected two finite numbers"),
    (_set(0, name="Age"), "edits[0].name is 'Age'"),
    (_set(1, name="age"), "edits[1].name is 'age', expected a new name"),
    (_set(0, kind="stylespace"), "edits[0].kind is 'stylespace', expected ganspace or interfacegan"),
    (_set(2, scale=0.0), "edits[2].scale is 0.0"),
    (lambda m: m.update(edits=[m["edits"][0]] * 65), "edits is [{"),
], ids=["layers", "range-nan", "range-huge", "name", "duplicate", "kind", "scale", "count"])
def test_edit_manifest_entries_outside_their_range_are_named(tmp_path, edited_path, edit, problem):
    crafted = tmp_path / "crafted.pvp"
    _rewrite(edited_path, crafted, edit_manifest=edit)
    for read in (load_bundle, SubjectSummary.read):
        with pytest.raises(BundleError) as error:
            read(crafted)
        assert str(error.value).startswith(f"{crafted}: corrupt bundle, manifest {problem}"), str(error.value)
        assert "\n" not in str(error.value)


def test_edit_tensors_are_capped_checked_and_unit_length(tmp_path, edited_path):
    from safetensors.torch import load as load_st, save as save_st
    big = tmp_path / "big.pvp"
    _rewrite(edited_path, big, edit_member=lambda m: {**m, EDITS_FILE: m[EDITS_FILE] + b" " * 100_000})
    with pytest.raises(BundleError, match=f"{EDITS_FILE} declares .* bytes, more than the"):
        load_bundle(big)
    stretched = tmp_path / "stretched.pvp"
    longer = lambda m: {**m, EDITS_FILE: save_st({k: v * 2 for k, v in load_st(m[EDITS_FILE]).items()})}
    _rewrite(edited_path, stretched, edit_member=longer)
    with pytest.raises(BundleError, match="edit direction 'age' has length 2, expected a unit vector"):
        load_bundle(stretched)
    missing = tmp_path / "missing.pvp"
    _rewrite(edited_path, missing, edit_member=lambda m: {k: v for k, v in m.items() if k != EDITS_FILE})
    with pytest.raises(BundleError, match=f"manifest lists no checksum for {EDITS_FILE}"):
        load_bundle(missing)
    summary = SubjectSummary.read(edited_path)  # the Blender side reads the same layout from the manifest
    assert summary.layout == load_bundle(edited_path).layout and summary.edits[0].layers == (2, 5)


def test_edit_spec_line_starts_with_its_channel():
    spec = EditSpec("glasses", "interfacegan", (0, 8), (-2.0, 2.0), 1.0, "glasses.npy")
    assert spec.describe().split("\t")[:4] == ["edit_glasses", "interfacegan", "layers 0:8", "range -2..2"]


def test_runtime_protocol_carries_the_edit_columns(edited_path):
    from pvp_runtime.contract import protocol
    from pvp_runtime.server import RuntimeServer
    server = RuntimeServer()
    kind, info, _ = server.handle(protocol.Message("load", {"bundle": str(edited_path), "device": "cpu"}))
    layout = SubjectSummary.read(edited_path).layout
    assert kind == protocol.LOADED and tuple(info["channels"]) == layout.names  # what the add-on checks
    frames = layout.defaults(2)
    frames[1, layout.index("edit_pc00")] = 1.5
    payload = protocol.array_to_payload(frames)
    message = protocol.Message("render", {"frames": 2, "channels": layout.size, "width": 32, "height": 32}, payload)
    _, _, pixels = server.handle(message)
    got = np.frombuffer(bytes(pixels), np.float32).reshape(2, 32, 32, 4)
    want = Avatar.load(edited_path, device="cpu").render(frames, batch_size=2).linear
    assert np.array_equal(got, want)  # native size: the canvas is the render itself
    short = protocol.Message("render", {"frames": 1, "channels": layout.size - 4, "width": 32, "height": 32},
                             protocol.array_to_payload(layout.without_edits().defaults(1)))
    with pytest.raises(ChannelError, match=r"expected 29 channels per frame \(10 expressions, 4 edits\), got 25"):
        server.handle(short)
