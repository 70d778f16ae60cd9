"""The extension's bpy-free runtime session (prefetch plan, frame cache, restarts), the preview
worker that keeps only the newest request, and interpreter detection."""

import threading

import numpy as np
import pytest

from blender_helpers import extension_module

session_module = extension_module("pvp_blender.runtime_session")
interpreters = extension_module("pvp_blender.interpreters")
latest_only = extension_module("pvp_blender.latest_only")
contract_errors = extension_module("pvp_runtime.contract.errors")
client_module = extension_module("pvp_runtime.contract.client")
subject_manifest = extension_module("pvp_runtime.contract.subject_manifest")


def test_prefetch_plan_follows_range_step_batch_and_memory():
    plan = session_module.prefetch_frames
    assert plan(1, 100, 1, 8, 1000) == [1, 2, 3, 4, 5, 6, 7, 8]
    assert plan(95, 100, 2, 8, 1000) == [95, 97, 99]
    assert plan(5, 5, 1, 8, 1000) == [5]
    assert plan(1, 100, 1, 8, 200 * 2 ** 20) == [1, 2]  # 200 MB frames: the 512 MB budget holds two
    assert plan(1, 100, 1, 8, 2 ** 40) == [1]           # never less than the frame itself


class FakeClient:
    """Stands in for RuntimeClient: records requests, renders each frame as its first channel value."""

    instances = []

    def __init__(self, launch, log=None):
        self.launch = launch
        self.log = log
        self.alive = True
        self.pid = 1000 + len(self.instances)
        self.info = {"torch": "x", "cuda": "", "threads": 3}
        self.requests = []
        self.loads = []
        self.closed = False
        FakeClient.instances.append(self)

    def load(self, path, device, half):
        self.loads.append(path)
        return {"channels": list(subject_manifest.SubjectSummary.read(path).layout.names)}

    def render(self, channels, width, height, placement=None):
        self.requests.append(channels.copy())
        self.placements = getattr(self, "placements", []) + [placement]
        if np.isnan(channels).any():
            self.alive = False
            raise contract_errors.RuntimeProcessError("the PVP runtime exited unexpectedly")
        return np.broadcast_to(channels[:, :1, None, None], (len(channels), height, width, 4)).astype(np.float32)

    def free(self):
        self.loads.append("freed")

    def close(self):
        self.closed = True
        self.alive = False


@pytest.fixture
def session():
    FakeClient.instances = []
    return session_module.RuntimeSession(client_factory=FakeClient)


def _options(interpreter="python"):
    return session_module.RuntimeOptions(client_module.LaunchSettings(interpreter))


def test_cache_serves_prefetched_frames_only_for_identical_channels(session, tiny_bundle_path):
    subject = session.subject(str(tiny_bundle_path))
    frames = np.arange(3 * subject.layout.size, dtype=np.float32).reshape(3, -1) / 100
    images = session.render(_options(), subject, [1, 2, 3], frames, 4, 2)
    assert images.shape == (3, 2, 4, 4)
    hit = session.lookup(subject, 4, 2, 2, frames[1])
    assert hit is not None and np.all(hit == frames[1, 0])
    changed = frames[1].copy()
    changed[5] += 1e-6
    assert session.lookup(subject, 4, 2, 2, changed) is None      # the rig moved: render again
    assert session.lookup(subject, 8, 2, 2, frames[1]) is None    # another resolution
    assert session.lookup(subject, 4, 2, 7, frames[1]) is None    # another frame
    assert session.stats.requests == 1 and session.stats.cache_hits == 1
    client = FakeClient.instances[0]
    assert client.loads == [str(tiny_bundle_path)]
    session.render(_options(), subject, [4], frames[:1], 4, 2)
    assert client.loads == [str(tiny_bundle_path)] and len(FakeClient.instances) == 1  # same process, no reload


def test_cache_serves_a_placed_frame_only_where_it_was_placed(session, tiny_bundle_path):
    subject = session.subject(str(tiny_bundle_path))
    frames = np.zeros((2, subject.layout.size), dtype=np.float32)
    placement = np.array([[[1.0, 0, 3], [0, 1.0, 2]], [[1.0, 0, 4], [0, 1.0, 2]]])
    session.render(_options(), subject, [1, 2], frames, 4, 2, placement)
    assert np.array_equal(FakeClient.instances[0].placements[-1], placement)  # sent to the runtime
    assert session.lookup(subject, 4, 2, 2, frames[1], placement[1]) is not None
    moved = placement[1].copy()
    moved[0, 2] += 1e-9
    assert session.lookup(subject, 4, 2, 2, frames[1], moved) is None  # the camera or rig moved: render again
    assert session.lookup(subject, 4, 2, 2, frames[1]) is None  # locked to the centre now


def test_restarts_after_a_crash_or_new_settings_and_frees(session, tiny_bundle_path, tmp_path):
    subject = session.subject(str(tiny_bundle_path))
    bad = np.full((1, subject.layout.size), np.nan, dtype=np.float32)
    with pytest.raises(contract_errors.RuntimeProcessError):
        session.render(_options(), subject, [1], bad, 4, 4)
    assert session.pid is None and "exited unexpectedly" in session.status() and session.info == {}
    good = np.zeros((1, subject.layout.size), dtype=np.float32)
    session.render(_options(), subject, [1], good, 4, 4)
    assert len(FakeClient.instances) == 2 and session.status().startswith("running (pid 1001")
    assert "3 threads" in session.status() and session.info["threads"] == 3
    session.render(_options("other-python"), subject, [1], good, 4, 4)
    assert len(FakeClient.instances) == 3 and FakeClient.instances[1].closed
    assert session.free() and FakeClient.instances[2].loads[-1] == "freed"
    session.log_file = str(tmp_path / "runtime.log")
    FakeClient.instances[2].log("INFO loaded subject")
    assert (tmp_path / "runtime.log").read_text().endswith(" INFO loaded subject\n")
    assert session.lookup(subject, 4, 4, 1, good[0]) is None  # freeing drops the cache too
    session.shutdown()
    assert FakeClient.instances[2].closed and session.pid is None and not session.free()


def test_subject_summary_reads_the_manifest_without_torch(session, tiny_bundle_path, tmp_path):
    summary = session.subject(str(tiny_bundle_path))
    assert (summary.name, summary.resolution, summary.layout.num_expressions) == ("tiny", 32, 10)
    assert summary.channel_stats.std.shape == (summary.layout.size,)
    with pytest.raises(contract_errors.BundleError, match="nothing.pvp: bundle not found"):
        session.subject(str(tmp_path / "nothing.pvp"))


def test_worker_jobs_report_through_futures():
    worker = latest_only.LatestOnlyWorker()
    assert worker.submit(lambda a, b: a + b, 2, 3).result(timeout=10) == 5
    future = worker.submit(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        future.result(timeout=10)
    assert worker.submit(str, 7).result(timeout=10) == "7"  # the worker outlives a failed job


def test_scrubbing_renders_only_the_newest_request():
    """20 requests while a render is in progress: the newest runs next, the rest never run."""
    worker = latest_only.LatestOnlyWorker()
    started, release = threading.Event(), threading.Event()
    rendered = []

    def render(frame):
        rendered.append(frame)
        if frame == 0:
            started.set()
            release.wait(timeout=60)  # a guard against a hang, not a timing
        return frame

    first = worker.submit(render, 0)
    assert started.wait(timeout=60)
    later = [worker.submit(render, frame) for frame in range(1, 21)]
    release.set()
    assert later[-1].result(timeout=60) == 20
    assert rendered == [0, 20]  # the one in progress and the newest
    assert first.result() == 0 and all(future.cancelled() for future in later[:-1])


def test_an_unset_interpreter_is_found_on_the_rendering_thread_once(session, tiny_bundle_path, tmp_path):
    """The UI thread only submits; probing (seconds per interpreter) happens where the runtime starts."""
    probes = []

    def probe(path, source_dir=""):
        probes.append((path, threading.current_thread()))
        return client_module.ProbeResult(path, True, "ok")

    extension = tmp_path / "checkout" / "extension"
    extension.mkdir(parents=True)
    venv_python = _executable(tmp_path / "checkout" / ".venv" / "bin" / "python")
    session.autodetect = interpreters.AutoDetect(str(extension), probe=probe, env={"PATH": ""})
    subject = session.subject(str(tiny_bundle_path))
    channels = np.zeros((1, subject.layout.size), dtype=np.float32)
    worker = latest_only.LatestOnlyWorker()
    for _ in range(2):
        worker.submit(session.render, _options(""), subject, [1], channels, 4, 4).result(timeout=30)
    assert [path for path, _ in probes] == [venv_python]  # once per session and source folder
    assert probes[0][1] is not threading.current_thread() and probes[0][1].name == worker.name
    assert FakeClient.instances[0].launch.interpreter == venv_python and len(FakeClient.instances) == 1
    session.render(_options("/my/python"), subject, [1], channels, 4, 4)  # a preference is never probed
    assert len(probes) == 1 and FakeClient.instances[1].launch.interpreter == "/my/python"


def _executable(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return str(path)


def test_interpreter_candidates_in_order_of_preference(tmp_path):
    checkout = tmp_path / "checkout"
    extension = checkout / "extension"
    extension.mkdir(parents=True)
    venv_python = _executable(checkout / ".venv" / "bin" / "python")
    env_python = _executable(tmp_path / "custom" / "python")
    path_python = _executable(tmp_path / "bin" / "python3")
    env = {"PVP_PYTHON": env_python, "PATH": str(tmp_path / "bin")}
    found = interpreters.candidate_interpreters(str(extension), env)
    assert [path for _, path in found] == [env_python, venv_python, path_python]
    assert found[0][0] == "$PVP_PYTHON" and "virtual environment" in found[1][0] and found[2][0] == "PATH"

    calls = []

    def probe(path, source_dir=""):
        calls.append(path)
        return client_module.ProbeResult(path, path == path_python, "torch 2" if path == path_python else "no torch")

    assert interpreters.choose_interpreter("", str(extension), env={"PATH": env["PATH"]}, probe=probe) == path_python
    assert calls == [venv_python, path_python]  # stops at the first that works
    assert interpreters.choose_interpreter("/my/python", str(extension), env=env, probe=probe) == "/my/python"
    assert interpreters.choose_interpreter("", str(extension), env=env, probe=probe) == env_python
    results = interpreters.detect_interpreters(str(extension), env=env, probe=probe)
    assert [r.ok for _, r in results] == [True, False, False]  # usable first
    assert interpreters.choose_interpreter("", str(tmp_path / "nowhere"), env={"PATH": ""}, probe=probe) == ""
    assert interpreters.source_folder("", {"PVP_RUNTIME_SOURCE": "/src"}) == "/src"
    assert interpreters.source_folder("/pref", {"PVP_RUNTIME_SOURCE": "/src"}) == "/pref"
