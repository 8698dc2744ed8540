"""Inference: the ``Upscaler`` (tensors and arrays) and ``files`` (upscaling image files, the rules of `realesr
upscale` for every front end). Reading and writing image files is :mod:`realesr.imagefiles`."""

from realesr.infer.upscaler import DEFAULT_MODEL, DEFAULT_TILE_PAD, Upscaler

__all__ = ["DEFAULT_MODEL", "DEFAULT_TILE_PAD", "Upscaler"]
