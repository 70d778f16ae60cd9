"""The allow-list unpickler: data comes back, code never runs."""

import argparse
import os
import pickle
import re
import subprocess
import zipfile
from collections import OrderedDict

import numpy as np
import pytest
import torch

from pvp_runtime.contract.errors import AssetError
from pvp_runtime.formats.safe_pickle import load_pickle, unpickle_bytes
from pvp_runtime.loaders import torch_files
from pvp_runtime.loaders.torch_files import read_torch_file

from asset_builders import py2_pickle, torch_file_claiming
from peak_memory import MB, measure


class RunsCommand:
    """Unpickling this with plain ``pickle`` runs ``callable(*args)``."""

    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


def attacks(marker):
    command = f"touch {marker}"
    return {
        "os.system": RunsCommand(os.system, command),
        "subprocess.Popen": RunsCommand(subprocess.Popen, ["touch", str(marker)]),
        "builtins.eval": RunsCommand(eval, f"open({str(marker)!r}, 'w').close()"),
        "builtins.exec": RunsCommand(exec, f"open({str(marker)!r}, 'w').close()"),
    }


@pytest.mark.parametrize("attack", ["os.system", "subprocess.Popen", "builtins.eval", "builtins.exec"])
def test_plain_pickle_that_runs_a_command_is_refused_and_nothing_runs(tmp_path, attack):
    marker = tmp_path / "pwned"
    payload = {"weights": np.zeros(3), "payload": attacks(marker)[attack]}
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(payload, protocol=4))
    # Sanity: the file really is an attack (plain pickle would run it), checked on a copy of the bytes.
    assert b"touch" in path.read_bytes() or b"open(" in path.read_bytes()
    with pytest.raises(AssetError) as error:
        load_pickle(path)
    message = str(error.value)
    assert "\n" not in message and str(path) in message and "refused" in message
    assert attack.split(".")[-1] in message
    assert not marker.exists()


def test_the_attack_file_would_run_under_plain_pickle(tmp_path):
    # Proves the test above can fail: the same bytes do run a command without the allow-list.
    marker = tmp_path / "pwned"
    pickle.loads(pickle.dumps(attacks(marker)["builtins.eval"]))
    assert marker.exists()


@pytest.mark.parametrize("legacy", [False, True])
def test_torch_checkpoint_that_runs_a_command_is_refused(tmp_path, legacy):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {"w": torch.ones(2)}, "opts": attacks(marker)["os.system"]}, path,
               _use_new_zipfile_serialization=not legacy)
    with pytest.raises(AssetError, match="refused to load .*system"):
        read_torch_file(path)
    assert not marker.exists()


def test_refuses_getattr_chains_and_unknown_classes(tmp_path):
    path = tmp_path / "getattr.pkl"
    path.write_bytes(pickle.dumps(RunsCommand(getattr, int, "real")))
    with pytest.raises(AssetError, match="builtins.getattr"):
        load_pickle(path)
    path.write_bytes(pickle.dumps(subprocess.CompletedProcess(["ls"], 0)))
    with pytest.raises(AssetError, match="subprocess.CompletedProcess"):
        load_pickle(path)


def test_data_round_trips(tmp_path):
    data = {
        "f32": np.arange(12, dtype=np.float32).reshape(3, 4),
        "fortran": np.asfortranarray(np.arange(6.0).reshape(2, 3)),
        "ints": np.array([1, -2, 3], dtype=np.int64),
        "uint32": np.array([4294967295], dtype=np.uint32),
        "scalar": np.float64(2.5),
        "ordered": OrderedDict(a=1, b=[1, 2]),
        "set": {1, 2}, "frozen": frozenset({3}), "complex": 1 + 2j, "bytes": b"\x00\xff",
        "options": argparse.Namespace(size=256, name="x"),
        "objects": np.array([1, "a", None], dtype=object),
    }
    for protocol in (2, 4, 5):
        loaded = unpickle_bytes(pickle.dumps(data, protocol=protocol), "memory")
        for key in ("f32", "fortran", "ints", "uint32"):
            np.testing.assert_array_equal(loaded[key], data[key])
            assert loaded[key].dtype == data[key].dtype
        assert loaded["scalar"] == 2.5 and loaded["ordered"] == data["ordered"]
        assert loaded["set"] == {1, 2} and loaded["frozen"] == frozenset({3}) and loaded["complex"] == 1 + 2j
        assert loaded["bytes"] == b"\x00\xff" and loaded["options"] == {"size": 256, "name": "x"}
        assert list(loaded["objects"]) == [1, "a", None]


def test_python2_pickles_read_with_latin1_strings():
    data = {"v": np.linspace(0, 1, 300).astype(np.float64), "f": np.arange(9, dtype=np.uint32).reshape(3, 3)}
    blob = py2_pickle(data)
    assert b"copy_reg" in blob or b"_reconstruct" in blob
    loaded = unpickle_bytes(blob, "py2.pkl")
    np.testing.assert_array_equal(loaded["v"], data["v"])
    np.testing.assert_array_equal(loaded["f"], data["f"])


def test_truncated_and_wrong_kind_files_give_one_line_errors(tmp_path):
    path = tmp_path / "cut.pkl"
    path.write_bytes(pickle.dumps({"a": np.zeros(100)})[:-20])
    with pytest.raises(AssetError, match="truncated|corrupt"):
        load_pickle(path)
    text = tmp_path / "notes.pkl"
    text.write_text("hello, this is not a pickle\n")
    with pytest.raises(AssetError) as error:
        load_pickle(text)
    assert str(text) in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(AssetError, match="not found"):
        load_pickle(tmp_path / "missing.pkl")


@pytest.mark.parametrize("legacy", [False, True])
def test_torch_files_round_trip_every_dtype_and_views(tmp_path, legacy):
    base = torch.randn(4, 6)
    state = OrderedDict(
        f32=torch.randn(3, 4), f64=torch.randn(2, dtype=torch.float64), f16=torch.randn(5).half(),
        bf16=torch.randn(3).bfloat16(), i64=torch.arange(7), i32=torch.arange(3, dtype=torch.int32),
        u8=torch.arange(4, dtype=torch.uint8), b=torch.tensor([True, False]),
        u16=torch.arange(3).to(torch.uint16), f8=torch.randn(3).to(torch.float8_e4m3fn),  # raw-byte storages
        c64=torch.randn(2, dtype=torch.complex64),
        strided=base[:, 1::2], shared=base, scalar=torch.tensor(3.5), empty=torch.zeros(0, 3),
        param=torch.nn.Parameter(torch.ones(2, 2)))
    path = tmp_path / "ckpt.pth"
    torch.save({"state_dict": state, "args": argparse.Namespace(size=32), "step": 7}, path,
               _use_new_zipfile_serialization=not legacy)
    loaded = read_torch_file(path)
    assert loaded["args"] == {"size": 32} and loaded["step"] == 7
    for key, tensor in state.items():
        assert loaded["state_dict"][key].dtype == tensor.dtype, key
        as_bytes = lambda t: t.detach().reshape(-1).contiguous().view(torch.uint8)  # equal() lacks some dtypes
        assert torch.equal(as_bytes(loaded["state_dict"][key]), as_bytes(tensor)), key
        assert loaded["state_dict"][key].shape == tensor.shape, key


@pytest.mark.parametrize("legacy", [False, True])
def test_truncated_torch_files_are_refused(tmp_path, legacy):
    path = tmp_path / "ckpt.pt"
    torch.save({"w": torch.randn(64, 64)}, path, _use_new_zipfile_serialization=not legacy)
    data = path.read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(AssetError, match="truncated|corrupt"):
        read_torch_file(cut)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(AssetError, match="empty file"):
        read_torch_file(empty)


# --------------------------------------------------------------------------- crafted storage sizes

def _read_measured(path):
    return measure(f"read_torch_file({str(path)!r})", setup="from pvp_runtime.loaders.torch_files import "
                                                         "read_torch_file")


@pytest.mark.parametrize("numel, problem", [
    (1 << 40, r"its storages claim 4398046511104 bytes, more than the \d{3} left in the file"),
    (-1, r"a storage of -1 elements"),
], ids=["4TiB", "negative"])
def test_legacy_storage_sizes_are_checked_against_the_file_before_allocating(tmp_path, numel, problem):
    path = tmp_path / "claims.pth"
    torch_file_claiming(path, numel, legacy=True)
    assert path.stat().st_size < 1000
    run = _read_measured(path)
    assert re.fullmatch(rf"{re.escape(str(path))}: corrupt torch checkpoint \({problem}\)", run.error), run.error
    assert run.growth < 100 * MB, run.growth


def test_zip_storage_records_must_be_stored_with_their_exact_size(tmp_path):
    # A deflated record of 256 MB of zeros in a 0.3 MB file: refused before it is inflated.
    bomb = tmp_path / "bomb.pt"
    torch_file_claiming(bomb, 64 * MB, legacy=False, record_chunks=[bytes(MB)] * 256,
                        record_compression=zipfile.ZIP_DEFLATED)
    assert bomb.stat().st_size < MB
    run = _read_measured(bomb)
    assert run.error == (f"{bomb}: storage 0 is compressed, but torch checkpoints store tensor data uncompressed "
                         f"(re-save the file with torch.save)")
    assert run.growth < 100 * MB, run.growth
    short = tmp_path / "short.pt"  # a stored record smaller than its claim
    torch_file_claiming(short, 1 << 40, legacy=False)
    with pytest.raises(AssetError, match=r"short.pt: corrupt torch checkpoint \(storage 0 holds 8 bytes, "
                                         r"expected 4398046511104\)"):
        read_torch_file(short)


def test_zip_pickle_member_is_capped(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    torch.save({"w": torch.ones(2)}, path)
    assert torch.equal(read_torch_file(path)["w"], torch.ones(2))
    with zipfile.ZipFile(path) as archive:
        size = archive.getinfo("ckpt/data.pkl").file_size
    monkeypatch.setattr(torch_files, "MAX_PICKLE_BYTES", size - 1, raising=False)
    with pytest.raises(AssetError) as error:
        read_torch_file(path)
    assert str(error.value) == (f"{path}: ckpt/data.pkl declares {size} bytes, more than the {size - 1} it may "
                                f"hold; the file is corrupt or not what it claims to be")
