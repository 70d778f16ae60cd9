"""The stage-2 losses besides pixel MSE and LPIPS (paper section 4.3), one function each.

``I`` is a render of a training frame's channels, ``I'`` the render of the same
channels with the expression perturbed, ``e' = e + N(0, std^2)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..model.channel_estimate import ChannelEstimate
from .encoders import IdentityEncoder


def perturb_expression(jaw_expression: torch.Tensor, std: float, generator: torch.Generator,
                       num_expressions: int | None = None) -> torch.Tensor:
    """``[B, 3 + E (+ 6 eyes)]`` mapper inputs with N(0, std^2) added to the E expression
    coefficients only (default: every column after the jaw)."""
    noise = torch.randn(jaw_expression.shape, generator=generator).to(jaw_expression.device) * std
    noise[:, :3] = 0
    if num_expressions is not None:
        noise[:, 3 + num_expressions:] = 0
    return jaw_expression + noise


def identity_loss(encoder: IdentityEncoder, render: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - cosine similarity of the face-recognition embeddings of render and frame."""
    with torch.no_grad():
        reference = encoder(target)
    return (1 - F.cosine_similarity(encoder(render), reference, dim=1)).mean()


def expression_matching_loss(estimate: ChannelEstimate, jaw_expression: torch.Tensor,
                             num_expressions: int | None = None) -> torch.Tensor:
    """The estimator must read the *perturbed* jaw and expression back off ``I'`` (columns after
    the E expressions, a gaze subject's eyes, are not the estimator's to read)."""
    num_expressions = jaw_expression.shape[1] - 3 if num_expressions is None else num_expressions
    if estimate.expression.shape[1] < num_expressions:
        raise ValueError(f"channel estimator gives {estimate.expression.shape[1]} expression coefficients, "
                         f"the subject uses {num_expressions}")
    return (F.mse_loss(estimate.jaw, jaw_expression[:, :3])
            + F.mse_loss(estimate.expression[:, :num_expressions], jaw_expression[:, 3:3 + num_expressions]))


def pose_consistency_loss(perturbed: ChannelEstimate, original: ChannelEstimate) -> torch.Tensor:
    """Changing the expression must not move the head: global (and neck) pose of ``I'`` equal ``I``'s.

    The reference is the estimate on the unperturbed render rather than the
    frame's channels: the aligned crop has had its roll removed, so only an
    estimate made in the same crop is comparable.
    """
    loss = F.mse_loss(perturbed.global_pose, original.global_pose.detach())
    if perturbed.neck is not None and original.neck is not None:
        loss = loss + F.mse_loss(perturbed.neck, original.neck.detach())
    return loss


def masked_consistency_loss(perturbed: torch.Tensor, original: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """MSE between ``I'`` and ``I`` outside the eye/mouth mask (1 = eyes and mouth)."""
    keep = 1.0 - mask
    return ((perturbed - original.detach()) * keep).square().mean()


def latent_regularizer(delta: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
    """mean(dw^2) + mean(alpha-residual^2): stay near the pivot centroid unless the data says otherwise."""
    return delta.square().mean() + residual.square().mean()
