"""Appearance edit directions a subject bundle carries: their manifest entries, read without torch.

A bundle may hold named directions in W+ (GANSpace components, InterFaceGAN boundaries).  Each is
a unit vector ``n`` of ``w_dim`` numbers in ``edits.safetensors`` (tensor named like the edit) and
a manifest entry under ``"edits"``::

    {"name": "pc00", "kind": "ganspace", "layers": [0, 14], "range": [-3, 3], "scale": 0.81,
     "source": "..."}

and becomes the channel ``edit_<name>`` (``channels.EditChannel``).  At strength ``t`` a frame's
W+ code gets ``w[l] + t * scale * n`` on every layer ``l`` in ``layers`` (a half-open range),
after the mappers.  ``scale`` is the component's standard deviation for GANSpace (so ``t`` counts
standard deviations, as GANSpace's sliders do) and 1 for InterFaceGAN (``t`` is a distance in W, as
its ``w + t n``).  A bundle without edits has no ``"edits"`` key and no member: old bundles stay
what they were.  Every value is checked here before a tensor is read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .channels import EDIT_NAME, MAX_EDITS, ChannelLayout, EditChannel
from .errors import BundleError, ChannelError

EDITS_FILE = "edits.safetensors"
KINDS = ("ganspace", "interfacegan")
STRENGTH_BOUND = 100.0  # |range| ends: GANSpace sliders run a few std, InterFaceGAN -3..3
SCALE_BOUND = (1e-8, 1e4)  # a component's std in W (a StyleGAN2 W spreads ~0.1..10 per axis)
SOURCE_MAX_CHARS = 1000


@dataclass(frozen=True)
class EditSpec:
    name: str
    kind: str
    layers: tuple[int, int]  # half-open W+ layer range [start, stop)
    range: tuple[float, float] = (-3.0, 3.0)
    scale: float = 1.0
    source: str = ""

    @property
    def channel(self) -> EditChannel:
        return EditChannel(self.name, self.range[0], self.range[1])

    def to_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "layers": list(self.layers), "range": list(self.range),
                "scale": self.scale, "source": self.source}

    def describe(self) -> str:
        """The line ``pvp edits list`` prints: channel name first."""
        start, stop = self.layers
        return (f"{self.channel.channel}\t{self.kind}\tlayers {start}:{stop}\trange {self.range[0]:g}..{self.range[1]:g}"
                f"\tscale {self.scale:.4g}\t{self.source}")


def parse_layers(text: str, num_ws: int) -> tuple[int, int]:
    """``A:B`` (Python slice, either end optional) -> a non-empty half-open range within num_ws."""
    parts = str(text).split(":")
    try:
        if len(parts) != 2:
            raise ValueError
        start = int(parts[0]) if parts[0] else 0
        stop = int(parts[1]) if parts[1] else num_ws
    except ValueError:
        raise ChannelError(f"layers {text!r}: expected A:B, for example 0:8") from None
    if not 0 <= start < stop <= num_ws:
        raise ChannelError(f"layers {text!r}: need 0 <= A < B <= {num_ws} (this subject's W+ layers)")
    return start, stop


def check_range(values) -> tuple[float, float]:
    """A strength range given by a user, or a ChannelError."""
    low, high = (float(v) for v in values)
    _check_range((low, high), lambda expected: ChannelError(f"range {low:g} {high:g}: expected {expected}"))
    return low, high


def _check_range(values, fail) -> None:
    expected = f"two finite numbers LOW < 0 < HIGH within +-{STRENGTH_BOUND:g}"
    if (not isinstance(values, (list, tuple)) or len(values) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values)):
        raise fail(expected)
    low, high = values
    if not -STRENGTH_BOUND <= low < 0 < high <= STRENGTH_BOUND:
        raise fail(expected)


def specs_from_manifest(manifest: dict, num_ws: int, path) -> tuple[EditSpec, ...]:
    """The manifest's edits, each value in its sane range (one-line BundleError naming the entry)."""
    entries = manifest.get("edits", [])

    def bad(where: str, value, expected: str) -> BundleError:
        shown = repr(value)
        shown = shown if len(shown) <= 40 else shown[:37] + "..."
        return BundleError(f"{path}: corrupt bundle, manifest {where} is {shown}, expected {expected}")

    if not isinstance(entries, list) or len(entries) > MAX_EDITS:
        raise bad("edits", entries, f"a list of at most {MAX_EDITS} edits")
    specs, seen = [], set()
    for index, entry in enumerate(entries):
        where = f"edits[{index}]"
        if not isinstance(entry, dict):
            raise bad(where, entry, "an object")
        name = entry.get("name")
        if not isinstance(name, str) or not EDIT_NAME.fullmatch(name) or name in seen:
            raise bad(f"{where}.name", name, "a new name of lower-case letters, digits and '_'")
        seen.add(name)
        kind = entry.get("kind")
        if kind not in KINDS:
            raise bad(f"{where}.kind", kind, " or ".join(KINDS))
        layers = entry.get("layers")
        if (not isinstance(layers, list) or len(layers) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in layers)
                or not 0 <= layers[0] < layers[1] <= num_ws):
            raise bad(f"{where}.layers", layers, f"[A, B] with 0 <= A < B <= {num_ws} (num_ws)")
        strengths = entry.get("range")
        _check_range(strengths, lambda expected: bad(f"{where}.range", strengths, expected))
        scale = entry.get("scale", 1.0)
        if (not isinstance(scale, (int, float)) or isinstance(scale, bool) or not math.isfinite(scale)
                or not SCALE_BOUND[0] <= scale <= SCALE_BOUND[1]):
            raise bad(f"{where}.scale", scale, f"a number in {SCALE_BOUND[0]:g}..{SCALE_BOUND[1]:g}")
        source = entry.get("source", "")
        if not isinstance(source, str) or len(source) > SOURCE_MAX_CHARS:
            raise bad(f"{where}.source", source, f"text of at most {SOURCE_MAX_CHARS} characters")
        specs.append(EditSpec(name, kind, (layers[0], layers[1]), (float(strengths[0]), float(strengths[1])),
                              float(scale), source))
    return tuple(specs)


def num_ws_of(resolution: int) -> int:
    """W+ layers of a StyleGAN2 of this resolution: ``2 log2(resolution) - 2``."""
    return 2 * int(resolution).bit_length() - 4


def layout_of(num_expressions: int, specs) -> ChannelLayout:
    return ChannelLayout(num_expressions, tuple(spec.channel for spec in specs))
