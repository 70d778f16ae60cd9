"""Loaders for third-party torch checkpoints: StyleGAN2 (NVlabs ``.pkl``, rosinality ``.pt``),
ArcFace IR-SE50, e4e and DECA's coarse encoder.  Every file goes through :mod:`.torch_files`, which never runs code
a file carries; every loader checks kinds and shapes and raises one-line ``AssetError``\\ s.
"""
