"""The user's pretrained files for a fit: the generator prior and the optional networks.

The readers live in ``pvp_runtime/loaders/`` and never run code a file
carries; here they are turned into what the fitting code consumes:

``--generator``  a PVP generator file (``pvp import-generator``), the prior.
``--e4e``        an e4e checkpoint: its encoder inverts the pivots
                 (:class:`.encoders.LatentEncoder`); its decoder is the prior
                 when no ``--generator`` is given.
``--arcface``    ArcFace IR-SE50 weights: the identity loss
                 (:class:`.encoders.IdentityEncoder`).
``--deca``       DECA's ``deca_model.tar``: its coarse encoder drives expression
                 matching and pose consistency (:class:`.encoders.ChannelEstimator`,
                 ``pvp_runtime.loaders.deca.load_channel_estimator``).
"""

from __future__ import annotations

from pathlib import Path

from ..contract.errors import PVPError
from ..model.stylegan2 import Generator
from .encoders import FitNetworks


def load_prior(generator: str | None, e4e: str | None, device) -> Generator | None:
    """The pretrained generator of a fit, or None for the scratch prior."""
    if generator:
        from ..loaders.generator_file import load_generator_file
        return load_generator_file(generator).to(device)
    if e4e:
        from ..loaders.e4e import load_e4e
        return load_e4e(e4e).generator.to(device)
    return None


def _named(network, name: str, device):
    network = network.to(device).eval()
    network.name = name  # the report and the log say which network a fit used
    return network


def load_networks(arcface: str | None, deca: str | None, e4e: str | None, generator: Generator | None,
                  device) -> FitNetworks:
    networks = FitNetworks()
    for flag, path in (("--arcface", arcface), ("--deca", deca), ("--e4e", e4e)):
        if path and not Path(path).is_file():
            raise PVPError(f"{flag} {path}: file not found")
    if arcface:
        from ..loaders.arcface import load_identity_encoder
        networks.identity = _named(load_identity_encoder(arcface), f"ArcFace IR-SE ({Path(arcface).name})", device)
    if deca:
        from ..loaders.deca import load_channel_estimator
        networks.estimator = load_channel_estimator(deca, device)
    if e4e:
        from ..loaders.e4e import load_e4e
        loaded = load_e4e(e4e)
        if generator is not None and (generator.num_ws, generator.config.w_dim) != \
                (loaded.generator.num_ws, loaded.generator.config.w_dim):
            raise PVPError(f"--e4e {e4e}: the encoder predicts W+ [{loaded.generator.num_ws}, "
                           f"{loaded.generator.config.w_dim}] but the --generator takes [{generator.num_ws}, "
                           f"{generator.config.w_dim}]")
        networks.latent_encoder = _named(loaded.inverter, f"e4e ({Path(e4e).name})", device)
    return networks
