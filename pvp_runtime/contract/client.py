"""Start the runtime process and talk to it (torch-free: the Blender extension ships this).

The runtime runs as ``<interpreter> -m pvp_runtime.server`` with the protocol
on its stdin/stdout (:mod:`.protocol`) and its log on stderr.  Design choices,
each against a failure users of model-running add-ons report:

* **Dies with its parent.**  The server exits on EOF on stdin, which the OS
  delivers when the parent exits or crashes, and also watches its parent pid.
  Nothing here waits on the child without a timeout, and every thread is a
  daemon, so ``blender -b`` can always quit.
* **No silent hangs.**  Every reply has a deadline; on a timeout the process
  is killed and the caller gets a one-line :class:`RuntimeProcessError`.
* **Clear diagnosis.**  A missing interpreter, a missing ``pvp_runtime`` or
  ``torch`` in it, and crashes are named, with the last line the runtime wrote.
* **No code from shared folders.**  Every start (probe, detect, serve) runs in a
  fresh private working directory with PYTHONSAFEPATH set, so a module planted in
  the system temp folder or Blender's cwd is never imported.
* **Portable.**  Replies are read by a reader thread into a queue (``select``
  does not work on Windows pipes).
"""

from __future__ import annotations

import collections
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from . import protocol
from .errors import RuntimeProcessError

SERVER_MODULE = "pvp_runtime.server"
CLIENT_NAME = "pvp-avatar client"
_STOP = object()


@dataclass(frozen=True)
class LaunchSettings:
    """How to start the runtime.  ``source_dir`` (optional) is put on PYTHONPATH: a checkout
    that holds the full ``pvp_runtime`` package, for interpreters it is not installed into."""

    interpreter: str
    source_dir: str = ""
    startup_timeout: float = 120.0  # importing torch on a cold disk can take a while
    load_timeout: float = 300.0
    frame_timeout: float = 60.0     # per frame of a render request

    def describe(self) -> str:
        return self.interpreter + (f" (PYTHONPATH {self.source_dir})" if self.source_dir else "")


def resolve_interpreter(interpreter: str) -> str:
    """An absolute path to an executable, or a one-line error saying what is wrong."""
    if not interpreter or not interpreter.strip():
        raise RuntimeProcessError("no runtime Python interpreter is set: choose one in "
                                  "Preferences > Add-ons > PVP Avatar (it needs torch and pvp_runtime)")
    interpreter = os.path.expanduser(interpreter.strip())
    if os.sep in interpreter or (os.altsep and os.altsep in interpreter):
        if not os.path.isfile(interpreter):
            raise RuntimeProcessError(f"runtime interpreter not found: {interpreter}")
        if not os.access(interpreter, os.X_OK):
            raise RuntimeProcessError(f"runtime interpreter is not executable: {interpreter}")
        return os.path.abspath(interpreter)
    found = shutil.which(interpreter)
    if not found:
        raise RuntimeProcessError(f"runtime interpreter {interpreter!r} is not on PATH")
    return found


def runtime_environment(source_dir: str = "") -> dict:
    """The child's environment: the parent's, minus anything that points Python at Blender's own
    library (PYTHONHOME/PYTHONPATH would make the runtime's interpreter import the wrong stdlib)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "PYTHONPATH", "PYTHONSTARTUP")}
    if source_dir:
        env["PYTHONPATH"] = os.path.abspath(os.path.expanduser(source_dir))
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("PYTHONIOENCODING", "utf-8")
    return env


def private_workdir() -> str:
    """A new, empty folder only this user can write to: the runtime's working directory.

    A shared temp folder must never be the child's cwd: on Python < 3.11 ``-m`` puts cwd first
    on ``sys.path``, so anyone who can write ``/tmp/torch.py`` or ``/tmp/pvp_runtime/`` would
    run code as the artist.  ``mkdtemp`` makes the folder fresh with mode 0700.
    """
    return tempfile.mkdtemp(prefix="pvp-runtime-")


def remove_workdir(path: str | None) -> None:
    if path:
        shutil.rmtree(path, ignore_errors=True)


def _popen(args: list[str], source_dir: str, workdir: str, **kwargs) -> subprocess.Popen:
    """Start ``args`` safely: a private, fresh working directory and, on Python >= 3.11,
    PYTHONSAFEPATH (the same as ``-P``), so neither cwd nor the script folder is searched for
    modules.  ``-I`` is not used because it also drops PYTHONPATH, which carries ``source_dir``."""
    flags = getattr(subprocess, "CREATE_NO_WINDOW", 0) if os.name == "nt" else 0
    env = runtime_environment(source_dir)
    env["PYTHONSAFEPATH"] = "1"
    return subprocess.Popen(args, env=env, cwd=workdir, creationflags=flags, **kwargs)


# --------------------------------------------------------------------------- probing

@dataclass(frozen=True)
class ProbeResult:
    interpreter: str
    ok: bool
    summary: str  # one line: versions and device, or what is missing


def probe_interpreter(interpreter: str, source_dir: str = "", timeout: float = 60.0) -> ProbeResult:
    """Can this interpreter run the runtime?  Runs ``-m pvp_runtime.server --probe``."""
    try:
        path = resolve_interpreter(interpreter)
    except RuntimeProcessError as exc:
        return ProbeResult(interpreter, False, str(exc))
    workdir = private_workdir()
    try:
        process = _popen([path, "-m", SERVER_MODULE, "--probe"], source_dir, workdir,
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        return ProbeResult(path, False, f"no answer within {timeout:.0f} s")
    except OSError as exc:
        return ProbeResult(path, False, f"cannot run: {exc.strerror or exc}")
    finally:
        remove_workdir(workdir)
    try:
        info = json.loads(out.decode("utf-8", "replace").strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        return ProbeResult(path, False, diagnose_stderr(path, err.decode("utf-8", "replace").splitlines(),
                                                       source_dir))
    if not info.get("ok"):
        return ProbeResult(path, False, info.get("problem", "unusable"))
    return ProbeResult(path, True, f"pvp_runtime {info.get('runtime')}, torch {info.get('torch')}, "
                                   f"{'CUDA: ' + info['cuda'] if info.get('cuda') else 'CPU only'}")


def diagnose_stderr(interpreter: str, lines: list[str], source_dir: str = "") -> str:
    """One line that says why the runtime would not start, from what it wrote to stderr."""
    text = "\n".join(lines)
    if "No module named 'pvp_runtime'" in text or "No module named pvp_runtime" in text:
        where = f" (looked in PYTHONPATH {source_dir})" if source_dir else ""
        return (f"{interpreter} cannot import pvp_runtime{where}: install PVP Avatar's runtime into that "
                "environment, or set 'Runtime source folder' in the add-on preferences")
    if "No module named 'torch'" in text:
        return f"{interpreter} has no torch: install torch into that environment or pick another interpreter"
    last = next((line.strip() for line in reversed(lines) if line.strip()), "")
    return last or "it wrote nothing to stderr"


# --------------------------------------------------------------------------- the client

class RuntimeClient:
    """One runtime process.  Thread-safe: one request at a time."""

    def __init__(self, settings: LaunchSettings, log: Callable[[str], None] | None = None):
        self.settings = settings
        self._log = log or (lambda line: print(f"pvp runtime: {line}", file=sys.stderr))
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=40)
        self._replies: queue.Queue = queue.Queue()
        self._reply_payload_limit = 0  # bytes the awaited reply may carry; set per request
        self._lock = threading.Lock()
        self._closed = False
        self.interpreter = resolve_interpreter(settings.interpreter)
        self._workdir = private_workdir()
        try:
            self._process = _popen([self.interpreter, "-m", SERVER_MODULE, "--parent-pid", str(os.getpid())],
                                   settings.source_dir, self._workdir, stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        except OSError as exc:
            remove_workdir(self._workdir)
            raise RuntimeProcessError(f"cannot start runtime interpreter {self.interpreter}: "
                                      f"{exc.strerror or exc}") from None
        threading.Thread(target=self._read_replies, name="pvp-runtime-replies", daemon=True).start()
        threading.Thread(target=self._read_stderr, name="pvp-runtime-stderr", daemon=True).start()
        try:
            reply = self._request(protocol.HELLO, {"protocol": protocol.PROTOCOL_VERSION, "client": CLIENT_NAME},
                                  timeout=settings.startup_timeout, doing="starting")
        except BaseException:
            self.close()
            raise
        self.info = reply.fields
        if reply.fields.get("protocol") != protocol.PROTOCOL_VERSION:
            self.close()
            raise RuntimeProcessError(f"runtime speaks protocol {reply.fields.get('protocol')}, this add-on "
                                      f"{protocol.PROTOCOL_VERSION}: update the add-on and the runtime together")

    # -- process

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def alive(self) -> bool:
        return not self._closed and self._process.poll() is None

    @property
    def stderr_tail(self) -> list[str]:
        return list(self._stderr_tail)

    def _read_replies(self) -> None:
        read_exact = protocol.stream_reader(self._process.stdout)
        while True:
            try:
                message = protocol.read_message(read_exact, lambda: self._reply_payload_limit)
            except protocol.ConnectionClosed:
                self._replies.put(_STOP)
                return
            except Exception as exc:  # MemoryError too: the waiting request must hear of it, not time out
                self._replies.put(exc)
                return
            self._replies.put(message)

    def _read_stderr(self) -> None:
        try:
            for raw in iter(self._process.stderr.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip()
                self._stderr_tail.append(line)
                self._log(line)
        except (OSError, ValueError):
            pass

    def close(self, timeout: float = 3.0) -> None:
        """Ask the runtime to exit, then make sure it has (kill after ``timeout``)."""
        if self._closed:
            return
        self._closed = True
        process = self._process
        if process.poll() is None:
            try:
                protocol.write_message(process.stdin.write, protocol.SHUTDOWN)
                process.stdin.flush()
            except (OSError, ValueError):
                pass
        try:
            process.stdin.close()
        except (OSError, ValueError):
            pass
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout)
        remove_workdir(self._workdir)

    def kill(self) -> None:
        self._closed = True
        if self._process.poll() is None:
            self._process.kill()
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        remove_workdir(self._workdir)

    # -- requests

    def _request(self, kind: str, fields: dict | None = None, payload=b"", timeout: float = 60.0,
                 doing: str = "working", reply_payload: int = 0) -> protocol.Message:
        """Send one request and wait for its reply, whose payload may hold ``reply_payload`` bytes."""
        with self._lock:
            if self._closed:
                raise RuntimeProcessError("the PVP runtime was stopped")
            self._reply_payload_limit = reply_payload
            try:
                protocol.write_message(self._process.stdin.write, kind, fields, payload)
                self._process.stdin.flush()
            except (OSError, ValueError):
                raise self._died(doing) from None
            try:
                reply = self._replies.get(timeout=timeout)
            except queue.Empty:
                self.kill()
                raise RuntimeProcessError(
                    f"the PVP runtime did not answer within {timeout:.0f} s while {doing} and was stopped "
                    f"(if it is only slow, raise the timeouts in the add-on preferences)") from None
            if reply is _STOP:
                raise self._died(doing)
            if isinstance(reply, protocol.ProtocolError):
                self.kill()
                raise RuntimeProcessError(f"the PVP runtime sent garbage while {doing}: {reply}")
            if isinstance(reply, Exception):
                self.kill()
                detail = type(reply).__name__
                if str(reply).strip():
                    detail += ": " + " ".join(str(reply).split())
                raise RuntimeProcessError(f"the PVP runtime's reply could not be read while {doing} and the "
                                          f"runtime was stopped ({detail})")
            if reply.type == protocol.ERROR:
                protocol.raise_error_reply(reply)
            return reply

    def _died(self, doing: str) -> RuntimeProcessError:
        self._closed = True
        try:
            code = self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            code = "killed"
        remove_workdir(self._workdir)
        time.sleep(0.05)  # let the stderr reader catch the last lines
        reason = diagnose_stderr(self.interpreter, self.stderr_tail, self.settings.source_dir)
        return RuntimeProcessError(f"the PVP runtime exited unexpectedly (exit code {code}) while {doing}: {reason}")

    def load(self, bundle: str, device: str = "auto", half: bool = False) -> dict:
        reply = self._request(protocol.LOAD, {"bundle": os.path.abspath(bundle), "device": device, "half": half},
                              timeout=self.settings.load_timeout, doing=f"loading {bundle}")
        return reply.fields

    def render(self, frames: np.ndarray, width: int, height: int, placement: np.ndarray | None = None) -> np.ndarray:
        """``[F, C]`` channels -> ``[F, height, width, 4]`` float32 linear premultiplied, top row first.
        ``placement``: ``[F, 2, 3]`` affines placing each crop on the canvas (None: centred)."""
        frames = np.ascontiguousarray(frames, dtype=protocol.FLOAT32)
        if frames.ndim != 2:
            raise ValueError(f"frames must be [F, C], got shape {frames.shape}")
        count = len(frames)
        if frames.nbytes > protocol.MAX_REQUEST_PAYLOAD_BYTES:
            raise RuntimeProcessError(f"a render request of {count} frames x {frames.shape[1]} channels is over the "
                                      f"runtime protocol's {protocol.MAX_REQUEST_PAYLOAD_BYTES}-byte limit; "
                                      f"send fewer frames at once")
        pixels_bytes = count * int(height) * int(width) * 4 * protocol.FLOAT32.itemsize
        reply = self._request(protocol.RENDER, {"frames": count, "channels": frames.shape[1], "width": int(width),
                                                "height": int(height), **protocol.placement_fields(placement)},
                              protocol.array_to_payload(frames),
                              timeout=self.settings.frame_timeout * max(1, count),
                              doing=f"rendering {count} frame{'s' if count != 1 else ''}", reply_payload=pixels_bytes)
        if reply.type != protocol.FRAMES or reply.fields.get("count") != count:
            raise protocol.ProtocolError(f"expected {count} frames, got a '{reply.type}' reply")
        if placement is not None and reply.fields.get(protocol.PLACEMENT) != protocol.PLACED:
            raise RuntimeProcessError("the runtime cannot place the avatar in the shot (it predates placement): "
                                      "update the runtime, or tick the rig's 'Lock to frame centre'")
        return protocol.array_from_payload(reply.payload, (count, int(height), int(width), 4), "frames reply")

    def free(self) -> None:
        self._request(protocol.FREE, timeout=self.settings.load_timeout, doing="freeing memory")
