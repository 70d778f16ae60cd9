"""Finding and importing appearance edit directions (``pvp edits``; ``pvp fit --edits K``).

**GANSpace** (Härkönen et al. 2020): PCA over latent codes the subject's generator draws from.
Which codes depends on the prior (``sample_codes``):

* *Pretrained prior* (or any bundle not fitted with the scratch prior): ``W = mapping(z)`` for
  ``z ~ N(0, I)``, as GANSpace does.  The mapping network is the prior's, untouched by PTI.
* *Scratch prior*: its mapping network was never trained, so its W means nothing.  The subject's
  codes are its pivots plus the mapper outputs over its training clip; the bundle does not carry
  the clip, so we draw channel frames from the clip's statistics in the bundle (``channel_stats``:
  each rig channel ~ N(mean, std), independently, clipped to its hard range; roll is not drawn, it
  never reaches W+) and run the mappers on them.  Codes are W+ here, one ``w`` per layer.

PCA runs on ``w_dim`` vectors: every layer of every sample, each layer centred by its own mean
(so a component is a direction shared by the layers, not the difference between them; for
mapping-network samples all layers are equal and this is plain PCA on W).  A component's default
layers are the contiguous span of layers on which its per-layer standard deviation reaches a
quarter of its largest; its ``scale`` is its standard deviation over those layers, so a strength of
1 moves one standard deviation.  Components are unit length, ordered by variance, and signed so
their largest coordinate is positive (deterministic).

**Direction files** (``read_direction``): InterFaceGAN boundaries ``.npy`` ``(1, w_dim)`` (as
released; ``(w_dim,)`` too), e4e's ``editings/interfacegan_directions/*.pt`` (a saved ``[1, w_dim]``
tensor) and e4e's ``editings/ganspace_pca/*.pt`` (``{"mean", "comp" [k, 1, w_dim], "std" [k]}``,
one component chosen).  e4e moves a code *to* a GANSpace coordinate (``(t - coord) comp std``);
we add ``t std comp`` instead, so strength 0 leaves every frame as it was.  Directions are
normalised on import.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from .bundle import SubjectBundle
from .contract.channels import ChannelLayout
from .contract.edits import EditSpec
from .contract.errors import AssetError, PVPError
from .model.edits import EditDirections

log = logging.getLogger(__name__)
DEFAULT_SAMPLES = 4096
LAYER_SPAN_FRACTION = 0.25
MIN_NORM = 1e-8


def subject_prior(bundle: SubjectBundle) -> str:
    """``scratch`` for a subject fitted with the scratch prior, else ``pretrained``."""
    fit = bundle.provenance.get("fit") if isinstance(bundle.provenance, dict) else None
    return "scratch" if isinstance(fit, dict) and fit.get("prior") == "scratch" else "pretrained"


@torch.no_grad()
def sample_codes(bundle: SubjectBundle, samples: int = DEFAULT_SAMPLES, seed: int = 0) -> tuple[torch.Tensor, str]:
    """``[S, num_ws, w_dim]`` latent codes of this subject, and a line saying what they are."""
    generator = torch.Generator().manual_seed(seed)
    num_ws = bundle.generator.config.num_ws
    if subject_prior(bundle) == "pretrained":
        z = torch.randn(samples, bundle.generator.config.z_dim, generator=generator)
        w = bundle.generator.mapping(z.to(next(bundle.generator.parameters()).device)).float().cpu()
        w = w if w.ndim == 3 else w[:, None].expand(-1, num_ws, -1)  # W broadcast to every layer
        return w, f"{samples} mapping-network samples (seed {seed})"
    layout = ChannelLayout(bundle.model.config.num_expressions)
    stats = bundle.channel_stats
    rng = np.random.default_rng(seed)
    frames = rng.standard_normal((samples, layout.rig_size)).astype(np.float32) * stats.std + stats.mean
    frames = np.clip(frames, layout._tables.hard_min, layout._tables.hard_max)
    frames[:, layout.index("head_roll")] = 0.0
    model = bundle.model
    device = model.pivots.device
    ws = torch.cat([model(model.inputs(frames[i:i + 256], layout, device))[0].float().cpu()
                    for i in range(0, samples, 256)])
    pivots = model.pivots.detach().float().cpu()
    return (torch.cat([pivots, ws]), f"{len(pivots)} pivots + mappers over {samples} frames drawn from the "
                                     f"bundle's channel_stats (seed {seed})")


def ganspace(codes: torch.Tensor, k: int) -> list[tuple[np.ndarray, float, tuple[int, int], float]]:
    """The top ``k`` components of ``codes`` [S, L, C]: (unit direction, scale, layers, variance share)."""
    from sklearn.decomposition import PCA
    codes = codes.double().numpy()
    samples, num_ws, w_dim = codes.shape
    centred = codes - codes.mean(axis=0, keepdims=True)
    k_max = min(w_dim, samples * num_ws - 1)
    if not 1 <= k <= k_max:
        raise PVPError(f"-k {k}: choose 1..{k_max} components for this subject")
    pca = PCA(n_components=k, svd_solver="full").fit(centred.reshape(-1, w_dim))
    total = centred.var(axis=0).sum(axis=-1).sum()
    out = []
    for component in pca.components_:
        component = component / np.linalg.norm(component)
        component *= np.sign(component[np.argmax(np.abs(component))])
        per_layer = np.sqrt(np.mean((centred @ component) ** 2, axis=0))  # [L] std along it
        strong = np.flatnonzero(per_layer >= LAYER_SPAN_FRACTION * per_layer.max())
        layers = (int(strong[0]), int(strong[-1]) + 1)
        scale = float(np.sqrt(np.mean(per_layer[layers[0]:layers[1]] ** 2)))
        share = float((per_layer ** 2).sum() / total) if total > 0 else 0.0
        out.append((component.astype(np.float32), scale, layers, share))
    return out


def compute_ganspace(bundle: SubjectBundle, k: int = 10, samples: int = DEFAULT_SAMPLES, seed: int = 0,
                     prefix: str = "pc", strength: float = 3.0) -> EditDirections:
    """``bundle``'s edits with its top ``k`` GANSpace components added as ``<prefix>00``..."""
    codes, described = sample_codes(bundle, samples, seed)
    edits = bundle.edits
    for index, (vector, scale, layers, share) in enumerate(ganspace(codes, k)):
        if scale <= MIN_NORM:
            raise PVPError(f"GANSpace component {index} has no variance: the subject's codes do not vary")
        spec = EditSpec(f"{prefix}{index:02d}", "ganspace", layers, (-strength, strength), scale,
                        f"GANSpace PCA component {index} ({100 * share:.1f}% of the variance) of {described}")
        edits = edits.with_edit(spec, torch.from_numpy(vector))
    log.info("GANSpace: %d components of %s", k, described)
    return edits


def read_direction(path: str | Path, w_dim: int, component: int | None = None) -> tuple[np.ndarray, str, float]:
    """A direction file -> (unit ``[w_dim]`` vector, kind, scale).  One-line AssetError otherwise."""
    path = Path(path)
    if not path.is_file():
        raise AssetError(f"{path}: direction file not found")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise AssetError(f"{path}: not a readable .npy array ({' '.join(str(exc).split())})") from None
        kind, scale = "interfacegan", 1.0
    elif suffix in (".pt", ".pth"):
        from .loaders.torch_files import read_torch_file
        data = read_torch_file(path, "direction file")
        if isinstance(data, dict) and {"comp", "std"} <= set(data):
            array, scale = _ganspace_component(data, path, component)
            kind = "ganspace"
        elif torch.is_tensor(data):
            array, kind, scale = data.numpy(), "interfacegan", 1.0
        else:
            raise AssetError(f"{path}: expected a saved direction tensor or a GANSpace dict with 'comp' and 'std'")
    else:
        raise AssetError(f"{path}: unsupported direction file {suffix!r} (expected .npy or .pt)")
    if kind == "interfacegan" and component is not None:
        raise AssetError(f"{path}: --component applies to GANSpace files only")
    return _unit(array, path, w_dim), kind, scale


def _ganspace_component(data: dict, path: Path, component: int | None) -> tuple[np.ndarray, float]:
    comp, std = data["comp"], data["std"]
    if not (torch.is_tensor(comp) and torch.is_tensor(std)) or comp.ndim < 2 or std.ndim != 1 \
            or len(comp) != len(std):
        raise AssetError(f"{path}: GANSpace 'comp' must be [k, 1, w_dim] and 'std' [k]")
    if component is None or not 0 <= component < len(comp):
        raise AssetError(f"{path}: holds {len(comp)} GANSpace components: choose one with --component 0..{len(comp) - 1}")
    scale = float(std[component])
    if not np.isfinite(scale) or not 1e-8 <= scale <= 1e4:
        raise AssetError(f"{path}: GANSpace std of component {component} is {scale}, expected a positive number")
    return comp[component].numpy(), scale


def _unit(array: np.ndarray, path: Path, w_dim: int) -> np.ndarray:
    array = np.asarray(array)
    if not np.issubdtype(array.dtype, np.floating):
        raise AssetError(f"{path}: direction must hold floats, got {array.dtype}")
    if array.shape not in ((1, w_dim), (w_dim,), (1, 1, w_dim)):
        raise AssetError(f"{path}: direction has shape {list(array.shape)}, expected [1, {w_dim}] "
                         f"(this subject's w_dim is {w_dim})")
    vector = array.reshape(w_dim).astype(np.float64)
    if not np.isfinite(vector).all():
        raise AssetError(f"{path}: direction holds NaN or infinite values")
    norm = np.linalg.norm(vector)
    if norm < MIN_NORM:
        raise AssetError(f"{path}: direction is zero")
    return (vector / norm).astype(np.float32)
