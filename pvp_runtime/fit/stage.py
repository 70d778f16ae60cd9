"""The shape every iterative stage of a fit shares, and the loop that drives them.

A stage is a resumable optimisation: ``step(i)`` does step ``i`` (drawing its
randomness from :func:`rng.step_generator`), ``state()``/``load_state()`` carry
its optimiser and progress through a checkpoint, ``converged`` ends it early.
:func:`run_stage` adds the long-job hygiene once for all of them: tqdm with the
current losses, a checkpoint every N steps or T seconds, a graceful stop on
Ctrl-C that checkpoints at the last finished step, and a stop at the first
non-finite loss (:mod:`finite`; the checkpoint itself refuses non-finite tensors).
"""

from __future__ import annotations

import logging
import math
import signal
import threading
import time
from typing import Callable

import torch
from tqdm import tqdm

from .finite import FitDiverged, non_finite_loss

log = logging.getLogger(__name__)


class FitInterrupted(Exception):
    """Raised after an interrupted fit wrote its checkpoint; ``pvp fit --resume`` continues it."""

    def __init__(self, stage: str, step: int):
        super().__init__(f"interrupted in stage {stage} at step {step}; checkpoint saved")
        self.stage, self.step = stage, step


class TrainingStage:
    name = "stage"
    total_steps = 0

    @property
    def converged(self) -> bool:
        return False

    def step(self, index: int) -> dict[str, float]:
        raise NotImplementedError

    def state(self) -> tuple[dict[str, torch.Tensor], dict]:
        return {}, {}

    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict) -> None:
        pass


class InterruptGuard:
    """Turns the first Ctrl-C into a request to stop at the next step boundary.

    Stopping mid-step could leave an optimiser half-applied; at a boundary the
    state is whole and checkpointable.  A second Ctrl-C aborts at once (the last
    periodic checkpoint still stands).
    """

    def __init__(self):
        self.requested = False
        self._previous = None

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        log.warning("interrupt received: stopping after this step and saving a checkpoint "
                    "(press Ctrl-C again to abort without one)")

    def __enter__(self) -> "InterruptGuard":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


class LossHistory:
    """Mean losses over windows of steps, bounded to about ``points`` records per stage."""

    def __init__(self, total_steps: int, points: int = 200, records: list | None = None,
                 pending: dict | None = None):
        self.every = max(1, math.ceil(total_steps / points))
        self.records: list[dict] = list(records or [])
        self.pending = dict(pending or {"count": 0, "sums": {}})

    def add(self, step: int, losses: dict[str, float]) -> None:
        self.pending["count"] += 1
        for key, value in losses.items():
            self.pending["sums"][key] = self.pending["sums"].get(key, 0.0) + float(value)
        if step % self.every == 0:
            self.flush(step)

    def flush(self, step: int) -> None:
        count = self.pending["count"]
        if count:
            self.records.append({"step": step, **{k: v / count for k, v in self.pending["sums"].items()}})
        self.pending = {"count": 0, "sums": {}}

    def to_dict(self) -> dict:
        return {"records": self.records, "pending": self.pending}


def format_losses(losses: dict[str, float]) -> dict[str, str]:
    return {key: f"{value:.4g}" for key, value in losses.items()}


def run_stage(stage: TrainingStage, start: int, history: LossHistory, save: Callable[[int], None],
              guard: InterruptGuard, every_steps: int, every_seconds: float,
              on_step: Callable[[str, int], None] | None = None) -> int:
    """Run ``stage`` from step ``start``; returns the number of steps done in total.

    ``save(step)`` writes a checkpoint whose stage progress is ``step`` finished
    steps.  ``on_step(stage, step)`` is called after every step (tests use it to
    interrupt at a chosen point).  Step ``n`` in messages is the n-th step (index n - 1).
    Raises :class:`FitDiverged` at the first non-finite loss, before anything is saved.
    """
    last_save = time.monotonic()
    step = start
    with tqdm(total=stage.total_steps, initial=start, desc=stage.name, unit="step", disable=None,
              dynamic_ncols=True, leave=True) as bar:
        while step < stage.total_steps and not stage.converged:
            losses = stage.step(step)
            step += 1
            problem = non_finite_loss(losses)
            if problem is not None:
                raise FitDiverged(f"in stage {stage.name} at step {step}", problem)
            history.add(step, losses)
            bar.update(1)
            bar.set_postfix(format_losses(losses), refresh=False)
            if on_step is not None:
                on_step(stage.name, step)
            if guard.requested:
                save(step)
                raise FitInterrupted(stage.name, step)
            if step % every_steps == 0 or time.monotonic() - last_save >= every_seconds:
                save(step)
                last_save = time.monotonic()
                log.info("%s step %d/%d %s (checkpoint saved)", stage.name, step, stage.total_steps,
                         " ".join(f"{k}={v}" for k, v in format_losses(losses).items()))
    history.flush(step)
    return step
