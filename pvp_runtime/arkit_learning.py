"""Learning an ARKit -> FLAME map from one performance captured twice (``pvp learn-arkit-map``).

The actor is recorded by Live Link Face (ARKit weights per frame) and the same take's video is
tracked by DECA / EMOCA / SMIRK (FLAME channels per frame).  A map is a regularised linear fit
``channels = W @ arkit + b`` (ridge regression, the penalty chosen by cross-validation), judged by
R^2 on the last part of the take, which the fit never saw: a map that only memorised the
training frames, or a pairing that is off by a few frames, shows up there.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from .contract.arkit import ARKIT_NAMES, ArkitMap
from .contract.channel_files import ChannelClip
from .contract.channels import ChannelLayout
from .contract.errors import ChannelError, PVPError
from .formats.live_link import LiveLinkCapture

log = logging.getLogger("pvp.arkit")
ALPHAS = np.logspace(-6, 2, 17)
MIN_FRAMES = 20


@dataclass
class LearntMap:
    arkit_map: ArkitMap
    r2: np.ndarray          # [M] held-out R^2 per target (NaN: the target does not move there)
    spread: np.ndarray      # [M] the target's standard deviation over the take
    frames: int
    held_out: int
    alpha: float


def paired_frames(capture: LiveLinkCapture, clip: ChannelClip, channels_fps: float | None,
                  source: str) -> tuple[np.ndarray, np.ndarray, str]:
    """``(arkit [F, 52], channels [F, C], how)``: frame by frame when the counts agree, else by time."""
    if len(capture.row_arkit) == len(clip.frames):
        return capture.row_arkit, clip.frames, f"frame by frame ({len(clip.frames)} frames each)"
    fps = channels_fps or clip.fps
    if not fps:
        raise ChannelError(f"{source}: holds {len(clip.frames)} frames, the capture {len(capture.row_arkit)}, and it "
                           "has no frame rate to align them by time: pass --channels-fps")
    times = np.arange(len(clip.frames)) / fps
    inside = times <= capture.row_times[-1] + 1e-9
    arkit = np.stack([np.interp(times[inside], capture.row_times, capture.row_arkit[:, c])
                      for c in range(len(ARKIT_NAMES))], axis=1)
    return arkit, clip.frames[inside], (f"by time: {int(inside.sum())} frames at {fps:g} fps against the capture's "
                                        f"timecode ({capture.timecode_rate:g} fps)")


def learn_map(arkit: np.ndarray, channels: np.ndarray, layout: ChannelLayout, targets: list[str],
              held_out_fraction: float = 0.2, source: str = "") -> LearntMap:
    """Fit ``targets`` from the ARKit weights; R^2 on the last ``held_out_fraction`` of the frames."""
    from sklearn.linear_model import RidgeCV  # fitting code: never imported by the Blender extension

    frames = len(arkit)
    held_out = int(round(frames * held_out_fraction))
    if frames - held_out < MIN_FRAMES or held_out < 2:
        raise PVPError(f"{source}: {frames} paired frames are too few to fit and check a map "
                       f"(need {MIN_FRAMES + 2} or more)")
    columns = [layout.index(name) for name in targets]
    y = channels[:, columns].astype(np.float64)
    x = arkit.astype(np.float64)
    split = frames - held_out
    trial = RidgeCV(alphas=ALPHAS).fit(x[:split], y[:split])
    predicted = trial.predict(x[split:])
    r2 = _r2(y[split:], predicted)
    final = RidgeCV(alphas=ALPHAS).fit(x, y)
    arkit_map = ArkitMap(ARKIT_NAMES, tuple(targets), np.atleast_2d(final.coef_), np.atleast_1d(final.intercept_),
                         source="pvp learn-arkit-map", r2=r2)
    return LearntMap(arkit_map, r2, y.std(axis=0), frames, held_out, float(final.alpha_))


def _r2(truth: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    residual = ((truth - predicted) ** 2).sum(axis=0)
    spread = ((truth - truth.mean(axis=0)) ** 2).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(spread > 1e-12 * len(truth), 1.0 - residual / spread, np.nan)


def judged_score(r2: np.ndarray) -> float | None:
    """The mean held-out R^2 over the targets that move there (None when none does)."""
    finite = r2[np.isfinite(r2)]
    return float(finite.mean()) if finite.size else None


def r2_table(learnt: LearntMap) -> str:
    lines = [f"{'channel':<10} {'held-out R^2':>12} {'std':>9}"]
    for name, r2, spread in zip(learnt.arkit_map.targets, learnt.r2, learnt.spread):
        lines.append(f"{name:<10} {'n/a (still)' if not np.isfinite(r2) else f'{r2:.4f}':>12} {spread:9.4f}")
    return "\n".join(lines)
