import io
import zipfile
from dataclasses import fields

import pytest
import torch

from pvp_runtime import bundle as bundle_module
from pvp_runtime.bundle import (FORMAT_VERSION, GENERATOR_FILE, MANIFEST, MAPPERS_FILE, load_bundle, random_bundle,
                                read_manifest, save_bundle)
from pvp_runtime.contract.errors import BundleError
from pvp_runtime.contract.subject_manifest import (GENERATOR_BOUNDS, MANIFEST_MAX_BYTES, MAPPER_BOUNDS,
                                                   SubjectSummary)
from pvp_runtime.model.pvp import MapperConfig
from pvp_runtime.model.stylegan2 import GeneratorConfig

from bundle_helpers import rewrite_bundle
from peak_memory import MB, measure


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
    rewrite_bundle(tiny_bundle_path, broken, edit_member=flip)
    with pytest.raises(BundleError, match="generator.safetensors does not match its checksum"):
        load_bundle(broken)


def test_newer_format_version(tmp_path, tiny_bundle_path):
    newer = tmp_path / "newer.pvp"
    rewrite_bundle(tiny_bundle_path, newer, edit_manifest=lambda m: m.update(format_version=FORMAT_VERSION + 1))
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
        rewrite_bundle(tiny_bundle_path, out, edit_member=remember)
        # Re-sign so the checksum passes and the structural check is what fails.
        fixed = tmp_path / f"{edit.__name__}-signed.pvp"
        rewrite_bundle(out, fixed, edit_manifest=lambda m: m["tensor_files"].update(digests))
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
    rewrite_bundle(tiny_bundle_path, bad, edit_manifest=lambda m: m["generator"].update(resolution=33))
    with pytest.raises(BundleError, match="manifest generator.resolution is 33, expected a power of two"):
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


# --------------------------------------------------------------------------- crafted bundles: bounded reads

MEMORY_BOUND = 100 * MB  # what reading a crafted bundle may add to the peak; the real tiny bundle is 0.1 MB


def _copy_with(src, dst, name, chunks, compression=zipfile.ZIP_DEFLATED):
    """Copy a bundle with member ``name`` replaced by ``chunks``, streamed (the test stays small)."""
    with zipfile.ZipFile(src) as a, zipfile.ZipFile(dst, "w") as b:
        for info in a.infolist():
            if info.filename != name:
                b.writestr(info, a.read(info))
                continue
            replacement = zipfile.ZipInfo(name)
            replacement.compress_type = compression
            with b.open(replacement, "w") as handle:
                for chunk in chunks:
                    handle.write(chunk)


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("pvp: error:")]


def test_manifest_bomb_is_refused_before_it_is_inflated(tmp_path, tiny_bundle_path):
    # Valid JSON followed by 256 MB of whitespace: json accepts it, so only a size cap can refuse it.
    manifest = zipfile.ZipFile(tiny_bundle_path).read(MANIFEST)
    bomb = tmp_path / "bomb.pvp"
    _copy_with(tiny_bundle_path, bomb, MANIFEST, [manifest] + [b" " * MB] * 256)
    assert bomb.stat().st_size < 4 * MB
    run = measure(f"main(['info', {str(bomb)!r}])", setup="from pvp_runtime.cli.main import main")
    assert run.value == 2 and run.stdout == ""
    assert _error_lines(run.stderr) == [f"pvp: error: {bomb}: {MANIFEST} declares {len(manifest) + 256 * MB} "
                                        f"bytes, more than the {MANIFEST_MAX_BYTES} it may hold; the file is "
                                        f"corrupt or not what it claims to be"]
    assert run.growth < MEMORY_BOUND, run.growth
    with pytest.raises(BundleError, match="manifest.json declares"):  # the Blender extension's reader
        SubjectSummary.read(bomb)


def test_tensor_member_bigger_than_its_tensors_is_refused_and_nothing_is_written(tmp_path, tiny_bundle_path):
    bomb = tmp_path / "bomb.pvp"
    _copy_with(tiny_bundle_path, bomb, GENERATOR_FILE, [bytes(MB)] * 256)
    clip = tmp_path / "clip.csv"
    clip.write_text("head_yaw\n0.1\n0.2\n")
    out = tmp_path / "frames"
    run = measure(f"main(['render', {str(bomb)!r}, {str(clip)!r}, '-o', {str(out)!r}, '--device', 'cpu'])",
                  setup="from pvp_runtime.cli.main import main")
    assert run.value == 2
    [line] = _error_lines(run.stderr)
    assert line.startswith(f"pvp: error: {bomb}: {GENERATOR_FILE} declares {256 * MB} bytes, more than the ")
    assert run.growth < MEMORY_BOUND, run.growth
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["bomb.pvp", "clip.csv"]


def test_a_member_holding_more_than_its_header_says_is_cut_at_the_limit(tiny_bundle_path, monkeypatch):
    # Python's zipfile stops at the declared size itself; the bounded read must not depend on that.
    manifest = zipfile.ZipFile(tiny_bundle_path).read(MANIFEST)
    original_open = zipfile.ZipFile.open

    def open_lying(archive, name, *args, **kwargs):
        if getattr(name, "filename", name) == MANIFEST:
            return io.BytesIO(manifest + b" " * (MANIFEST_MAX_BYTES + MB))
        return original_open(archive, name, *args, **kwargs)
    monkeypatch.setattr(zipfile.ZipFile, "open", open_lying)
    with pytest.raises(BundleError) as error:
        load_bundle(tiny_bundle_path)
    assert str(error.value) == (f"{tiny_bundle_path}: {MANIFEST} holds more than the {MANIFEST_MAX_BYTES} bytes "
                                f"it may hold; the file is corrupt")


def test_only_stored_and_deflated_members_are_read(tmp_path, tiny_bundle_path):
    deflated = tmp_path / "deflated.pvp"
    _rewrite_compressed(tiny_bundle_path, deflated, zipfile.ZIP_DEFLATED)
    assert _states_equal(load_bundle(deflated).generator, load_bundle(tiny_bundle_path).generator)
    for method in (zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA):
        odd = tmp_path / f"method{method}.pvp"
        _rewrite_compressed(tiny_bundle_path, odd, method)
        with pytest.raises(BundleError) as error:
            load_bundle(odd)
        assert str(error.value) == (f"{odd}: {MANIFEST} is compressed with zip method {method}; only stored or "
                                    f"deflated members are read")


def _rewrite_compressed(src, dst, method):
    with zipfile.ZipFile(src) as a, zipfile.ZipFile(dst, "w", compression=method) as b:
        for name in a.namelist():
            b.writestr(name, a.read(name))


def _signed_pivots(m, count):
    m["mappers"]["num_pivots"] = m["num_pivots"] = count


# Numbers that size the generator or the mappers: the old loader built gigabytes from them first.
@pytest.mark.parametrize("edit, problem", [
    (lambda m: m["generator"].update(channel_max=2048, channel_base=1 << 20),
     "generator.channel_max is 2048, expected an integer in 1..1024"),
    (lambda m: _signed_pivots(m, 10 ** 6), "mappers.num_pivots is 1000000, expected an integer in 1..2048"),
], ids=["channel_max", "num_pivots"])
def test_huge_manifest_numbers_are_refused_before_anything_is_built(tmp_path, tiny_bundle_path, edit, problem):
    crafted = tmp_path / "crafted.pvp"
    rewrite_bundle(tiny_bundle_path, crafted, edit_manifest=edit)
    run = measure(f"load_bundle({str(crafted)!r})",
                  setup=f"from pvp_runtime.bundle import load_bundle\nload_bundle({str(tiny_bundle_path)!r})")
    assert run.error == f"{crafted}: corrupt bundle, manifest {problem}"
    assert run.growth < MEMORY_BOUND, run.growth


@pytest.mark.parametrize("edit, problem", [
    (lambda m: m["generator"].update(resolution=4096), "generator.resolution is 4096, expected an integer in 8..2048"),
    (lambda m: m["generator"].update(channel_base=16), "generator.channel_base is 16, expected at least the "
                                                       "resolution (32)"),
    (lambda m: m["mappers"].update(hidden=-1), "mappers.hidden is -1, expected an integer in 1..4096"),
    (lambda m: m["mappers"].update(beta=float("nan")), "mappers.beta is nan, expected a number in 0..10"),
    (lambda m: m["mappers"].update(gaze="yes"), "mappers.gaze is 'yes', expected true or false"),
    (lambda m: m["channel_stats"]["std"].__setitem__(3, -1.0), "channel_stats.std[3] is -1.0, expected a number "
                                                               "in 0..1000.0"),
    (lambda m: m["channel_stats"]["mean"].__setitem__(0, float("inf")), "channel_stats.mean[0] is inf"),
    (lambda m: m["framing"].update(roll_center=[0.5, 40]), "framing.roll_center is [0.5, 40], expected two "
                                                           "numbers in 0..1"),
    (lambda m: m.update(num_expressions=50), "num_expressions is 50, expected 10 as in its generator and "
                                             "mapper configs"),
], ids=["resolution", "channel_base", "hidden", "beta", "gaze", "std", "mean", "roll_center", "copy"])
def test_manifest_numbers_outside_their_range_are_named(tmp_path, tiny_bundle_path, edit, problem):
    crafted = tmp_path / "crafted.pvp"
    rewrite_bundle(tiny_bundle_path, crafted, edit_manifest=edit)
    for read in (load_bundle, SubjectSummary.read):  # the runtime's loader and the Blender extension's
        with pytest.raises(BundleError) as error:
            read(crafted)
        assert str(error.value).startswith(f"{crafted}: corrupt bundle, manifest {problem}")
        assert "\n" not in str(error.value)


def test_every_config_number_has_a_sane_range(tiny_bundle_path):
    assert {f.name for f in fields(GeneratorConfig)} == set(GENERATOR_BOUNDS)
    assert {f.name for f in fields(MapperConfig)} == set(MAPPER_BOUNDS)
    # The ranges admit the paper's subjects: 1024 px config-f, K = 200 pivots, 50 expressions.
    for key, value in GeneratorConfig(resolution=1024).to_dict().items():
        assert GENERATOR_BOUNDS[key].problem(value) is None, key
    for key, value in MapperConfig(num_pivots=200, num_expressions=50).to_dict().items():
        assert MAPPER_BOUNDS[key].problem(value) is None, key
