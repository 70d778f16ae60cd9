"""Files are replaced whole or not at all."""

import pytest

from pvp_runtime.contract.atomic_files import replacing, write_text_atomically


def test_success_replaces_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "clip.npz"
    target.write_text("old")
    with replacing(target) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".npz" and tmp != target
        tmp.write_text("new")
        assert target.read_text() == "old"  # readers see the old file until the end
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["clip.npz"]


def test_failure_keeps_the_old_file_and_cleans_up(tmp_path):
    target = tmp_path / "report.json"
    write_text_atomically(target, "good")
    with pytest.raises(ValueError):
        with replacing(target) as tmp:
            tmp.write_text("half")
            raise ValueError("check failed")
    assert target.read_text() == "good"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]
