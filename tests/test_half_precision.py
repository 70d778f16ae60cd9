"""Reduced-precision synthesis (``--half``, the Half Precision preference) is finite and matches float32.

The product runs it under float16 autocast on CUDA; the same layers run here under CPU autocast
(CPU torch convolves float16 and bfloat16).  Tolerances, as a fraction of the float32 image's
span (max - min): float16 within 0.5% of float32 and batch 1 within 0.1% of batch 8; bfloat16
(8 mantissa bits) within 2% and 0.5%.  Measured here: float16 0.06-0.09% and up to 0.03%;
bfloat16 0.3-0.7% and up to 0.2%.
"""

import pytest
import torch

from pvp_runtime.model.stylegan2 import Generator, SynthesisLayer, tiny_config

CONFIG = tiny_config(32, 32)
TOLERANCE = {torch.float16: (0.005, 0.001), torch.bfloat16: (0.02, 0.005)}  # (vs float32, batch 1 vs 8)


def generator(const_scale=1.0, style=None):
    """A tiny generator; ``const_scale`` makes every activation large, ``style`` every style large.

    Demodulation makes each layer's output independent of its styles' scale, so in float32 these
    are ordinary images (of a large range for ``const_scale``); only the arithmetic is stressed.
    """
    torch.manual_seed(0)
    gen = Generator(CONFIG).eval()
    with torch.no_grad():
        gen.synthesis.b4.const.mul_(const_scale)
        for layer in gen.synthesis.modules():
            if isinstance(layer, SynthesisLayer):
                layer.noise_strength.fill_(0.1)
                if style is not None:
                    layer.affine.bias.copy_(style * (1 + 0.5 * torch.rand_like(layer.affine.bias)))
    return gen


CASES = {
    "ordinary": generator(),
    # conv(x * styles) before demodulation reaches ~17 |x| |s| > 65504: the old batch path gave inf/NaN.
    "large activations": generator(const_scale=300.0, style=8.0),
    # sum(weight^2 style^2) overflowed float16, demodulation became 0: the old paths drew only biases.
    "large styles": generator(style=60.0),
}


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["float16", "bfloat16"])
@pytest.mark.parametrize("case", list(CASES))
def test_reduced_precision_is_finite_and_matches_float32_at_batch_1_and_8(case, dtype):
    gen = CASES[case]
    ws = torch.randn(8, CONFIG.num_ws, CONFIG.w_dim, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        full8, full1 = gen.synthesis(ws), gen.synthesis(ws[:1])
        with torch.autocast("cpu", dtype=dtype):
            half8, half1 = gen.synthesis(ws), gen.synthesis(ws[:1])
    span = (full8.max() - full8.min()).item()
    to_float32, across_batches = TOLERANCE[dtype]
    assert half8.dtype == half1.dtype == torch.float32  # the image accumulates in float32
    assert torch.isfinite(half8).all() and torch.isfinite(half1).all()
    assert (half8 - full8).abs().max().item() <= to_float32 * span
    assert (half1 - full1).abs().max().item() <= to_float32 * span
    assert (half1[0] - half8[0]).abs().max().item() <= across_batches * span

