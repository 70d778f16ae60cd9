"""StyleGAN2 generator (config-f architecture, "skip" ToRGB), written for inference and tuning.

The module tree and parameter names follow NVlabs ``stylegan2-ada-pytorch`` so
an official ``G_ema`` state maps onto it by name (see ``docs/architecture.md``):

    mapping.fc{i}.weight [out, in], mapping.fc{i}.bias [out]   (i = 0..7, lr multiplier 0.01)
    mapping.w_avg [w_dim]                                      (tracked mean of W, for truncation)
    synthesis.b4.const [C4, 4, 4]
    synthesis.b{R}.conv0.*   (R > 4: 2x upsampling modulated conv)
    synthesis.b{R}.conv1.*   (modulated conv)
    synthesis.b{R}.torgb.*   (1x1 modulated conv, no demodulation)
      each layer: affine.weight [C_in, w_dim], affine.bias [C_in], weight [C_out, C_in, k, k],
                  bias [C_out]; convs also noise_const [R, R] and noise_strength [].

Weights are stored at unit variance and scaled at run time (equalized learning
rate), exactly as in the official code, so official tensors load unchanged.
The official low-pass filter buffers are not kept: the filter is the fixed [1, 3, 3, 1] binomial.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

LRELU_GAIN = math.sqrt(2.0)
LRELU_SLOPE = 0.2


@dataclass(frozen=True)
class GeneratorConfig:
    resolution: int = 256
    z_dim: int = 512
    w_dim: int = 512
    channel_base: int = 32768
    channel_max: int = 512
    mapping_layers: int = 8
    mapping_lr_multiplier: float = 0.01
    conv_clamp: float | None = None
    img_channels: int = 3

    def __post_init__(self):
        res = self.resolution
        if not isinstance(res, int) or res < 8 or res > 2048 or res & (res - 1):
            raise ValueError(f"generator resolution must be a power of two in 8..2048, got {res!r}")
        for field in ("z_dim", "w_dim", "channel_base", "channel_max", "mapping_layers", "img_channels"):
            value = getattr(self, field)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"generator {field} must be a positive integer, got {value!r}")

    @property
    def num_ws(self) -> int:
        return 2 * int(math.log2(self.resolution)) - 2

    @property
    def block_resolutions(self) -> list[int]:
        return [2 ** i for i in range(2, int(math.log2(self.resolution)) + 1)]

    def channels(self, res: int) -> int:
        return min(self.channel_base // res, self.channel_max)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "GeneratorConfig":
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


CONFIG_F_256 = GeneratorConfig(resolution=256)
CONFIG_F_1024 = GeneratorConfig(resolution=1024)


def tiny_config(resolution: int = 32, width: int = 32) -> GeneratorConfig:
    """A generator small enough for tests and CPU demos (same architecture, fewer channels)."""
    return GeneratorConfig(resolution=resolution, z_dim=width, w_dim=width,
                           channel_base=width * resolution // 2, channel_max=width)


def _lrelu(x: torch.Tensor, gain: float, clamp: float | None) -> torch.Tensor:
    x = F.leaky_relu(x, LRELU_SLOPE) * gain
    return x.clamp(-clamp, clamp) if clamp is not None else x


# The resampling filter is the fixed [1, 3, 3, 1] binomial, normalised, with gain 4 for 2x
# upsampling: per axis that is the taps [1, 3, 3, 1] / 4.  It is applied as shifted adds
# rather than a depthwise convolution, which CPU backends run an order of magnitude slower.
_TAP_OUTER, _TAP_INNER = 0.25, 0.75


def lowpass_filter_2d() -> torch.Tensor:
    """The normalised [1, 3, 3, 1] binomial as a 4x4 kernel, as official checkpoints store it."""
    taps = torch.tensor([1.0, 3.0, 3.0, 1.0])
    kernel = torch.outer(taps, taps)
    return kernel / kernel.sum()


def _blur_axis(x: torch.Tensor, dim: int) -> torch.Tensor:
    n = x.shape[dim] - 3
    a, b, c, d = (x.narrow(dim, i, n) for i in range(4))
    return _TAP_OUTER * (a + d) + _TAP_INNER * (b + c)


def blur_after_transposed_conv(x: torch.Tensor) -> torch.Tensor:
    """Low-pass the output of a stride-2 transposed 3x3 conv: [2H+1] -> [2H] per axis."""
    x = F.pad(x, (1, 1, 1, 1))
    return _blur_axis(_blur_axis(x, 2), 3)


def _upsample_axis(x: torch.Tensor, dim: int) -> torch.Tensor:
    # Zero insertion + the 4-tap filter, written per output phase:
    # even outputs are 0.25 x[i-1] + 0.75 x[i], odd outputs 0.75 x[i] + 0.25 x[i+1].
    n = x.shape[dim]
    pad = [0, 0, 0, 0]
    pad[(3 - dim) * 2:(3 - dim) * 2 + 2] = [1, 1]
    padded = F.pad(x, pad)
    previous, current, following = (padded.narrow(dim, i, n) for i in range(3))
    even = _TAP_OUTER * previous + _TAP_INNER * current
    odd = _TAP_INNER * current + _TAP_OUTER * following
    stacked = torch.stack([even, odd], dim=dim + 1)
    shape = list(x.shape)
    shape[dim] = 2 * n
    return stacked.reshape(shape)


def upsample_2x(x: torch.Tensor) -> torch.Tensor:
    """2x upsampling of the skip image: zero insertion, then the [1, 3, 3, 1] filter."""
    return _upsample_axis(_upsample_axis(x, 2), 3)


class FullyConnected(nn.Module):
    def __init__(self, in_features: int, out_features: int, lr_multiplier: float = 1.0,
                 bias_init: float = 0.0, activation: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init)))
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.linear(x, self.weight * self.weight_gain, self.bias * self.bias_gain)
        return _lrelu(x, LRELU_GAIN, None) if self.activation else x


class MappingNetwork(nn.Module):
    """z -> w: 2nd-moment normalisation then ``mapping_layers`` leaky-ReLU layers."""

    def __init__(self, config: GeneratorConfig):
        super().__init__()
        self.num_layers = config.mapping_layers
        self.num_ws = config.num_ws
        features = [config.z_dim] + [config.w_dim] * config.mapping_layers
        for i in range(config.mapping_layers):
            setattr(self, f"fc{i}", FullyConnected(features[i], features[i + 1],
                                                   config.mapping_lr_multiplier, activation=True))
        self.register_buffer("w_avg", torch.zeros(config.w_dim))

    def forward(self, z: torch.Tensor, truncation_psi: float = 1.0,
                truncation_cutoff: int | None = None) -> torch.Tensor:
        """Returns W+ ``[N, num_ws, w_dim]`` (every layer the same w before truncation)."""
        x = z * (z.square().mean(dim=1, keepdim=True) + 1e-8).rsqrt()
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)
        ws = x.unsqueeze(1).repeat(1, self.num_ws, 1)
        if truncation_psi != 1:
            cutoff = self.num_ws if truncation_cutoff is None else truncation_cutoff
            ws[:, :cutoff] = self.w_avg.lerp(ws[:, :cutoff], truncation_psi)
        return ws


def _bias_act(x: torch.Tensor, scale: torch.Tensor | None, offset: torch.Tensor,
              clamp: float | None) -> torch.Tensor:
    """``clamp(lrelu(x * scale + offset) * gain)`` in as few passes over ``x`` as autograd allows.

    The activations are the largest tensors of a render and these element-wise steps are
    memory-bound, so they are fused: the gain (> 0) commutes with the leaky ReLU and folds
    into ``scale`` and ``offset``, and without autograd the activation and clamp run in place.
    """
    if scale is None:
        x = torch.add(offset * LRELU_GAIN, x, alpha=LRELU_GAIN)
    else:
        x = torch.addcmul(offset * LRELU_GAIN, x, scale * LRELU_GAIN)
    in_place = not (torch.is_grad_enabled() and x.requires_grad)
    x = F.leaky_relu(x, LRELU_SLOPE, inplace=in_place)
    if clamp is None:
        return x
    return x.clamp_(-clamp, clamp) if in_place else x.clamp(-clamp, clamp)


REDUCED_PRECISION = (torch.float16, torch.bfloat16)


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype convolutions on ``x`` run in: autocast's when it is on for x's device, else x's own."""
    device_type = x.device.type
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return x.dtype


def full_precision(x: torch.Tensor):
    """A context in which small per-sample tensors (styles, folded weights) are computed in float32."""
    return torch.autocast(x.device.type, enabled=False) if torch.is_autocast_enabled(x.device.type) \
        else contextlib.nullcontext()


class SynthesisLayer(nn.Module):
    """Modulated, demodulated 3x3 convolution with per-pixel noise and leaky ReLU.

    In float32 (or float64), a batch runs as modulate-input -> one shared convolution ->
    demodulate-output, algebraically the official fused grouped convolution but one large
    convolution over the batch, and a single frame (F12, the viewport) folds style and demodulation into the weights
    instead, which saves two passes over the activations.

    In reduced precision (``--half``: float16 autocast, or bfloat16) every batch size folds:
    styles, demodulation coefficients and the per-sample weights are computed in float32 and
    cast only once each output channel has unit norm, then one grouped convolution runs over the
    batch.  The batch path's intermediate ``conv(x * styles)`` grows with the styles and the
    fan-in before demodulation scales it back, which overflows float16 (65504) long before the
    layer's output does; NVlabs pre-normalises weight and styles for the same reason.  Folding
    also gives F12 (batch 1) and an animation render (batch N) the same arithmetic per frame.
    """

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int,
                 up: bool = False, conv_clamp: float | None = None):
        super().__init__()
        self.resolution = resolution
        self.up = up
        self.conv_clamp = conv_clamp
        self.affine = FullyConnected(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 3, 3))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.register_buffer("noise_const", torch.randn(resolution, resolution))
        self.noise_strength = nn.Parameter(torch.zeros([]))

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "const") -> torch.Tensor:
        dtype = compute_dtype(x)
        if dtype in REDUCED_PRECISION:
            x, scale = self._folded_conv(x, w, dtype), None
        else:
            x, scale = self._full_precision_conv(x, w)
        offset = self.bias.to(x.dtype)[None, :, None, None]
        if noise_mode == "const":
            offset = offset + (self.noise_const * self.noise_strength).to(x.dtype)
        elif noise_mode == "random":
            noise = torch.randn(x.shape[0], 1, self.resolution, self.resolution, device=x.device, dtype=x.dtype)
            offset = offset + noise * self.noise_strength.to(x.dtype)
        elif noise_mode != "none":
            raise ValueError(f"noise_mode must be 'const', 'random' or 'none', got {noise_mode!r}")
        return _bias_act(x, scale, offset, self.conv_clamp)

    def _full_precision_conv(self, x: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The convolution before bias and noise, and the demodulation still to apply (None: applied)."""
        styles = self.affine(w).to(x.dtype)  # [N, C_in]
        weight = self.weight.to(x.dtype)
        # Demodulation coefficients: 1 / ||weight * style|| per output channel and sample.
        dcoefs = ((weight.square().sum(dim=[2, 3]) @ styles.square().T).T + 1e-8).rsqrt()  # [N, C_out]
        if x.shape[0] == 1:
            weight = weight * styles[0][None, :, None, None] * dcoefs[0][:, None, None, None]
            scale = None
        else:
            x = x * styles[:, :, None, None]
            scale = dcoefs[:, :, None, None]
        if self.up:
            x = blur_after_transposed_conv(F.conv_transpose2d(x, weight.transpose(0, 1), stride=2))
        else:
            x = F.conv2d(x, weight, padding=1)
        return x, scale

    def _folded_conv(self, x: torch.Tensor, w: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Demodulated per-sample weights (float32, unit norm per output channel), one grouped conv."""
        n, c_in, height, width = x.shape
        with full_precision(x):
            styles = self.affine(w.to(self.affine.weight.dtype)).float()  # [N, C_in]
            weight = self.weight.float()[None] * styles[:, None, :, None, None]  # [N, C_out, C_in, 3, 3]
            weight = weight * (weight.square().sum(dim=[2, 3, 4], keepdim=True) + 1e-8).rsqrt()
        weight = weight.to(dtype)
        x = x.to(dtype).reshape(1, n * c_in, height, width)
        if self.up:
            # conv_transpose2d takes [C_in, C_out / groups, k, k] per group.
            weight = weight.transpose(1, 2).reshape(n * c_in, -1, 3, 3)
            x = blur_after_transposed_conv(F.conv_transpose2d(x, weight, stride=2, groups=n))
        else:
            x = F.conv2d(x, weight.reshape(-1, c_in, 3, 3), padding=1, groups=n)
        return x.reshape(n, -1, x.shape[2], x.shape[3])


class ToRGB(nn.Module):
    """1x1 modulated convolution (no demodulation) to RGB."""

    def __init__(self, in_channels: int, w_dim: int, img_channels: int, conv_clamp: float | None = None):
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnected(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(img_channels, in_channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(img_channels))
        self.weight_gain = 1 / math.sqrt(in_channels)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        # Per-sample modulated 1x1 weights [N, 3, C_in] applied as one batched matmul: no
        # modulated copy of the (large) input is made.  They are formed at full precision
        # (large styles would overflow float16) and cast once.
        with full_precision(x):
            styles = self.affine(w.to(self.affine.weight.dtype)) * self.weight_gain  # [N, C_in]
            weight = self.weight[:, :, 0, 0][None] * styles[:, None, :]
        weight = weight.to(compute_dtype(x))
        n, c, h, wd = x.shape
        x = torch.bmm(weight, x.reshape(n, c, h * wd)).reshape(n, -1, h, wd)
        x = x + self.bias.to(x.dtype)[None, :, None, None]
        return x.clamp(-self.conv_clamp, self.conv_clamp) if self.conv_clamp is not None else x


class SynthesisBlock(nn.Module):
    """One resolution: (upsampling conv0,) conv1 and a skip ToRGB."""

    def __init__(self, in_channels: int, out_channels: int, resolution: int, config: GeneratorConfig):
        super().__init__()
        self.resolution = resolution
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn(out_channels, resolution, resolution))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, config.w_dim, resolution,
                                        up=True, conv_clamp=config.conv_clamp)
        self.conv1 = SynthesisLayer(out_channels, out_channels, config.w_dim, resolution,
                                    conv_clamp=config.conv_clamp)
        self.torgb = ToRGB(out_channels, config.w_dim, config.img_channels, config.conv_clamp)
        self.num_conv = 1 if in_channels == 0 else 2

    def forward(self, x, img, ws, noise_mode):
        """``ws`` holds this block's conv latents followed by its ToRGB latent."""
        if x is None:
            x = self.const.to(ws.dtype).unsqueeze(0).expand(ws.shape[0], -1, -1, -1)
            x = self.conv1(x, ws[:, 0], noise_mode)
        else:
            x = self.conv0(x, ws[:, 0], noise_mode)
            x = self.conv1(x, ws[:, 1], noise_mode)
        rgb = self.torgb(x, ws[:, self.num_conv]).float()
        img = rgb if img is None else upsample_2x(img) + rgb
        return x, img


class SynthesisNetwork(nn.Module):
    def __init__(self, config: GeneratorConfig):
        super().__init__()
        self.resolutions = config.block_resolutions
        self.num_ws = config.num_ws
        for res in self.resolutions:
            in_channels = config.channels(res // 2) if res > 4 else 0
            setattr(self, f"b{res}", SynthesisBlock(in_channels, config.channels(res), res, config))

    def forward(self, ws: torch.Tensor, noise_mode: str = "const", return_features: bool = False,
                max_resolution: int | None = None, warp=None):
        """W+ ``[N, num_ws, w_dim]`` -> image ``[N, C, R, R]`` in roughly [-1, 1].

        With ``return_features``, also the last block's features ``[N, channels(R), R, R]`` (what
        a subject's matte head reads, ``model/matte.py``); the image is computed the same way.
        ``max_resolution``: stop after that block; the image is then the skip sum so far, at that
        resolution (what coarse-to-fine training uses, fit/scratch_prior.py).  ``warp``: called as
        ``warp(resolution, features, image)`` after every block, returns both (a subject's pose
        warp, ``model/pose_warp.py``)."""
        if ws.ndim != 3 or ws.shape[1] != self.num_ws:
            raise ValueError(f"expected W+ of shape [N, {self.num_ws}, w_dim], got {tuple(ws.shape)}")
        if max_resolution is not None and max_resolution not in self.resolutions:
            raise ValueError(f"max_resolution must be one of {self.resolutions}, got {max_resolution!r}")
        x = img = None
        w_index = 0
        for res in self.resolutions:
            if max_resolution is not None and res > max_resolution:
                break
            block = getattr(self, f"b{res}")
            # A block's ToRGB shares its latent with the next block's first conv.
            x, img = block(x, img, ws[:, w_index:w_index + block.num_conv + 1], noise_mode)
            if warp is not None:
                x, img = warp(res, x, img)
            w_index += block.num_conv
        return (img, x) if return_features else img


class Generator(nn.Module):
    def __init__(self, config: GeneratorConfig):
        super().__init__()
        self.config = config
        self.num_ws = config.num_ws
        self.mapping = MappingNetwork(config)
        self.synthesis = SynthesisNetwork(config)

    def forward(self, z: torch.Tensor, truncation_psi: float = 1.0, noise_mode: str = "const") -> torch.Tensor:
        return self.synthesis(self.mapping(z, truncation_psi), noise_mode)

    @torch.no_grad()
    def estimate_w_avg(self, samples: int = 10000, seed: int = 0, batch: int = 1000) -> torch.Tensor:
        """Recompute ``mapping.w_avg`` from samples (for generators trained or built here)."""
        gen = torch.Generator().manual_seed(seed)
        device = self.mapping.w_avg.device
        total = torch.zeros_like(self.mapping.w_avg)
        for start in range(0, samples, batch):
            n = min(batch, samples - start)
            z = torch.randn(n, self.config.z_dim, generator=gen).to(device)
            total += self.mapping(z)[:, 0].sum(dim=0)
        self.mapping.w_avg.copy_(total / samples)
        return self.mapping.w_avg


def synthesis_macs(config: GeneratorConfig) -> int:
    """Multiply-accumulates of one synthesis pass at batch 1 (convolutions and ToRGB).

    Used by the benchmark for the FLOP floor; affine layers and filters are
    included because they are real work, biases and activations are not.
    """
    macs = 0
    for res in config.block_resolutions:
        c_out = config.channels(res)
        c_in = config.channels(res // 2) if res > 4 else 0
        # (input pixels, in, out): the upsampling conv0 is a transposed conv over the
        # half-resolution input, so it touches a quarter of the pixels.
        layers = [(res, c_out, c_out)] if c_in == 0 else [(res // 2, c_in, c_out), (res, c_out, c_out)]
        for pixels, cin, cout in layers:
            macs += pixels * pixels * cout * cin * 9
            macs += config.w_dim * cin  # affine
        macs += res * res * config.img_channels * c_out + config.w_dim * c_out  # ToRGB
    return macs
