"""Pivot selection (paper section 4.1): K-means over the frames' pose and expression.

Per training frame we stack [pitch, yaw, neck, jaw, expression], standardise
every column over the clip, and run K-means (scikit-learn).  In each cluster,
the member frame nearest its centroid becomes that cluster's pivot, so every
cluster contributes exactly one distinct pivot.

"What the source provides": a column that never changes over the clip (DECA
gives no neck pose, many trackers give no jaw twist) carries no information
and is dropped rather than standardised by a zero deviation.  Pitch and yaw
are those of the composed global+neck rotation, the pose the mappers see.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning

from ..contract.channels import ChannelLayout, effective_head_angles
from ..contract.errors import PVPError

CONSTANT_EPS = 1e-6


@dataclass
class PivotChoice:
    frames: np.ndarray          # [K] frame indices into the whole clip, in cluster order
    labels: np.ndarray          # [T] cluster of each training frame
    cluster_sizes: np.ndarray   # [K]
    features: list[str]         # the feature columns that were clustered on
    inertia: float

    def to_dict(self) -> dict:
        return {"frames": [int(f) for f in self.frames], "cluster_sizes": [int(s) for s in self.cluster_sizes],
                "features": self.features, "inertia": float(self.inertia)}


def pivot_features(channels: np.ndarray, layout: ChannelLayout,
                   reference: np.ndarray | None = None) -> tuple[np.ndarray, list[str]]:
    """``[frames, D]`` standardised features and their names.

    Means and deviations come from the ``reference`` rows (default: all), so
    held-out frames are measured in the training frames' units; columns that
    are constant over the reference are dropped.
    """
    angles = effective_head_angles(channels, layout)  # yaw, pitch, roll
    columns = [angles[:, 1], angles[:, 0]]
    names = ["pitch", "yaw"]
    for group in ("neck", "jaw", "expression"):
        part = layout.slice(group)
        for offset, name in enumerate(layout.names[part]):
            columns.append(channels[:, part.start + offset])
            names.append(name)
    stacked = np.stack(columns, axis=1).astype(np.float64)
    rows = stacked if reference is None else stacked[np.asarray(reference)]
    std = rows.std(axis=0)
    keep = std > CONSTANT_EPS
    if not keep.any():
        return np.zeros((len(channels), 0)), []
    standardised = (stacked[:, keep] - rows[:, keep].mean(axis=0)) / std[keep]
    return standardised, [name for name, k in zip(names, keep) if k]


def head_pose_features(channels: np.ndarray, layout: ChannelLayout,
                       reference: np.ndarray | None = None) -> tuple[np.ndarray, list[str]]:
    """``[frames, 3]`` standardised yaw, pitch, roll of the composed head rotation (no expression)."""
    angles = effective_head_angles(channels, layout).astype(np.float64)
    rows = angles if reference is None else angles[np.asarray(reference)]
    std = rows.std(axis=0)
    keep = std > CONSTANT_EPS
    return (angles[:, keep] - rows[:, keep].mean(axis=0)) / std[keep], [n for n, k in
                                                                         zip(("yaw", "pitch", "roll"), keep) if k]


def nearest_frames(channels: np.ndarray, layout: ChannelLayout, candidates: np.ndarray, queries: np.ndarray,
                   reference: np.ndarray, features=pivot_features) -> np.ndarray:
    """For each query frame, the candidate frame nearest in standardised ``features`` (default:
    pose and expression, as pivots are chosen; :func:`head_pose_features` for pose alone)."""
    features, _ = features(channels, layout, reference)
    candidates = np.asarray(candidates)
    distances = ((features[np.asarray(queries)][:, None] - features[candidates][None]) ** 2).sum(axis=2)
    return candidates[np.argmin(distances, axis=1)]


def select_pivots(channels: np.ndarray, train_frames: np.ndarray, layout: ChannelLayout, count: int,
                  seed: int = 0, restarts: int = 4) -> PivotChoice:
    """Choose ``count`` pivot frames among ``train_frames`` (indices into ``channels``)."""
    train_frames = np.asarray(train_frames)
    features, names = pivot_features(channels[train_frames], layout)
    if count > len(train_frames):
        raise PVPError(f"{count} pivots asked for, but there are only {len(train_frames)} training frames")
    distinct = len(np.unique(np.round(features, 6), axis=0)) if features.shape[1] else 1
    if distinct < count:
        raise PVPError(f"{count} pivots asked for, but the training frames have only {distinct} distinct "
                       f"poses/expressions (lower --pivots)")
    if count == 1 or not names:
        # One cluster: its centroid is the mean frame.
        labels = np.zeros(len(train_frames), dtype=np.int64)
        centre = features.mean(axis=0, keepdims=True)
        nearest = int(np.argmin(((features - centre) ** 2).sum(axis=1))) if names else 0
        return PivotChoice(train_frames[[nearest]], labels, np.array([len(train_frames)]), names,
                           float(((features - centre) ** 2).sum()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        kmeans = KMeans(n_clusters=count, n_init=restarts, random_state=seed).fit(features)
    labels = kmeans.labels_
    chosen = np.empty(count, dtype=np.int64)
    sizes = np.empty(count, dtype=np.int64)
    for k in range(count):
        members = np.flatnonzero(labels == k)
        if len(members) == 0:  # K-means re-seeds empty clusters; this guards against a degenerate fit
            raise PVPError(f"K-means left cluster {k} empty; lower --pivots")
        distances = ((features[members] - kmeans.cluster_centers_[k]) ** 2).sum(axis=1)
        chosen[k] = train_frames[members[int(np.argmin(distances))]]
        sizes[k] = len(members)
    return PivotChoice(chosen, labels, sizes, names, float(kmeans.inertia_))
