"""``pvp fit FRAMES CHANNELS -o OUTDIR``: learn a subject from a monocular video."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import shutil
from pathlib import Path

from ..contract.errors import PVPError
from ..formats.channel_sources import SOURCES

log = logging.getLogger("pvp.fit")

DESCRIPTION = """\
Learn a personalized, riggable subject from a monocular video (PVP; README "Fitting a subject").

Inputs: FRAMES is a video file or a folder of images; CHANNELS holds one record of rig
channels per frame in the runtime's layout (.csv/.json/.npz, see README "Channel files").
Every input is checked before any work starts: frame/channel/landmark/matte counts, every
frame decoded, sizes, values.  Nothing is written if a check fails.

Stages (each resumable; --set SECTION.KEY=VALUE changes any setting, see --dump-config):
  prepare     decode and align every frame to the generator's square crop: FFHQ-style from
              68 landmarks (--landmarks), smoothed over time (data.landmark_smoothing_sigma);
              frames that already are square aligned crops pass through.  The last frames are
              held out for evaluation (--held-out, data.held_out_fraction, default 20%).
  pivots      K-means (K = --pivots, default 200) over the standardised pitch, yaw, neck, jaw
              and expression the channel file provides; the frame nearest each centroid is a
              pivot.  The choice is saved in report.json.
  projection  pretrained prior only (--generator): each pivot is projected to W (PTI's
              projector: projector.steps 450, lr 5e-3, noise ramp 0.75, noise reg 1e5), or
              encoded by e4e when --e4e is given.
  pti         pretrained prior only: pivotal tuning of the generator on all pivots,
              LPIPS + MSE + the locality regulariser (pti.locality_*: alpha 30, truncation
              0.5), until an epoch's mean LPIPS < pti.lpips_threshold (0.03) or
              pti.max_epochs (350) passes over the pivots.
  scratch_prior  without --generator: a small generator (--resolution, --width) and the pivot
              codes are learnt together from the pivots alone (scratch.*).  For small or
              demo subjects and CPU machines; expect lower quality than a pretrained prior.
  mapper      pose and expression mappers (generator frozen; tuned too for the scratch prior,
              mapper.tune_generator): MSE, LPIPS and latent regulariser always; ArcFace
              identity with --arcface; expression matching and pose consistency with --deca;
              masked RGB consistency with --landmarks.  Adam 5e-4, --mapper-steps (50000).
  evaluate    PSNR, SSIM, LPIPS on the held-out frames (masked by --mattes when given) for
              the fit and two baselines (nearest training frame, nearest pivot), written to
              OUTDIR/report.json and OUTDIR/contact_sheet.png (truth | render | error).
  bundle      the subject bundle, written atomically at the very end.

Long jobs: a checkpoint is written every --checkpoint-every steps or 10 minutes; Ctrl-C
stops at the next step boundary and checkpoints; `pvp fit --resume -o OUTDIR` continues
(a kill loses at most one checkpoint interval; inputs are recorded by absolute path).  A NaN
or infinite loss or parameter stops the fit with its stage and step, and is never
checkpointed.  Same seed + same device = same result.

LPIPS uses the lpips package's published linear weights and pretrained VGG16/AlexNet
backbones from the torch hub cache (vgg16-397923af.pth, alexnet-owt-7be5be79.pth) or
--lpips-backbone; without them it runs on a RANDOM backbone and says so in the log and
the report.
"""

# Options that define a fit; with --resume they come from the checkpoint instead.
DEFINING = ("frames", "channels", "landmarks", "mattes", "expressions", "generator", "resolution", "width",
            "config_f", "e4e", "arcface", "deca", "config", "set", "pivots", "held_out", "projector_steps",
            "pti_epochs", "scratch_steps", "mapper_steps", "loss_resolution", "lpips_backbone",
            "eval_lpips_backbone", "checkpoint_every", "seed", "name", "bundle")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("fit", help="learn a subject bundle from a video (PVP fitting)",
                                   description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    inputs = parser.add_argument_group("inputs")
    inputs.add_argument("frames", nargs="?", help="video file or folder of frame images")
    inputs.add_argument("channels", nargs="?", help="per-frame rig channels (.csv, .json or .npz) or tracker "
                        "output (DECA/SMIRK .npz, EMOCA folder, feats.json)")
    inputs.add_argument("--channel-source", choices=SOURCES, default="auto",
                        help="layout of CHANNELS (default: detected from its contents)")
    inputs.add_argument("-o", "--output", type=Path, required=True,
                        help="output folder: checkpoint, report, contact sheet, bundle")
    inputs.add_argument("--landmarks", help="68 landmarks per frame in frame pixels (.npy [F,68,2], .npz "
                                            "'landmarks', .json); enables FFHQ alignment and the eye/mouth mask")
    inputs.add_argument("--mattes", help="video or folder of mattes (255 = subject); evaluation removes the "
                                         "background with them")
    inputs.add_argument("--expressions", type=int, help="expression channels in the channel file (default 50)")
    prior = parser.add_argument_group("prior")
    prior.add_argument("--generator", help="pretrained StyleGAN2 generator (.safetensors from "
                                           "pvp import-generator); without it the scratch prior is used")
    prior.add_argument("--resolution", type=int, help="scratch prior: generator resolution (default 64)")
    prior.add_argument("--width", type=int, help="scratch prior: w_dim and widest layer (default 64)")
    prior.add_argument("--config-f", action="store_const", const=True,
                       help="scratch prior: full config-f channel widths")
    nets = parser.add_argument_group("optional pretrained networks")
    nets.add_argument("--e4e", help="e4e checkpoint (e4e_ffhq_encode.pt): encode the pivots instead of projecting "
                                    "them; its decoder is the prior when --generator is not given")
    nets.add_argument("--arcface", help="ArcFace IR-SE50 weights (model_ir_se50.pth): identity loss")
    nets.add_argument("--deca", help="DECA checkpoint (deca_model.tar): its coarse encoder drives the expression "
                                     "matching and pose consistency losses")
    settings = parser.add_argument_group("settings")
    settings.add_argument("--config", help="JSON config file (see --dump-config for every key and default)")
    settings.add_argument("--set", action="append", metavar="KEY=VALUE",
                          help="override one setting, e.g. --set pti.lr=1e-4 (value parsed as JSON); repeatable")
    settings.add_argument("--pivots", type=int, help="K, the number of pivots (pivots.count, default 200)")
    settings.add_argument("--held-out", type=int, help="hold out the last N frames (default: last 20%%)")
    settings.add_argument("--projector-steps", type=int, help="projector.steps (default 450)")
    settings.add_argument("--pti-epochs", type=int, help="pti.max_epochs (default 350)")
    settings.add_argument("--scratch-steps", type=int, help="scratch.steps (default 3000)")
    settings.add_argument("--mapper-steps", type=int, help="mapper.steps (default 50000)")
    settings.add_argument("--loss-resolution", type=int, help="mapper.loss_resolution (default 512)")
    settings.add_argument("--lpips-backbone", help="torchvision VGG16 .pth for the training LPIPS")
    settings.add_argument("--eval-lpips-backbone", help="torchvision AlexNet .pth for the evaluation LPIPS")
    settings.add_argument("--checkpoint-every", type=int, help="checkpoint every N steps (default 500)")
    settings.add_argument("--seed", type=int, help="random seed (default 0)")
    run = parser.add_argument_group("run")
    run.add_argument("--name", help="subject name (default: the output folder's name)")
    run.add_argument("--bundle", help="where to write the bundle (default OUTDIR/NAME.pvp)")
    run.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    run.add_argument("--edits", type=int, default=0, metavar="K",
                     help="add the top K GANSpace components to the bundle as edits edit_pc00.. (as pvp edits "
                          "compute; default 0: none)")
    run.add_argument("--resume", action="store_true", help="continue the fit checkpointed in OUTDIR")
    run.add_argument("--overwrite", action="store_true", help="delete an earlier fit in OUTDIR and start again")
    run.add_argument("--dump-config", action="store_true", help="print the resolved config as JSON and exit")
    parser.set_defaults(run=run_fit)


def _parse_assignment(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise PVPError(f"--set {text!r}: expected KEY=VALUE, for example pti.lr=1e-4")
    key, raw = text.split("=", 1)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.strip(), value


def build_config(args):
    from ..fit.config import FitConfig

    config = FitConfig.load(args.config) if args.config else FitConfig()
    overrides = dict(_parse_assignment(text) for text in (args.set or []))
    shortcuts = {"pivots.count": args.pivots, "data.held_out_frames": args.held_out,
                 "projector.steps": args.projector_steps, "pti.max_epochs": args.pti_epochs,
                 "scratch.steps": args.scratch_steps, "mapper.steps": args.mapper_steps,
                 "mapper.loss_resolution": args.loss_resolution, "lpips.backbone": args.lpips_backbone,
                 "lpips.eval_backbone": args.eval_lpips_backbone, "checkpoint.every_steps": args.checkpoint_every,
                 "seed": args.seed, "scratch.resolution": args.resolution, "scratch.width": args.width,
                 "scratch.config_f": args.config_f}
    overrides.update({k: v for k, v in shortcuts.items() if v is not None})
    return config.with_overrides(overrides) if overrides else config


@contextlib.contextmanager
def _log_to_file(path: Path):
    """Append INFO and above to OUTDIR/fit.log whatever the console shows (-q keeps the console quiet)."""
    root = logging.getLogger()
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    previous = root.level
    quietened = [h for h in root.handlers if h.level == logging.NOTSET]
    for h in quietened:
        h.setLevel(previous)  # the console keeps the level it had
    root.setLevel(min(previous, logging.INFO) if previous else logging.INFO)
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        handler.close()
        root.setLevel(previous)
        for h in quietened:
            h.setLevel(logging.NOTSET)


def _looks_like_fit_folder(path: Path) -> bool:
    return (path / "work").is_dir() or (path / "config.json").is_file()


def run_fit(args) -> int:
    from ..avatar import resolve_device
    from ..fit.assets import load_networks, load_prior
    from ..fit.matte_eval import matte_summary_line
    from ..fit.pipeline import FitRequest, FitRun, summary_table
    from ..fit.stage import FitInterrupted

    out = args.output
    if args.resume:
        given = [name for name in DEFINING if getattr(args, name, None) not in (None, False)]
        if given:
            raise PVPError(f"--resume continues the fit recorded in {out}; drop --{given[0].replace('_', '-')} "
                           f"(inputs and settings come from its checkpoint)")
        request = FitRun.read_request(out)
    else:
        config = build_config(args)
        if args.dump_config:
            print(config.to_json())
            return 0
        if not args.frames or not args.channels:
            raise PVPError("FRAMES and CHANNELS are required (or --resume to continue a fit)")
        request = FitRequest(frames=args.frames, channels=args.channels, config=config,
                             channel_source=args.channel_source,
                             num_expressions=args.expressions or 50, landmarks=args.landmarks, mattes=args.mattes,
                             generator=args.generator, e4e=args.e4e, arcface=args.arcface, deca=args.deca,
                             name=args.name or out.resolve().name, bundle=args.bundle, edits=args.edits)
    if not 0 <= request.edits <= 64:
        raise PVPError(f"--edits must be in 0..64, got {request.edits}")
    device = resolve_device(args.device)
    # Every check before any work: inputs, generator file, networks, output folder.
    inputs = request.inspect()
    generator = load_prior(request.generator, request.e4e, device)
    networks = load_networks(request.arcface, request.deca, request.e4e, generator, device)
    if request.bundle and not Path(request.bundle).resolve().parent.is_dir():
        raise PVPError(f"--bundle {request.bundle}: folder does not exist")
    if args.resume:
        run = FitRun.resume(out, inputs, networks=networks, device=device)
    else:
        if out.exists() and not out.is_dir():
            raise PVPError(f"{out}: exists and is not a folder")
        if out.is_dir() and any(out.iterdir()):
            if not args.overwrite:
                raise PVPError(f"{out}: output folder is not empty (--resume continues a fit there, "
                               f"--overwrite starts again)")
            if not _looks_like_fit_folder(out):
                raise PVPError(f"{out}: --overwrite only replaces an earlier fit's folder, and this is not one")
            shutil.rmtree(out)
        if not out.parent.is_dir():
            raise PVPError(f"{out.parent}: parent folder does not exist")
        run = FitRun.start(request, inputs, out, networks=networks, device=device)
    run.generator = generator
    with _log_to_file(out / "fit.log"):
        log.info("fitting %s (%s prior) on %s into %s", request.name, request.prior, device, out)
        try:
            result = run.run()
        except FitInterrupted as exc:
            print(f"pvp: {exc}; continue with: pvp fit --resume -o {out}")
            return 130
    print(summary_table(result.evaluation))
    print(matte_summary_line(result.report["matte"]))
    print(f"wrote {result.bundle}, {out / 'report.json'} and {out / 'contact_sheet.png'}")
    return 0
