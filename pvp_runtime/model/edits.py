"""Appearance edits applied to W+: ``w[l] + t * scale * n`` on each edit's layers, after the mappers.

The directions and their manifest entries are described in ``contract/edits.py``; this is the
arithmetic (one place for the runtime, the fit's renders and ``pvp edits``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..contract.edits import EditSpec


@dataclass
class EditDirections:
    """A subject's edits: their specs (channel order) and unit directions ``[K, w_dim]``."""

    specs: tuple[EditSpec, ...] = ()
    vectors: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 0))

    def __len__(self) -> int:
        return len(self.specs)

    def state(self) -> dict[str, torch.Tensor]:
        """The tensors ``edits.safetensors`` holds: one ``[w_dim]`` direction per edit name."""
        return {spec.name: self.vectors[i].detach().to("cpu", torch.float32).contiguous()
                for i, spec in enumerate(self.specs)}

    def with_edit(self, spec: EditSpec, vector: torch.Tensor) -> "EditDirections":
        """These edits plus one (replacing an edit of the same name in place)."""
        vector = vector.detach().to(torch.float32).reshape(1, -1)
        specs, rows = list(self.specs), [v[None] for v in self.vectors]
        names = [s.name for s in specs]
        if spec.name in names:
            specs[names.index(spec.name)], rows[names.index(spec.name)] = spec, vector
        else:
            specs.append(spec)
            rows.append(vector)
        return EditDirections(tuple(specs), torch.cat(rows))

    def without(self, name: str) -> "EditDirections":
        keep = [i for i, spec in enumerate(self.specs) if spec.name != name]
        if not keep:
            return EditDirections()
        return EditDirections(tuple(self.specs[i] for i in keep), self.vectors[keep])

    def offsets(self, strengths: torch.Tensor, num_ws: int) -> torch.Tensor:
        """``[B, num_ws, w_dim]``: what the strengths ``[B, K]`` add to W+."""
        vectors = self.vectors.to(strengths.device, strengths.dtype)
        scales = torch.tensor([spec.scale for spec in self.specs], dtype=strengths.dtype, device=strengths.device)
        mask = torch.zeros(len(self.specs), num_ws, dtype=strengths.dtype, device=strengths.device)
        for i, spec in enumerate(self.specs):
            mask[i, spec.layers[0]:spec.layers[1]] = 1.0
        return torch.einsum("bk,kl,kc->blc", strengths * scales, mask, vectors)

    def apply(self, ws: torch.Tensor, strengths: np.ndarray | torch.Tensor) -> torch.Tensor:
        """W+ with the edits at these per-frame strengths ``[B, K]``.  Frames whose strengths are
        all 0 are returned untouched, so an edit at 0 renders bit-identically to no edit."""
        if not len(self.specs):
            return ws
        strengths = torch.as_tensor(np.asarray(strengths, dtype=np.float32) if not torch.is_tensor(strengths)
                                    else strengths).to(ws.device, ws.dtype)
        moved = (strengths != 0).any(dim=1)
        if not bool(moved.any()):
            return ws
        edited = ws + self.offsets(strengths, ws.shape[1])
        return torch.where(moved[:, None, None], edited, ws)
