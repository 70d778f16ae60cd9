"""Writing a file so that readers see the old one or the whole new one, never half of it.

Every file the product writes for a user (bundles, checkpoints, channel clips, reports, the
aligned clip cache) goes through :func:`replacing`.  A crash, a kill or a failed check while
writing leaves the earlier file as it was and no temporary file behind.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def replacing(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block succeeds it becomes ``path``.

    Write (and check, e.g. read back) the temporary file inside the block.  On success it is
    flushed to disk and renamed over ``path`` in one step; on any exception it is removed and
    ``path`` is untouched.  The temporary name keeps ``path``'s suffix (or ``suffix``), because
    writers such as ``np.save`` and image encoders choose the format from it.
    """
    path = Path(path)
    suffix = path.suffix if suffix is None else suffix
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial{suffix}")
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomically(path: str | os.PathLike, text: str) -> None:
    with replacing(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
