"""``pvp import-generator SRC -o OUT.safetensors``: a research StyleGAN2 checkpoint -> our prior file."""

from __future__ import annotations

from pathlib import Path

from ..contract.errors import PVPError


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "import-generator", help="convert a StyleGAN2 checkpoint into a PVP generator file",
        description="Read an NVlabs stylegan2-ada-pytorch .pkl (G_ema, or a PTI torch.save(G)), a rosinality "
                    "stylegan2-pytorch .pt (g_ema + latent_avg) or an e4e checkpoint (its decoder), without "
                    "running any code the file carries, and write the generator as safetensors with its config "
                    "and provenance. This file is the pretrained prior `pvp fit` takes.")
    parser.add_argument("source", type=Path, help="checkpoint to convert (.pkl, .pt, .pth)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="generator file to write (.safetensors)")
    parser.add_argument("--kind", choices=("auto", "nvlabs", "rosinality", "e4e"), default="auto",
                        help="checkpoint layout (default: detected from the contents)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    parser.set_defaults(run=run)


def run(args) -> int:
    from ..loaders.generator_file import load_any_generator, save_generator_file

    if args.output.suffix.lower() != ".safetensors":
        raise PVPError(f"{args.output}: the output must be a .safetensors file")
    if args.output.exists() and not args.overwrite:
        raise PVPError(f"{args.output}: already exists (pass --overwrite to replace it)")
    generator, provenance = load_any_generator(args.source, args.kind)
    save_generator_file(generator, args.output, provenance)
    config = generator.config
    params = sum(p.numel() for p in generator.parameters())
    print(f"wrote {args.output}: {provenance['kind']} generator, {config.resolution}x{config.resolution}, "
          f"W+ {config.num_ws} x {config.w_dim}, {params / 1e6:.1f} M parameters")
    return 0
