"""The runtime protocol, the torch-free client and the server process (no Blender involved)."""

import io
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from pvp_runtime.avatar import Avatar
from pvp_runtime.canvas import place_on_canvas
from pvp_runtime.contract import protocol
from pvp_runtime.contract.client import LaunchSettings, RuntimeClient, probe_interpreter
from pvp_runtime.contract.errors import BundleError, ChannelError, PVPError, RuntimeProcessError
from pvp_runtime.example_clips import head_turn_clip
from blender_helpers import process_gone
from peak_memory import MB, measure

REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- framing

def _roundtrip(kind, fields=None, payload=b""):
    stream = io.BytesIO()
    protocol.write_message(stream.write, kind, fields, payload)
    stream.seek(0)
    return protocol.read_message(protocol.stream_reader(stream)), stream


def test_messages_round_trip_with_raw_float_payloads():
    frames = np.arange(12, dtype=np.float32).reshape(3, 4) / 7
    message, stream = _roundtrip("render", {"frames": 3, "channels": 4}, protocol.array_to_payload(frames))
    assert message.type == "render" and message.fields == {"frames": 3, "channels": 4}
    assert np.array_equal(protocol.array_from_payload(message.payload, (3, 4), "x"), frames)
    raw = stream.getvalue()
    assert raw[:4] == b"PVPm" and raw.endswith(frames.astype("<f4").tobytes())  # raw bytes, no pickle


def test_bad_streams_are_named_errors():
    with pytest.raises(protocol.ConnectionClosed):
        protocol.read_message(protocol.stream_reader(io.BytesIO(b"")))
    with pytest.raises(protocol.ProtocolError, match="not a PVP runtime message"):
        protocol.read_message(protocol.stream_reader(io.BytesIO(b"Traceback (most recent call last)")))
    _, stream = _roundtrip("frames", {"count": 1}, b"\0" * 64)
    with pytest.raises(protocol.ProtocolError, match="middle of a message payload"):
        protocol.read_message(protocol.stream_reader(io.BytesIO(stream.getvalue()[:-5])))
    message, _ = _roundtrip("render", {"frames": 2}, b"\0" * 12)
    with pytest.raises(protocol.ProtocolError, match="needs 16"):
        protocol.array_from_payload(message.payload, (2, 2), "render")
    with pytest.raises(protocol.ProtocolError, match="field 'frames'"):
        protocol.Message("render", {"frames": "2"}).require("frames", int)


def test_error_replies_keep_their_class():
    fields = protocol.error_fields(BundleError("x.pvp: bundle not found"))
    with pytest.raises(BundleError, match="x.pvp: bundle not found"):
        protocol.raise_error_reply(protocol.Message("error", fields))
    with pytest.raises(RuntimeProcessError, match="boom"):
        protocol.raise_error_reply(protocol.Message("error", protocol.error_fields(ZeroDivisionError("boom"))))


def test_canvas_is_identity_at_native_size_and_fits_otherwise():
    frames = np.random.default_rng(0).random((2, 8, 8, 4), dtype=np.float32)
    assert place_on_canvas(frames, 8, 8) is frames
    wide = place_on_canvas(frames, 12, 8)
    assert wide.shape == (2, 8, 12, 4)
    assert np.array_equal(wide[:, :, 2:10], frames) and not wide[:, :, :2].any() and not wide[:, :, 10:].any()
    small = place_on_canvas(np.ones((1, 8, 8, 4), np.float32), 6, 4)
    assert small.shape == (1, 4, 6, 4) and np.allclose(small[0, :, 1:5], 1) and not small[0, :, 0].any()


# --------------------------------------------------------------------------- the real server

@pytest.fixture(scope="module")
def client():
    runtime = RuntimeClient(LaunchSettings(sys.executable, source_dir=str(REPO)), log=lambda line: None)
    yield runtime
    runtime.close()


def test_client_renders_what_avatar_renders(client, tiny_bundle_path):
    assert client.info["protocol"] == protocol.PROTOCOL_VERSION and client.info["pid"] == client.pid
    # Same interpreter, same environment: the runtime renders with torch's default parallelism.
    assert client.info["threads"] == torch.get_num_threads()
    loaded = client.load(str(tiny_bundle_path), device="cpu")
    assert loaded["resolution"] == 32 and loaded["num_expressions"] == 10
    avatar = Avatar.load(tiny_bundle_path, device="cpu")
    assert loaded["channels"] == list(avatar.layout.names)
    frames = head_turn_clip(avatar.layout, 5)
    pixels = client.render(frames, 32, 32)
    assert pixels.shape == (5, 32, 32, 4) and pixels.dtype == np.float32
    assert np.array_equal(pixels, avatar.render(frames, batch_size=5).linear)
    # The same process serves a second subject load (cached) and other canvas sizes.
    assert client.load(str(tiny_bundle_path), device="cpu")["resolution"] == 32
    assert client.render(frames[:1], 48, 40).shape == (1, 40, 48, 4)


def test_server_errors_reach_the_client_as_one_line(client, tiny_bundle_path, tmp_path):
    with pytest.raises(BundleError, match="bundle not found"):
        client.load(str(tmp_path / "missing.pvp"))
    bad = tmp_path / "bad.pvp"
    bad.write_bytes(b"not a zip")
    with pytest.raises(BundleError, match="not a PVP bundle"):
        client.load(str(bad))
    with pytest.raises(PVPError, match="no subject is loaded"):
        client.render(np.zeros((1, 25), np.float32), 32, 32)
    client.load(str(tiny_bundle_path), device="cpu")
    frames = np.zeros((2, 25), np.float32)
    frames[1, 6] = 9.0
    with pytest.raises(ChannelError, match="frame 1, channel 'jaw_x'"):
        client.render(frames, 32, 32)
    client.free()
    with pytest.raises(PVPError, match="no subject is loaded"):
        client.render(np.zeros((1, 25), np.float32), 32, 32)
    assert client.alive  # errors never cost the process


def test_close_ends_the_process(client, tiny_bundle_path):
    pid = client.pid
    client.close()
    assert not client.alive and process_gone(pid)
    with pytest.raises(RuntimeProcessError, match="was stopped"):
        client.load(str(tiny_bundle_path))


def test_runtime_dies_with_a_killed_parent(tmp_path):
    """A Blender that crashes (SIGKILL: no atexit, no cleanup) must not leave the runtime behind."""
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(REPO)!r})
        from pvp_runtime.contract.client import LaunchSettings, RuntimeClient
        client = RuntimeClient(LaunchSettings(sys.executable, source_dir={str(REPO)!r}), log=lambda l: None)
        print(client.pid, flush=True)
        time.sleep(600)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        pid = int(parent.stdout.readline())
        assert not process_gone(pid, wait=0.5)
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    assert process_gone(pid, wait=30)


# --------------------------------------------------------------------------- broken interpreters

def _fake_interpreter(tmp_path, name, body):
    """An executable that stands in for a runtime interpreter (ignores its arguments)."""
    script = tmp_path / f"{name}.py"
    script.write_text(textwrap.dedent(body))
    launcher = tmp_path / name
    launcher.write_text(f"#!/bin/sh\nexec {sys.executable} {script}\n")
    launcher.chmod(0o755)
    return str(launcher)


HANDSHAKE = textwrap.dedent(f"""
    import sys, time
    sys.path.insert(0, {str(REPO)!r})
    from pvp_runtime.contract import protocol
    read = protocol.stream_reader(sys.stdin.buffer)
    out = sys.stdout.buffer
    protocol.read_message(read)
    protocol.write_message(out.write, "hello", {{"protocol": protocol.PROTOCOL_VERSION, "pid": 0}})
    out.flush()
    protocol.read_message(read)
""")


def test_hang_is_a_timeout_and_the_process_is_killed(tmp_path):
    interpreter = _fake_interpreter(tmp_path, "hangs", HANDSHAKE + "time.sleep(600)\n")
    runtime = RuntimeClient(LaunchSettings(interpreter, load_timeout=1.0), log=lambda line: None)
    with pytest.raises(RuntimeProcessError, match=r"did not answer within 1 s while loading .*was stopped"):
        runtime.load("subject.pvp")
    assert process_gone(runtime.pid)


def test_crash_is_reported_with_the_runtime_last_words(tmp_path):
    interpreter = _fake_interpreter(tmp_path, "crashes", HANDSHAKE + (
        "print('CUDA error: out of memory', file=sys.stderr, flush=True)\nsys.exit(7)\n"))
    runtime = RuntimeClient(LaunchSettings(interpreter), log=lambda line: None)
    with pytest.raises(RuntimeProcessError, match=r"exited unexpectedly \(exit code 7\) while rendering 1 frame: "
                                                  r"CUDA error: out of memory"):
        runtime.render(np.zeros((1, 25), np.float32), 8, 8)


def test_garbage_on_stdout_is_named(tmp_path):
    interpreter = _fake_interpreter(tmp_path, "chatty", "print('hello there, I am not a runtime')\n")
    with pytest.raises(RuntimeProcessError, match="sent garbage while starting: not a PVP runtime message"):
        RuntimeClient(LaunchSettings(interpreter), log=lambda line: None)


def test_missing_interpreter_runtime_or_torch_are_diagnosed(tmp_path):
    with pytest.raises(RuntimeProcessError, match="runtime interpreter not found: /nowhere/python"):
        RuntimeClient(LaunchSettings("/nowhere/python"))
    with pytest.raises(RuntimeProcessError, match="no runtime Python interpreter is set"):
        RuntimeClient(LaunchSettings(""))
    empty = tmp_path / "empty"
    empty.mkdir()
    # `python -S` skips site-packages, so an editable install of pvp_runtime (as CI has) cannot
    # leak in: only the (empty) source folder is on the path.
    no_site = tmp_path / "python-without-site-packages"
    no_site.write_text(f"#!/bin/sh\nexec {sys.executable} -S \"$@\"\n")
    no_site.chmod(0o755)
    with pytest.raises(RuntimeProcessError, match="cannot import pvp_runtime .*Runtime source folder"):
        RuntimeClient(LaunchSettings(str(no_site), source_dir=str(empty)), log=lambda line: None)
    # An interpreter whose environment has no torch (a shadowing module makes torch unimportable).
    shadow = tmp_path / "notorch"
    shadow.mkdir()
    (shadow / "torch.py").write_text("raise ModuleNotFoundError(\"No module named 'torch'\")\n")
    launcher = tmp_path / "python-without-torch"
    launcher.write_text(f"#!/bin/sh\nPYTHONPATH={shadow}:$PYTHONPATH exec {sys.executable} \"$@\"\n")
    launcher.chmod(0o755)
    with pytest.raises(PVPError, match="cannot import torch"):
        RuntimeClient(LaunchSettings(str(launcher), source_dir=str(REPO)), log=lambda line: None)
    probe = probe_interpreter(str(launcher), str(REPO))
    assert not probe.ok and "has no torch" in probe.summary
    good = probe_interpreter(sys.executable, str(REPO))
    assert good.ok and "torch 2." in good.summary, good


def test_protocol_mismatch_is_refused():
    from pvp_runtime.server import RuntimeServer
    with pytest.raises(PVPError, match="client speaks protocol 99"):
        RuntimeServer().hello(protocol.Message("hello", {"protocol": 99}))


def test_pvp_serve_probe_describes_the_interpreter(capsys):
    import json
    from pvp_runtime.cli.main import main
    assert main(["serve", "--probe"]) == 0
    info = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert info["ok"] and info["torch"].startswith("2.") and info["python"] == sys.executable


# --------------------------------------------------------------------------- payload limits

CLAIM = 1 << 35  # 32 GiB: under the old 64 GiB sanity bound; allocating it killed the reader thread


def _prefix_claiming(kind: str, fields: dict, payload_len: int) -> bytes:
    import json
    header = json.dumps({**fields, "type": kind}).encode()
    return protocol.PREFIX.pack(protocol.MAGIC, len(header), payload_len) + header


def test_server_refuses_a_request_payload_over_the_limit():
    stream = _prefix_claiming("render", {"frames": 1, "channels": 25, "width": 8, "height": 8}, CLAIM)
    run = measure(f"serve(protocol.stream_reader(io.BytesIO({stream!r})), print, lambda: None, server=object())",
                  setup="import io\nfrom pvp_runtime.contract import protocol\nfrom pvp_runtime.server import serve")
    assert run.value == 2 and run.stdout == ""  # nothing written back, the server exits with a protocol error
    assert run.stderr.strip() == (f"message payload of {CLAIM} bytes is over the "
                                  f"{protocol.MAX_REQUEST_PAYLOAD_BYTES}-byte limit for it")
    assert run.growth < 100 * MB, run.growth


def test_a_reply_payload_larger_than_the_frames_asked_for_is_refused(tmp_path):
    interpreter = _fake_interpreter(tmp_path, "claims", HANDSHAKE + f"""
        out.write({_prefix_claiming("frames", {"count": 1, "width": 8, "height": 8}, CLAIM)!r})
        out.flush()
        time.sleep(600)
    """.replace("\n        ", "\n"))
    setup = (f"import numpy as np\nfrom pvp_runtime.contract.client import LaunchSettings, RuntimeClient\n"
             f"client = RuntimeClient(LaunchSettings({interpreter!r}, frame_timeout=20), log=lambda line: None)")
    run = measure("client.render(np.zeros((1, 25), np.float32), 8, 8)", setup=setup)
    assert run.error == (f"the PVP runtime sent garbage while rendering 1 frame: message payload of {CLAIM} bytes "
                         f"is over the {8 * 8 * 4 * 4}-byte limit for it")
    assert run.growth < 100 * MB, run.growth


def test_a_reader_thread_failure_reaches_the_waiting_request(tmp_path, monkeypatch):
    """Any failure to read a reply (here a MemoryError for a big frame) ends the request at once."""
    interpreter = _fake_interpreter(tmp_path, "replies", HANDSHAKE + """
import numpy as np
protocol.write_message(out.write, "frames", {"count": 1, "width": 32, "height": 32},
                       protocol.array_to_payload(np.zeros((1, 32, 32, 4), np.float32)))
out.flush()
time.sleep(600)
""")
    real_reader = protocol.stream_reader

    def reader_out_of_memory(stream):
        read_exact = real_reader(stream)

        def read(n):
            if n > 4096:
                raise MemoryError("simulated")
            return read_exact(n)
        return read
    monkeypatch.setattr(protocol, "stream_reader", reader_out_of_memory)
    runtime = RuntimeClient(LaunchSettings(interpreter, frame_timeout=20), log=lambda line: None)
    with pytest.raises(RuntimeProcessError) as error:
        runtime.render(np.zeros((1, 25), np.float32), 32, 32)
    assert str(error.value) == ("the PVP runtime's reply could not be read while rendering 1 frame and the runtime "
                                "was stopped (MemoryError: simulated)")
    assert process_gone(runtime.pid)


def test_a_request_over_the_limit_is_refused_before_it_is_sent(tmp_path):
    interpreter = _fake_interpreter(tmp_path, "hangs", HANDSHAKE + "time.sleep(600)\n")
    runtime = RuntimeClient(LaunchSettings(interpreter, frame_timeout=5), log=lambda line: None)
    channels = 256 * MB // 8 + 1  # two frames of this many float32 channels: just over 256 MiB
    with pytest.raises(RuntimeProcessError, match=rf"a render request of 2 frames x {channels} channels is over the "
                                                  r"runtime protocol's \d+-byte limit; send fewer frames at once"):
        runtime.render(np.zeros((2, channels), np.float32), 8, 8)
    assert runtime.alive
    runtime.kill()
