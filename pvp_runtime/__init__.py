"""PVP Avatar runtime: StyleGAN2 generator, PVP mappers, subject bundles, rendering, fitting.

Importing this package imports no torch; ``pvp_runtime.contract`` is shared
with the Blender extension, which has no torch.
"""

__version__ = "0.1.0"
