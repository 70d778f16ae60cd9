"""Optional per-frame placement columns of a channel file, read by ``pvp render``.

Columns (all optional; a file with none of them renders centred as before):

``place_x``, ``place_y``  where the subject's head centre (its eye midpoint, ``framing.head_centre``)
                          goes on the output canvas, in output pixels from the top-left corner
                          (x right, y down; the canvas centre of a 256 x 256 output is 128, 128)
``place_scale``           output pixels per crop pixel (> 0; 1 is the subject's native size)
``place_angle``           the crop's turn in radians, counter-clockwise as seen (on top of ``head_roll``)

They are not rig channels: the channel readers set them aside (``ChannelClip.placement``),
and every other reader of channel files ignores them.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from .channels import per_frame_column
from .errors import ChannelError

PLACEMENT_COLUMNS = ("place_x", "place_y", "place_scale", "place_angle")


def split_columns(columns: Mapping, source: str) -> tuple[dict, dict[str, np.ndarray]]:
    """``{name: values}`` -> (the channel columns, the placement columns as float arrays)."""
    channels = {name: values for name, values in columns.items() if name not in PLACEMENT_COLUMNS}
    placement = {name: _numbers(columns[name], name, source) for name in PLACEMENT_COLUMNS if name in columns}
    return channels, placement


def split_records(records: Sequence, source: str) -> tuple[list, dict[str, np.ndarray]]:
    """Per-frame ``{name: value}`` records -> (records without placement, placement columns).
    A placement column must be in every record once it is in one."""
    named = [name for name in PLACEMENT_COLUMNS if any(isinstance(r, Mapping) and name in r for r in records)]
    if not named:
        return list(records), {}
    placement = {}
    for name in named:
        missing = next((i for i, r in enumerate(records) if not isinstance(r, Mapping) or name not in r), None)
        if missing is not None:
            raise ChannelError(f"{source}: frame {missing} has no '{name}' (other frames have one)")
        placement[name] = _numbers([r[name] for r in records], name, source)
    stripped = [{k: v for k, v in r.items() if k not in PLACEMENT_COLUMNS} for r in records]
    return stripped, placement


def _numbers(values, name: str, source: str) -> np.ndarray:
    array = per_frame_column(values, f"column '{name}'", source)
    bad = np.flatnonzero(~np.isfinite(array) | ((array <= 0) if name == "place_scale" else False))
    if len(bad):
        expected = "a number > 0" if name == "place_scale" else "a finite number"
        raise ChannelError(f"{source}: frame {bad[0]}, column '{name}' = {array[bad[0]]:.4g}, expected {expected}")
    return array
