"""One runtime process for the whole Blender session, and the frames it has rendered ahead.

Blender creates a new render engine instance for every frame, so the
connection lives here, at module level (:data:`SESSION`).  No bpy: the
engine, the preview operator and the viewport call into this, and the tests
drive it directly.

Prefetching: on a frame that is not cached, the engine evaluates the rig for
the next few frames of the animation and asks for all of them in one request
(:meth:`RuntimeSession.render`); the following frames then find their image in
the cache.  A cached image is used only if the frame's channels are bit-equal
to what was rendered, so a prefetch that read the rig differently from the
real frame costs time, never correctness.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import time
from dataclasses import dataclass

import numpy as np

from ..pvp_runtime.contract.client import LaunchSettings, RuntimeClient
from ..pvp_runtime.contract.errors import PVPError, RuntimeProcessError
from ..pvp_runtime.contract.subject_manifest import SubjectSummary
from .interpreters import AutoDetect

# A prefetch batch never holds more than this many bytes of float pixels (4K frames are 133 MB each).
PREFETCH_BUDGET_BYTES = 512 * 1024 * 1024


@dataclass(frozen=True)
class RuntimeOptions:
    launch: LaunchSettings
    device: str = "auto"
    half: bool = False
    batch_size: int = 8


@dataclass
class SessionStats:
    processes_started: int = 0
    loads: int = 0
    requests: int = 0
    frames_rendered: int = 0
    cache_hits: int = 0


def prefetch_frames(current: int, end: int, step: int, batch_size: int, frame_bytes: int,
                    budget_bytes: int = PREFETCH_BUDGET_BYTES) -> list[int]:
    """The frames to render together when ``current`` is not cached: ``current`` and the next
    frames of the animation, up to the batch size and the memory budget."""
    count = max(1, min(int(batch_size), budget_bytes // max(1, frame_bytes)))
    if step < 1 or end <= current:
        return [current]
    return list(range(current, end + 1, step))[:count]


def subject_key(path: str) -> tuple:
    """Identifies a bundle's content well enough to know when to reload it."""
    try:
        stat = os.stat(path)
    except OSError:
        return (path,)
    return (path, stat.st_mtime_ns, stat.st_size)


@dataclass
class _Cached:
    key: tuple
    channels: bytes
    image: np.ndarray


def _request_bytes(channels: np.ndarray, placement: np.ndarray | None) -> bytes:
    """What a cached frame must match: its channels and where it was placed (camera or rig moves)."""
    placed = b"" if placement is None else np.asarray(placement, dtype=np.float64).tobytes()
    return np.asarray(channels, dtype=np.float32).tobytes() + placed


class RuntimeSession:
    def __init__(self, client_factory=RuntimeClient, autodetect: AutoDetect | None = None):
        self._client_factory = client_factory
        # Launch settings without an interpreter get one here, where the process starts: on a
        # worker or render thread, as finding one probes interpreters (seconds), never on the UI's.
        self.autodetect = autodetect or AutoDetect()
        self._client: RuntimeClient | None = None
        self._launch: LaunchSettings | None = None
        self._loaded: tuple | None = None
        self._cache: dict[int, _Cached] = {}
        self._lock = threading.RLock()
        self._summaries: dict[tuple, SubjectSummary] = {}
        self.stats = SessionStats()
        self.last_error = ""
        # Where the runtime's stderr is appended (set by the add-on to a file in its user folder),
        # besides Blender's console: something to attach to a bug report.
        self.log_file: str | None = None

    def _log_line(self, line: str) -> None:
        print(f"pvp runtime: {line}", file=sys.stderr)
        if self.log_file:
            try:
                with open(self.log_file, "a", encoding="utf-8") as handle:
                    handle.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")
            except OSError:
                self.log_file = None  # unwritable: keep the console log only

    # -- state shown in the UI

    @property
    def pid(self) -> int | None:
        client = self._client
        return client.pid if client is not None and client.alive else None

    @property
    def info(self) -> dict:
        """The running runtime's hello reply (versions, device, torch threads); empty when none runs."""
        client = self._client
        return dict(client.info) if client is not None and client.alive else {}

    def status(self) -> str:
        client = self._client
        if client is None or not client.alive:
            return f"not running{' (last error: ' + self.last_error + ')' if self.last_error else ''}"
        info = client.info
        device = f"CUDA {info['cuda']}" if info.get("cuda") else "CPU"
        threads = f", {info['threads']} threads" if info.get("threads") else ""
        loaded = f", subject {os.path.basename(self._loaded[0][0])}" if self._loaded else ", no subject loaded"
        return f"running (pid {client.pid}, torch {info.get('torch')}, {device}{threads}{loaded})"

    # -- subjects

    def subject(self, path: str) -> SubjectSummary:
        """The bundle's manifest summary (read with zipfile + json, cached while the file is unchanged)."""
        key = subject_key(path)
        summary = self._summaries.get(key)
        if summary is None:
            summary = SubjectSummary.read(path)
            self._summaries = {key: summary}
        return summary

    # -- the process

    def _client_for(self, options: RuntimeOptions) -> RuntimeClient:
        launch = self.autodetect.resolve(options.launch)
        client = self._client
        if client is not None and client.alive and self._launch == launch:
            return client
        self._stop_client()
        try:
            self._client = self._client_factory(launch, log=self._log_line)
        except PVPError as exc:
            self.last_error = str(exc)
            raise
        self._launch = launch
        self.stats.processes_started += 1
        self.last_error = ""
        return self._client

    def _stop_client(self) -> None:
        if self._client is not None:
            self._client.close()
        self._client = None
        self._loaded = None
        self._cache.clear()

    def _ensure_loaded(self, client: RuntimeClient, options: RuntimeOptions, subject: SubjectSummary) -> None:
        key = (subject_key(subject.path), options.device, options.half)
        if self._loaded == key:
            return
        self._loaded = None
        self._cache.clear()
        info = client.load(subject.path, device=options.device, half=options.half)
        if tuple(info.get("channels", ())) != subject.layout.names:
            raise RuntimeProcessError(f"the runtime reads {subject.path} with a different channel layout than the "
                                      "add-on: update the add-on and the runtime together")
        self._loaded = key
        self.stats.loads += 1

    # -- rendering

    def lookup(self, subject: SubjectSummary, width: int, height: int, frame: int,
               channels: np.ndarray, placement: np.ndarray | None = None) -> np.ndarray | None:
        with self._lock:
            cached = self._cache.get(frame)
            if cached is None or cached.key != (subject_key(subject.path), width, height):
                return None
            if cached.channels != _request_bytes(channels, placement):
                return None
            self.stats.cache_hits += 1
            return cached.image

    def render(self, options: RuntimeOptions, subject: SubjectSummary, frames: list[int], channels: np.ndarray,
               width: int, height: int, placement: np.ndarray | None = None) -> np.ndarray:
        """Render ``channels`` ([F, C], one row per entry of ``frames``) on a ``width`` x ``height`` canvas,
        placed by ``placement`` ([F, 2, 3] affines, crop px -> canvas px) or centred (None).

        Returns ``[F, height, width, 4]`` float32 linear premultiplied, top row first, and
        keeps them as the cache (replacing the previous batch: memory stays bounded).
        """
        channels = np.ascontiguousarray(channels, dtype=np.float32)
        with self._lock:
            client = self._client_for(options)
            try:
                self._ensure_loaded(client, options, subject)
                images = (client.render(channels, width, height) if placement is None
                          else client.render(channels, width, height, placement=placement))
            except RuntimeProcessError as exc:
                self.last_error = str(exc)
                if not client.alive:
                    self._stop_client()
                raise
            self.stats.requests += 1
            self.stats.frames_rendered += len(frames)
            key = (subject_key(subject.path), width, height)
            rows = [_request_bytes(row, None if placement is None else placement[i]) for i, row in enumerate(channels)]
            self._cache = {frame: _Cached(key, row, image) for frame, row, image in zip(frames, rows, images)}
            return images

    def free(self) -> bool:
        """Drop the subject and release the runtime's (GPU) memory; the process stays for the next render.
        Returns whether a runtime was running."""
        with self._lock:
            self._cache.clear()
            client = self._client
            if client is None or not client.alive:
                return False
            self._loaded = None
            client.free()
            return True

    def shutdown(self) -> None:
        """End the runtime process (Blender exits, the add-on is disabled).

        Takes no lock: a preview job may hold it while it waits on the runtime, and
        quitting must not wait for that.  The waiting job then fails cleanly.
        """
        client, self._client = self._client, None
        self._loaded = None
        self._cache = {}
        if client is not None:
            client.close()


SESSION = RuntimeSession()
# Python's atexit runs when Blender finalizes, also after `blender -b ... -a`.  Even without it
# (a crash), the runtime exits on EOF on its stdin; this just makes the exit immediate.
atexit.register(SESSION.shutdown)
