"""Subjects with a learnt alpha for tests: a matte head whose alpha spans the crop."""

import torch

from pvp_runtime.model.matte import MatteConfig, MatteHead


def matte_for(bundle, seed=0):
    """A head with random weights (a new one would output its prior alone) and a prior that puts
    the subject in an off-centre disc, so alpha runs from near 0 to near 1 across the crop."""
    config = bundle.generator.config
    torch.manual_seed(seed)
    head = MatteHead(MatteConfig(in_channels=config.channels(config.resolution), resolution=config.resolution))
    r = config.resolution
    y, x = torch.meshgrid(torch.arange(r), torch.arange(r), indexing="ij")
    inside = ((x - 0.45 * r) ** 2 + (y - 0.5 * r) ** 2).sqrt() < 0.3 * r
    with torch.no_grad():
        torch.nn.init.normal_(head.out.weight, std=0.5)
        head.prior.copy_(torch.where(inside, 4.0, -4.0))
    return head.eval()
