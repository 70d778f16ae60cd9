"""The scratch prior's pixel losses (fit/pixel_loss.py)."""

import pytest
import torch

from pvp_runtime.contract.errors import PVPError
from pvp_runtime.fit.config import FitConfig
from pvp_runtime.fit.pixel_loss import PIXEL_LOSSES, covered_mse, laplacian_l1, pixel_loss


def _images(seed=0, size=32):
    return torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.mark.parametrize("name", PIXEL_LOSSES)
def test_zero_only_for_a_perfect_match_and_uncovered_pixels_do_not_count(name):
    loss = pixel_loss(name)
    images, targets = _images(0), _images(1)
    assert loss(images, images, None).item() == 0.0
    assert loss(images, targets, None).item() > 0.0
    # Whatever the render shows where it does not cover the crop is ignored.
    coverage = torch.zeros(2, 1, 32, 32)
    coverage[..., 8:24, 8:24] = 1.0
    inside = images * coverage
    elsewhere = inside + (1 - coverage) * _images(2)
    assert loss(inside, targets, coverage).item() == pytest.approx(loss(elsewhere * coverage, targets, coverage).item())


def test_under_ambiguity_laplacian_l1_prefers_a_sharp_answer_to_a_blend():
    """Three frames with the same channels, two with the eyes open, one with them shut (the
    channels cannot tell): MSE's best single render is the blend of the three (a ghosted, blurry
    eye); the per-octave L1 prefers the open eye, as its median."""
    eyes_open, eyes_shut = torch.zeros(1, 3, 64, 64), torch.zeros(1, 3, 64, 64)
    eyes_open[..., 28:36, 24:40] = 1.0
    eyes_shut[..., 31:33, 24:40] = 1.0
    frames = [eyes_open, eyes_open, eyes_shut]
    blend = sum(frames) / 3

    def total(loss, render):
        return sum(loss(render, frame, None).item() for frame in frames)

    assert total(covered_mse, blend) < total(covered_mse, eyes_open)
    assert total(laplacian_l1, eyes_open) < total(laplacian_l1, blend)


def test_unknown_pixel_loss_is_a_config_error():
    with pytest.raises(PVPError, match="scratch.pixel_loss"):
        FitConfig.from_dict({"scratch": {"pixel_loss": "l3"}})
