"""Fit inputs for tests: what stands in for a pretrained generator next to a synthetic clip."""

import copy

import torch


def pretrained_generator(subject_generator, seed: int = 1):
    """A "pretrained" generator: near the synthetic subject's, not equal to it (every weight
    matrix moved by 0.2 of its own spread)."""
    generator = copy.deepcopy(subject_generator)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in generator.synthesis.parameters():
            if p.ndim >= 2:
                p.add_(torch.randn(p.shape, generator=gen) * 0.2 * p.std())
    return generator
