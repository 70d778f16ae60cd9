"""Does a subject stay editable after pivotal tuning?  With and without PTI's locality regulariser.

    python benchmarks/editability.py [--epochs 60] [--mapper-steps 60] [--pti-lr 3e-4] [--json out.json]

The paper keeps PTI's locality regulariser because it preserves editability (its fig. 9).  On a
tiny synthetic setup (a 32 px "pretrained" generator: the synthetic subject's generator with its
synthesis weights perturbed, as tests/test_fit_pipeline.py builds one) this fits the same clip
twice with the pretrained prior, ``pti.locality_weight`` 1 and 0, everything else equal, then
applies one edit (the prior's top GANSpace component at +3 std, on every layer) at several head
poses and expressions and compares what it does in the tuned generator with what it does in the
prior, which is what the edit means:

* ``agreement``: cosine between the edit's image change in the tuned generator and in the prior,
  at the same frame code (1: the edit does exactly what it did before tuning);
* ``gain``: the ratio of their magnitudes (1: as strong as in the prior);
* ``drift``: mean absolute image difference between the tuned generator and the prior on codes
  far from the pivots (the regulariser's own target; lower is more local).

The direction is the same for both fits (PTI tunes the synthesis network only, so both subjects
share the prior's mapping network).  Everything is measured in one run on the CPU.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pvp_runtime.bundle import load_bundle  # noqa: E402
from pvp_runtime.editing import compute_ganspace  # noqa: E402
from pvp_runtime.fit.config import FitConfig  # noqa: E402
from pvp_runtime.fit.pipeline import FitRequest, FitRun  # noqa: E402
from pvp_runtime.fit.projector import noise_layers  # noqa: E402
from pvp_runtime.fit.synthetic import synthetic_clip  # noqa: E402
from pvp_runtime.model.stylegan2 import tiny_config  # noqa: E402

STRENGTH = 3.0
YAWS = (-0.5, 0.0, 0.5)
EXPRESSIONS = ((0.0, 0.0), (0.3, 1.5))  # (jaw_x, expr_00)


def pretrained_like(clip, seed: int = 1):
    generator = copy.deepcopy(clip.subject.generator)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # near the subject's generator, not equal to it
        for p in generator.synthesis.parameters():
            if p.ndim >= 2:
                p.add_(torch.randn(p.shape, generator=gen) * 0.2 * p.std())
        for layer in noise_layers(generator):
            layer.noise_strength.fill_(0.05)
    return generator.eval().requires_grad_(False)


def probe_frames(layout) -> np.ndarray:
    frames = layout.defaults(len(YAWS) * len(EXPRESSIONS))
    for row, (yaw, (jaw, expr)) in enumerate((y, e) for y in YAWS for e in EXPRESSIONS):
        frames[row, layout.index("head_yaw")] = yaw
        frames[row, layout.index("jaw_x")] = jaw
        frames[row, layout.index("expr_00")] = expr
    return frames


@torch.no_grad()
def measure(bundle, prior, edits) -> dict:
    layout = bundle.layout.without_edits()
    frames = probe_frames(layout)
    ws = bundle.model(bundle.model.inputs(frames, layout))[0]
    edited = edits.apply(ws, np.full((len(frames), 1), STRENGTH, np.float32))
    render = lambda g, w: g.synthesis(w, noise_mode="const").double()
    d_fit = (render(bundle.generator, edited) - render(bundle.generator, ws)).flatten(1)
    d_prior = (render(prior, edited) - render(prior, ws)).flatten(1)
    agreement = torch.nn.functional.cosine_similarity(d_fit, d_prior, dim=1)
    gain = d_fit.norm(dim=1) / d_prior.norm(dim=1)
    z = torch.randn(64, prior.config.z_dim, generator=torch.Generator().manual_seed(9))
    far = prior.mapping(z)
    drift = (render(bundle.generator, far) - render(prior, far)).abs().mean()
    return {"agreement": agreement.tolist(), "gain": gain.tolist(), "drift": float(drift)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=60, help="PTI passes over the pivots")
    parser.add_argument("--mapper-steps", type=int, default=60)
    parser.add_argument("--pti-lr", type=float, default=3e-4, help="PTI learning rate (default 3e-4, PTI's)")
    parser.add_argument("--json", type=Path, help="write the numbers here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    torch.manual_seed(0)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        clip = synthetic_clip(tiny_config(32, 32), num_frames=24, num_expressions=6, seed=4)
        paths = clip.write(root / "clip")
        prior = pretrained_like(clip)
        from pvp_runtime.loaders.generator_file import save_generator_file
        save_generator_file(prior, root / "prior.safetensors")
        edits = None
        for weight in (1.0, 0.0):
            config = FitConfig().with_overrides({
                "pivots.count": 6, "data.held_out_frames": 4, "projector.steps": 60, "projector.batch_size": 6,
                "projector.w_avg_samples": 1000, "pti.max_epochs": args.epochs, "pti.lpips_threshold": 0.0,
                "pti.locality_weight": weight, "pti.lr": args.pti_lr, "mapper.steps": args.mapper_steps, "mapper.batch_size": 4,
                "mapper.loss_resolution": None, "lpips.net": "alex", "eval.batch_size": 4,
                "eval.contact_sheet_frames": 0, "seed": 0})
            request = FitRequest(frames=str(paths["frames"]), channels=str(paths["channels"]), config=config,
                                 num_expressions=6, landmarks=str(paths["landmarks"]), mattes=str(paths["mattes"]),
                                 generator=str(root / "prior.safetensors"), name=f"locality_{weight:g}")
            result = FitRun.start(request, request.inspect(), root / f"fit_{weight:g}", device="cpu").run()
            bundle = load_bundle(result.bundle)
            if edits is None:
                edits = compute_ganspace(bundle, 1, samples=2048)
                spec = edits.specs[0]
                edits = type(edits)((type(spec)(spec.name, spec.kind, (0, prior.config.num_ws), spec.range,
                                                 spec.scale, spec.source),), edits.vectors)
            numbers = measure(bundle, prior, edits)
            numbers["held_out_psnr"] = result.report["evaluation"]["summary"]["pvp"]["psnr"]
            results[f"locality_weight={weight:g}"] = numbers
    print(f"edit: the prior's GANSpace pc00 at +{STRENGTH:g} std on all layers; frames: yaw {YAWS} x "
          f"(jaw_x, expr_00) {EXPRESSIONS}")
    print(f"{'':20s} {'agreement mean/min':>20s} {'gain mean (min..max)':>24s} {'drift':>8s} {'PSNR':>7s}")
    for name, n in results.items():
        print(f"{name:20s} {np.mean(n['agreement']):9.3f} / {np.min(n['agreement']):6.3f}   "
              f"{np.mean(n['gain']):8.3f} ({np.min(n['gain']):.3f}..{np.max(n['gain']):.3f})   "
              f"{n['drift']:8.4f} {n['held_out_psnr']:7.2f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
