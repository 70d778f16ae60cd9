"""Loading the optional pretrained networks of a fit from the user's files.

The architectures and checkpoint readers live in ``pvp_runtime/loaders/``
(ArcFace IR-SE50, DECA's encoder, e4e).  Each exposes one entry point that
returns an object honouring the interface in :mod:`.encoders`:

    pvp_runtime.loaders.arcface.load_identity_encoder(path, device)      -> IdentityEncoder
    pvp_runtime.loaders.deca.load_channel_estimator(path, device)        -> ChannelEstimator
    pvp_runtime.loaders.e4e.load_latent_encoder(path, generator, device) -> LatentEncoder

A build without a loader refuses the option with a one-line error before any
work starts, rather than silently fitting without the loss.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from ..contract.errors import PVPError
from .encoders import FitNetworks

ENTRY_POINTS = {
    "arcface": ("pvp_runtime.loaders.arcface", "load_identity_encoder", "--arcface", "ArcFace IR-SE50"),
    "deca": ("pvp_runtime.loaders.deca", "load_channel_estimator", "--deca", "DECA encoder"),
    "e4e": ("pvp_runtime.loaders.e4e", "load_latent_encoder", "--e4e", "e4e encoder"),
}


def _entry_point(kind: str, path: str):
    module_name, function, flag, what = ENTRY_POINTS[kind]
    if not Path(path).is_file():
        raise PVPError(f"{flag} {path}: file not found")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise PVPError(f"{flag} {path}: this PVP Avatar build has no {what} loader ({module_name})") from None
        raise
    loader = getattr(module, function, None)
    if loader is None:
        raise PVPError(f"{flag} {path}: {module_name} has no {function}()")
    return loader


def load_networks(arcface: str | None, deca: str | None, e4e: str | None, generator, device) -> FitNetworks:
    networks = FitNetworks()
    if arcface:
        networks.identity = _entry_point("arcface", arcface)(arcface, device)
    if deca:
        networks.estimator = _entry_point("deca", deca)(deca, device)
    if e4e:
        if generator is None:
            raise PVPError(f"--e4e {e4e}: an inversion encoder needs a pretrained --generator")
        networks.latent_encoder = _entry_point("e4e", e4e)(e4e, generator, device)
    return networks
