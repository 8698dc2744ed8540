"""Inference: image files in and out (``read_image``/``write_image``) and the ``Upscaler``."""

from realesr.infer.io import LoadedImage, read_image, read_rgb, write_image
from realesr.infer.upscaler import DEFAULT_MODEL, DEFAULT_TILE_PAD, Upscaler

__all__ = ["LoadedImage", "read_image", "read_rgb", "write_image", "Upscaler", "DEFAULT_MODEL", "DEFAULT_TILE_PAD"]
