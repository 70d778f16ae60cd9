"""Keep freed host memory inside a render process instead of handing it back to the OS.

Why: a synthesis pass allocates and frees activations of tens of megabytes per layer (a
128-channel 256 x 256 map is 32 MB per frame).  glibc serves blocks that large with ``mmap``
and unmaps them on ``free``, so every pass page-faults its whole working set in again: at
256 px config-f on a CPU that was ~130,000 minor faults per frame and a third of the wall time
spent in the kernel zeroing pages.  A renderer runs the same shapes over and over, so it is
better off keeping its peak heap: with mmap off and automatic trimming off, the second pass
and every later one reuse the pages of the first.  ``release_freed_memory`` gives the unused
pages back on demand (the runtime's "free" request).

Only the process entry points (``pvp``, the runtime server, the benchmarks) call this: a library
import must not change a host application's allocator.  Elsewhere than glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import logging
import sys

log = logging.getLogger(__name__)

# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_NEVER_TRIM = 2 ** 31 - 1  # the largest value mallopt takes (an int)


def _glibc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


def keep_freed_memory() -> bool:
    """Serve large blocks from the heap and stop trimming it; True where that took effect."""
    libc = _glibc()
    if libc is None:
        return False
    ok = bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, _NEVER_TRIM))
    log.debug("keeping freed host memory in the process: %s", ok)
    return ok


def release_freed_memory() -> None:
    """Return the heap's free pages to the OS (after a subject is unloaded)."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)
