"""Fill our StyleGAN2 :class:`Generator` from a name -> tensor mapping, checking everything.

Every StyleGAN2 importer ends here: the mapping must name exactly our
parameters and buffers (see :mod:`pvp_runtime.model.stylegan2`), with our
shapes and finite values, or the file is refused with a one-line error.
"""

from __future__ import annotations

import torch

from ..contract.errors import AssetError
from ..model.stylegan2 import Generator, GeneratorConfig, lowpass_filter_2d


def build_generator(config: GeneratorConfig, state: dict[str, torch.Tensor], source: str,
                    what: str = "StyleGAN2 generator") -> Generator:
    generator = Generator(config)
    expected = generator.state_dict()
    missing = [name for name in expected if name not in state]
    if missing:
        raise AssetError(f"{source}: {what} lacks tensor '{missing[0]}' (expected {len(expected)} tensors of a "
                         f"{config.resolution}x{config.resolution} StyleGAN2, {len(missing)} missing)")
    unexpected = [name for name in state if name not in expected]
    if unexpected:
        raise AssetError(f"{source}: unexpected tensor '{unexpected[0]}' in the {what} "
                         f"(not a StyleGAN2 config-f 'skip' generator?)")
    converted = {}
    for name, reference in expected.items():
        tensor = state[name]
        if not isinstance(tensor, torch.Tensor):
            raise AssetError(f"{source}: '{name}' in the {what} is a {type(tensor).__name__}, not a tensor")
        if tuple(tensor.shape) != tuple(reference.shape):
            raise AssetError(f"{source}: tensor '{name}' has shape {list(tensor.shape)}, expected "
                             f"{list(reference.shape)}")
        if not tensor.is_floating_point():
            raise AssetError(f"{source}: tensor '{name}' holds {tensor.dtype}, expected floating point")
        tensor = tensor.detach().to(torch.float32)
        if not torch.isfinite(tensor).all():
            raise AssetError(f"{source}: tensor '{name}' holds NaN or infinite values")
        converted[name] = tensor
    generator.load_state_dict(converted)
    return generator.eval().requires_grad_(False)


def check_lowpass(name: str, tensor, source: str, gain: float = 1.0) -> None:
    """Refuse generators built with a resample filter other than the fixed [1,3,3,1] one we implement."""
    expected = lowpass_filter_2d() * gain
    if not isinstance(tensor, torch.Tensor) or tuple(tensor.shape) != (4, 4) or \
            not torch.allclose(tensor.to(torch.float32), expected, atol=1e-6):
        raise AssetError(f"{source}: '{name}' is not the standard [1,3,3,1] resample filter; "
                         f"generators with other filters are not supported")
