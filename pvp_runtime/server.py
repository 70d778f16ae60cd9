"""The runtime process: ``python -m pvp_runtime.server`` (or ``pvp serve``).

Speaks :mod:`pvp_runtime.contract.protocol` on stdin/stdout and logs to
stderr.  Started by the Blender extension (one process per Blender session);
it holds one loaded subject and renders channel batches with
:class:`~pvp_runtime.avatar.Avatar`.

It never outlives its client: it exits on EOF on stdin (the parent exited or
crashed) and, as a second line of defence, when its parent pid changes.
Anything else that writes to fd 1 (a library's stray ``print``) is redirected
to stderr, because the protocol owns the real stdout.

``--probe`` prints one JSON line describing this interpreter (versions, CUDA)
and exits: the extension's preferences use it to autodetect interpreters.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import sys
import threading
import time

from . import __version__
from .contract import protocol
from .contract.errors import PVPError
from .host_memory import keep_freed_memory, release_freed_memory

log = logging.getLogger("pvp.server")
PARENT_POLL_SECONDS = 1.0


def probe() -> dict:
    try:
        import torch
    except ImportError as exc:
        return {"ok": False, "runtime": __version__, "problem": f"{sys.executable} has no torch ({exc})"}
    try:
        from . import avatar  # noqa: F401  (everything rendering needs imports)
    except ImportError as exc:
        return {"ok": False, "runtime": __version__, "problem": f"pvp_runtime cannot import ({exc})"}
    cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else ""
    return {"ok": True, "runtime": __version__, "torch": torch.__version__, "cuda": cuda,
            "python": sys.executable}


class RuntimeServer:
    """Request handlers.  Holds at most one subject; ``free`` drops it and releases GPU memory."""

    def __init__(self):
        self.avatar = None
        self.bundle_key = None
        self._import_error = None
        try:
            import torch  # noqa: F401
            from .avatar import Avatar  # noqa: F401
        except ImportError as exc:
            # Reported at hello, where the client turns it into a message for the user.
            self._import_error = f"{sys.executable} cannot import torch or the runtime ({exc})"

    def handle(self, message: protocol.Message) -> tuple[str, dict, object]:
        handler = {protocol.HELLO: self.hello, protocol.LOAD: self.load, protocol.RENDER: self.render,
                   protocol.FREE: self.free}.get(message.type)
        if handler is None:
            raise protocol.ProtocolError(f"unknown request type {message.type!r}")
        return handler(message)

    def hello(self, message):
        version = message.require("protocol", int)
        if version != protocol.PROTOCOL_VERSION:
            raise PVPError(f"client speaks protocol {version}, this runtime {protocol.PROTOCOL_VERSION}: "
                           "update the add-on and the runtime together")
        if self._import_error:
            raise PVPError(self._import_error)
        import torch
        cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else ""
        # ``threads``: torch's intra-op threads, so a client (the Blender benchmark) can check that
        # the runtime renders with the same parallelism as an in-process reference.
        return protocol.HELLO, {"protocol": protocol.PROTOCOL_VERSION, "runtime": __version__,
                                "torch": torch.__version__, "cuda": cuda, "pid": os.getpid(),
                                "threads": torch.get_num_threads()}, b""

    def load(self, message):
        from .avatar import Avatar
        path = message.require("bundle", str)
        device = message.fields.get("device", "auto")
        half = bool(message.fields.get("half", False))
        try:
            stat = os.stat(path)
            key = (path, stat.st_mtime_ns, stat.st_size, device, half)
        except OSError:
            key = None  # Avatar.load names the problem
        if key is None or key != self.bundle_key:
            self._drop()
            started = time.perf_counter()
            self.avatar = Avatar.load(path, device=device, half=half)
            self.bundle_key = key
            log.info("loaded %s (%d x %d) on %s in %.2f s", path, self.avatar.resolution, self.avatar.resolution,
                     self.avatar.device, time.perf_counter() - started)
        avatar = self.avatar
        return protocol.LOADED, {"name": avatar.name, "resolution": avatar.resolution,
                                 "num_expressions": avatar.layout.num_expressions,
                                 "channels": list(avatar.layout.names), "device": str(avatar.device)}, b""

    def render(self, message):
        from .canvas import place_on_canvas, warp_on_canvas
        if self.avatar is None:
            raise PVPError("no subject is loaded in the runtime")
        count = message.require("frames", int)
        channels = message.require("channels", int)
        width = message.require("width", int)
        height = message.require("height", int)
        frames = protocol.array_from_payload(message.payload, (count, channels), "render request")
        placement = protocol.placement_from_fields(message, count)
        started = time.perf_counter()
        rendered = self.avatar.render(frames, batch_size=max(1, count), outputs=("linear",)).linear
        try:
            pixels = (place_on_canvas(rendered, width, height) if placement is None
                      else warp_on_canvas(rendered, placement, width, height))
        except ValueError as exc:
            raise PVPError(str(exc)) from None
        log.debug("rendered %d frames in %.3f s", count, time.perf_counter() - started)
        fields = {"count": count, "width": width, "height": height,
                  **({} if placement is None else {"placement": protocol.PLACED})}
        return protocol.FRAMES, fields, protocol.array_to_payload(pixels)

    def free(self, message):
        self._drop()
        return protocol.FREED, {}, b""

    def _drop(self) -> None:
        if self.avatar is None:
            return
        cuda = self.avatar.device.type == "cuda"
        self.avatar = None
        self.bundle_key = None
        gc.collect()
        release_freed_memory()
        if cuda:
            import torch
            torch.cuda.empty_cache()


def serve(read_exact, write, flush, server: RuntimeServer | None = None) -> int:
    """The request loop: one reply per request, until ``shutdown`` or end of input."""
    server = server or RuntimeServer()
    while True:
        try:
            message = protocol.read_message(read_exact, protocol.MAX_REQUEST_PAYLOAD_BYTES)
        except protocol.ConnectionClosed:
            return 0
        except protocol.ProtocolError as exc:
            log.error("%s", exc)
            return 2
        if message.type == protocol.SHUTDOWN:
            protocol.write_message(write, protocol.BYE)
            flush()
            return 0
        try:
            kind, fields, payload = server.handle(message)
        except PVPError as exc:
            kind, fields, payload = protocol.ERROR, protocol.error_fields(exc), b""
        except Exception as exc:  # a bug: report it, keep serving
            log.exception("internal error handling %r", message.type)
            kind, fields, payload = protocol.ERROR, {"error": "RuntimeProcessError",
                                                     "message": f"internal runtime error: {type(exc).__name__}: "
                                                                f"{' '.join(str(exc).split())}"}, b""
        protocol.write_message(write, kind, fields, payload)
        flush()


def _watch_parent(parent_pid: int) -> None:
    while True:
        time.sleep(PARENT_POLL_SECONDS)
        if os.getppid() != parent_pid:
            os._exit(0)  # orphaned: nobody will ever read our output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pvp_runtime.server",
                                     description="PVP Avatar runtime process (protocol on stdin/stdout).")
    parser.add_argument("--probe", action="store_true", help="print this interpreter's capabilities as JSON")
    parser.add_argument("--parent-pid", type=int, help="exit when this process is no longer our parent")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    if args.probe:
        print(json.dumps(probe()))
        return 0
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    keep_freed_memory()
    # The protocol owns the real stdout; everything else printing to fd 1 goes to stderr.
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    if args.parent_pid:
        threading.Thread(target=_watch_parent, args=(args.parent_pid,), daemon=True).start()
    try:
        code = serve(protocol.stream_reader(sys.stdin.buffer), out.write, out.flush)
    except (BrokenPipeError, KeyboardInterrupt):
        code = 0
    # Leave at once: the client is gone or done, nothing here needs cleaning up, and interpreter
    # teardown with torch loaded can take seconds on a busy machine (a farm node waiting to quit).
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
