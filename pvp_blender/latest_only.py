"""A worker thread that runs only the newest request: previews while the animator scrubs.

Every frame change asks for a preview render.  Rendering each request (a thread per request,
all waiting on the runtime) would queue N renders behind a scrub and show the frame the
animator left long ago.  Here one thread serves one slot: a request submitted while another
waits replaces it (the replaced one's Future is cancelled, never run), so at most the render
in progress and the newest request exist at any time.  No bpy.
"""

from __future__ import annotations

import concurrent.futures
import threading


class LatestOnlyWorker:
    def __init__(self, name: str = "pvp-latest-only"):
        self.name = name
        self._lock = threading.Lock()
        self._waiting: tuple | None = None  # (future, fn, args): the newest request not yet started
        self._thread: threading.Thread | None = None  # alive only while there is work

    def submit(self, fn, *args) -> concurrent.futures.Future:
        """Run ``fn(*args)`` on the worker when it is free, unless a newer request comes first.
        Returns at once with a Future (cancelled if superseded)."""
        future: concurrent.futures.Future = concurrent.futures.Future()
        with self._lock:
            if self._waiting is not None:
                self._waiting[0].cancel()
            self._waiting = (future, fn, args)
            if self._thread is None:
                # A daemon thread, not a ThreadPoolExecutor: Python joins executor threads at exit,
                # and a job waiting on a slow runtime must never keep Blender from quitting.
                self._thread = threading.Thread(target=self._serve, name=self.name, daemon=True)
                self._thread.start()
        return future

    def _serve(self) -> None:
        while True:
            with self._lock:
                if self._waiting is None:
                    # Nothing left: end the thread (an idle thread parked until exit makes the 4.x
                    # wheels fail to quit); the next submit starts another.
                    self._thread = None
                    return
                (future, fn, args), self._waiting = self._waiting, None
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args))
            except BaseException as exc:  # handed to whoever reads the future
                future.set_exception(exc)
