import json
import zipfile

import pytest
import torch

from pvp_runtime import bundle as bundle_module
from pvp_runtime.bundle import (FORMAT_VERSION, GENERATOR_FILE, MANIFEST, MAPPERS_FILE, load_bundle, random_bundle,
                                read_manifest, save_bundle)
from pvp_runtime.contract.errors import BundleError


def _states_equal(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_round_trip_is_bit_exact(tmp_path, tiny_generator_config):
    original = random_bundle(tiny_generator_config, num_pivots=3, num_expressions=10, seed=5, expression_scale=0.1)
    path = save_bundle(original, tmp_path / "s.pvp")
    loaded = load_bundle(path)
    assert _states_equal(original.generator, loaded.generator)
    assert _states_equal(original.model, loaded.model)
    assert loaded.generator.config == original.generator.config
    assert loaded.model.config == original.model.config
    assert torch.equal(torch.as_tensor(loaded.channel_stats.mean), torch.as_tensor(original.channel_stats.mean))
    manifest = read_manifest(path)
    assert manifest["format_version"] == FORMAT_VERSION
    assert manifest["num_ws"] == tiny_generator_config.num_ws and manifest["num_pivots"] == 3
    assert manifest["num_expressions"] == 10 and manifest["provenance"]["source"] == "random weights"
    assert len(manifest["channels"]["names"]) == loaded.layout.size
    with zipfile.ZipFile(path) as archive:  # data only: no pickles anywhere
        assert sorted(archive.namelist()) == sorted([MANIFEST, GENERATOR_FILE, MAPPERS_FILE])


def _rewrite(src, dst, edit_manifest=None, edit_member=None):
    with zipfile.ZipFile(src) as a, zipfile.ZipFile(dst, "w") as b:
        for name in a.namelist():
            data = a.read(name)
            if name == MANIFEST and edit_manifest:
                manifest = json.loads(data)
                edit_manifest(manifest)
                data = json.dumps(manifest)
            if name != MANIFEST and edit_member:
                data = edit_member(name, data)
            if data is not None:
                b.writestr(name, data)


def test_missing_and_not_a_bundle(tmp_path):
    with pytest.raises(BundleError, match="nope.pvp: bundle not found"):
        load_bundle(tmp_path / "nope.pvp")
    with pytest.raises(BundleError, match="is a directory"):
        load_bundle(tmp_path)
    text = tmp_path / "notes.pvp"
    text.write_text("hello")
    with pytest.raises(BundleError, match="not a PVP bundle"):
        load_bundle(text)
    plain_zip = tmp_path / "plain.pvp"
    with zipfile.ZipFile(plain_zip, "w") as archive:
        archive.writestr("readme.txt", "x")
    with pytest.raises(BundleError, match="no manifest.json"):
        load_bundle(plain_zip)


@pytest.mark.parametrize("keep", [0.3, 0.9, 0.999])
def test_truncated_bundle(tmp_path, tiny_bundle_path, keep):
    data = tiny_bundle_path.read_bytes()
    cut = tmp_path / "cut.pvp"
    cut.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(BundleError, match="cut.pvp: "):
        load_bundle(cut)


def test_flipped_bytes_are_caught(tmp_path, tiny_bundle_path):
    broken = tmp_path / "flip.pvp"

    def flip(name, data):
        if name == GENERATOR_FILE:
            data = bytearray(data)
            data[len(data) // 2] ^= 0xFF
            return bytes(data)
        return data
    _rewrite(tiny_bundle_path, broken, edit_member=flip)
    with pytest.raises(BundleError, match="generator.safetensors does not match its checksum"):
        load_bundle(broken)


def test_newer_format_version(tmp_path, tiny_bundle_path):
    newer = tmp_path / "newer.pvp"
    _rewrite(tiny_bundle_path, newer, edit_manifest=lambda m: m.update(format_version=FORMAT_VERSION + 1))
    with pytest.raises(BundleError, match="newer than this PVP Avatar supports"):
        load_bundle(newer)


def test_missing_tensor_and_shape_mismatch(tmp_path, tiny_bundle_path):
    from safetensors.torch import load, save
    import hashlib

    def rewrite_tensors(edit):
        def member(name, data):
            if name != MAPPERS_FILE:
                return data
            state = load(data)
            edit(state)
            return save(state)
        out = tmp_path / f"{edit.__name__}.pvp"
        digests = {}

        def remember(name, data):
            new = member(name, data)
            digests[name] = hashlib.sha256(new).hexdigest()
            return new
        _rewrite(tiny_bundle_path, out, edit_member=remember)
        # Re-sign so the checksum passes and the structural check is what fails.
        fixed = tmp_path / f"{edit.__name__}-signed.pvp"
        _rewrite(out, fixed, edit_manifest=lambda m: m["tensor_files"].update(digests))
        return fixed

    def drop_pivots(state):
        del state["pivots"]

    def shrink_pivots(state):
        state["pivots"] = state["pivots"][:2].contiguous()
    with pytest.raises(BundleError, match="missing tensor 'pivots' in mappers.safetensors"):
        load_bundle(rewrite_tensors(drop_pivots))
    with pytest.raises(BundleError, match=r"tensor 'pivots' in mappers.safetensors has shape \[2, "):
        load_bundle(rewrite_tensors(shrink_pivots))


def test_bad_manifest(tmp_path, tiny_bundle_path):
    bad = tmp_path / "bad.pvp"
    _rewrite(tiny_bundle_path, bad, edit_manifest=lambda m: m["generator"].update(resolution=33))
    with pytest.raises(BundleError, match="invalid manifest"):
        load_bundle(bad)
    not_json = tmp_path / "notjson.pvp"
    with zipfile.ZipFile(tiny_bundle_path) as a, zipfile.ZipFile(not_json, "w") as b:
        for name in a.namelist():
            b.writestr(name, b"{oops" if name == MANIFEST else a.read(name))
    with pytest.raises(BundleError, match="not valid JSON"):
        load_bundle(not_json)


def test_failed_save_keeps_the_good_bundle(tmp_path, tiny_generator_config, monkeypatch):
    path = tmp_path / "subject.pvp"
    good = random_bundle(tiny_generator_config, num_pivots=2, num_expressions=10, seed=1)
    save_bundle(good, path)
    before = path.read_bytes()
    other = random_bundle(tiny_generator_config, num_pivots=2, num_expressions=10, seed=2)

    def broken_verify(p):
        raise BundleError(f"{p}: simulated failure while verifying")
    monkeypatch.setattr(bundle_module, "load_bundle", broken_verify)
    with pytest.raises(BundleError, match="simulated"):
        save_bundle(other, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["subject.pvp"]  # no partial file left behind


def test_nan_weights_are_refused(tmp_path, tiny_generator_config):
    bad = random_bundle(tiny_generator_config, num_pivots=2, num_expressions=10)
    with torch.no_grad():
        bad.model.pivots[0, 0, 0] = float("nan")
    with pytest.raises(BundleError, match="'pivots' in mappers.safetensors holds NaN"):
        save_bundle(bad, tmp_path / "nan.pvp")
    assert not (tmp_path / "nan.pvp").exists()
