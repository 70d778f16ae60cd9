"""Readers for files from the research ecosystem that need no torch.

Everything here imports only numpy and the standard library, so the Blender
extension ships this package next to ``contract/``: the allow-list unpickler,
FLAME model files with linear blend skinning, and the importers that turn
DECA / EMOCA / SMIRK / ``feats.json`` parameters into rig channel frames.
Torch checkpoints (StyleGAN2, ArcFace, e4e) are read in ``pvp_runtime.loaders``.
"""
