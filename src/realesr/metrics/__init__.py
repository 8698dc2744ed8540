"""Image quality metrics with the conventions of the super-resolution literature.

``psnr``/``ssim`` on the BT.601 Y channel with a border crop, ``niqe`` (no reference, MATLAB-compatible) and the
MATLAB-style bicubic ``imresize`` the benchmark protocol is defined with.
"""

from realesr.metrics.color import rgb_to_y
from realesr.metrics.fullref import psnr, ssim
from realesr.metrics.imresize import cubic_kernel, imresize
from realesr.metrics.niqe import niqe

__all__ = ["cubic_kernel", "imresize", "niqe", "psnr", "rgb_to_y", "ssim"]
