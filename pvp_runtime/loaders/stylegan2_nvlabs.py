"""NVlabs ``stylegan2-ada-pytorch`` pickles (``ffhq.pkl``, ``network-snapshot-*.pkl``) -> our Generator.

The pickle is a dict ``{G, D, G_ema, training_set_kwargs, augment_pipe}``
whose networks are ``torch_utils.persistence`` objects.  We read them as data
(:class:`PersistentObject`: init kwargs and tensors, never the embedded
source), take ``G_ema``, rebuild our config from its init kwargs and load its
tensors by name: our module tree uses NVlabs' parameter names.

PTI's tuned generators (``torch.save(G)`` of the same persistent class) load
the same way: the network is the top-level object instead of ``G_ema``.

Only what our generator implements is accepted: unconditional (``c_dim=0``),
``architecture='skip'``, leaky-ReLU, 3x3 kernels with noise, the [1,3,3,1]
filter, and mapping layers as wide as W.  ``num_fp16_res`` is not a property of
the weights (our renderer picks fp16 itself) and is only recorded;
``conv_clamp`` is kept, since it changes the image.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..contract.errors import AssetError
from ..formats.safe_pickle import PersistentObject
from ..model.stylegan2 import Generator, GeneratorConfig
from .generator_state import build_generator, check_lowpass
from .torch_files import read_torch_file

KIND = "NVlabs StyleGAN2-ADA pickle"


def load_nvlabs_generator(path: str | os.PathLike, network: str = "G_ema") -> tuple[Generator, dict]:
    """Read ``path`` and return (generator, notes about the source)."""
    path = Path(path)
    data = read_torch_file(path, KIND)
    return generator_from_nvlabs(data, str(path), network)


def find_network(data, source: str, network: str = "G_ema") -> PersistentObject:
    if isinstance(data, PersistentObject):
        return data
    if not isinstance(data, dict):
        raise AssetError(f"{source}: expected a {KIND} (a dict with '{network}'), got a {type(data).__name__}")
    net = data.get(network)
    if not isinstance(net, PersistentObject):
        found = ", ".join(sorted(map(str, data))) or "nothing"
        raise AssetError(f"{source}: no StyleGAN2-ADA network '{network}' in the pickle (it holds {found})")
    return net


def config_from_init_kwargs(kwargs: dict, source: str) -> tuple[GeneratorConfig, dict]:
    def unsupported(what):
        return AssetError(f"{source}: unsupported StyleGAN2 generator: {what}")

    if int(kwargs.get("c_dim", 0) or 0) != 0:
        raise unsupported(f"conditional (c_dim={kwargs['c_dim']}); only unconditional generators are supported")
    mapping = dict(kwargs.get("mapping_kwargs") or {})
    synthesis = dict(kwargs.get("synthesis_kwargs") or {})
    w_dim = int(kwargs["w_dim"])
    if mapping.get("layer_features") not in (None, w_dim):
        raise unsupported(f"mapping layers {mapping['layer_features']} wide, expected {w_dim}")
    for group, options in (("mapping", mapping), ("synthesis", synthesis)):
        if options.get("activation", "lrelu") != "lrelu":
            raise unsupported(f"{group} activation {options['activation']!r}")
    if synthesis.get("architecture", "skip") != "skip":
        raise unsupported(f"architecture {synthesis['architecture']!r} (only 'skip' is implemented)")
    if list(synthesis.get("resample_filter", [1, 3, 3, 1])) != [1, 3, 3, 1]:
        raise unsupported(f"resample filter {synthesis['resample_filter']}")
    if synthesis.get("kernel_size", 3) != 3 or not synthesis.get("use_noise", True):
        raise unsupported("kernel size other than 3, or no noise inputs")
    conv_clamp = synthesis.get("conv_clamp")
    try:
        config = GeneratorConfig(
            resolution=int(kwargs["img_resolution"]), z_dim=int(kwargs["z_dim"]), w_dim=w_dim,
            channel_base=int(synthesis.get("channel_base", 32768)),
            channel_max=int(synthesis.get("channel_max", 512)),
            mapping_layers=int(mapping.get("num_layers", 8)),
            mapping_lr_multiplier=float(mapping.get("lr_multiplier", 0.01)),
            conv_clamp=None if conv_clamp is None else float(conv_clamp),
            img_channels=int(kwargs.get("img_channels", 3)))
    except (KeyError, TypeError, ValueError) as exc:
        raise AssetError(f"{source}: generator init kwargs are incomplete or invalid ({exc})") from None
    notes = {"num_fp16_res": int(synthesis.get("num_fp16_res", 0) or 0)}
    return config, notes


def generator_from_nvlabs(data, source: str, network: str = "G_ema") -> tuple[Generator, dict]:
    net = find_network(data, source, network)
    if net.class_name != "Generator":
        raise AssetError(f"{source}: '{network}' is a {net.class_name}, expected a StyleGAN2 Generator")
    config, notes = config_from_init_kwargs(net.init_kwargs, source)
    tensors = net.tensors()
    state = {}
    for name, tensor in tensors.items():
        if name.endswith("resample_filter"):
            check_lowpass(name, tensor, source)  # a fixed buffer, rebuilt by our modules
        else:
            state[name] = tensor
    generator = build_generator(config, state, source, what=f"NVlabs {network}")
    return generator, {"kind": "nvlabs", "network": network, **notes}
