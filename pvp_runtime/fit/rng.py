"""Reproducible randomness that survives a resume.

Every random draw of a training step comes from a generator seeded by
``(run seed, stage, step)``, never from a running global stream.  A resumed
run therefore draws exactly what the uninterrupted run drew, with no RNG
state to save, and a step can be replayed on its own.
"""

from __future__ import annotations

import hashlib

import torch


def derived_seed(seed: int, *parts) -> int:
    digest = hashlib.sha256(":".join(str(p) for p in (seed, *parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def step_generator(seed: int, stage: str, step: int) -> torch.Generator:
    """A CPU generator for one step; draw on the CPU and move, so CPU and CUDA runs match."""
    return torch.Generator().manual_seed(derived_seed(seed, stage, step))
