"""The runtime process never imports code from a folder other users can write to (issue 11.1).

A package planted in the shared temp folder, or in the folder Blender was started from, must
not run when the add-on probes an interpreter or starts the runtime.
"""

import sys
import tempfile
from pathlib import Path

import pytest

from pvp_runtime.contract.client import LaunchSettings, RuntimeClient, probe_interpreter

REPO = Path(__file__).resolve().parents[1]


def plant_packages(folder: Path, marker: Path) -> None:
    """What an attacker would write: a shadowing pvp_runtime package and a torch module."""
    payload = f"open({str(marker)!r}, 'a').write(__name__ + '\\n')\n"
    (folder / "pvp_runtime").mkdir()
    (folder / "pvp_runtime" / "__init__.py").write_text(payload)
    (folder / "torch.py").write_text(payload)


@pytest.fixture
def shared_temp(tmp_path, monkeypatch):
    """A temp folder with planted code, made the system temp folder and the current folder."""
    shared = tmp_path / "shared-tmp"
    shared.mkdir()
    marker = tmp_path / "planted-code-ran.txt"
    plant_packages(shared, marker)
    monkeypatch.setenv("TMPDIR", str(shared))
    monkeypatch.setattr(tempfile, "tempdir", str(shared))
    monkeypatch.chdir(shared)
    return shared, marker


def test_probe_runs_no_planted_code(shared_temp):
    shared, marker = shared_temp
    result = probe_interpreter(sys.executable, str(REPO))
    assert result.ok, result.summary
    assert not marker.exists(), f"planted code ran: {marker.read_text()}"
    assert sorted(p.name for p in shared.iterdir()) == ["pvp_runtime", "torch.py"], "private folder left behind"


def test_runtime_process_runs_no_planted_code(shared_temp):
    shared, marker = shared_temp
    client = RuntimeClient(LaunchSettings(sys.executable, str(REPO), startup_timeout=120))
    try:
        assert client.info.get("protocol")
    finally:
        client.close()
    assert not marker.exists(), f"planted code ran: {marker.read_text()}"
    assert sorted(p.name for p in shared.iterdir()) == ["pvp_runtime", "torch.py"], "private folder left behind"
