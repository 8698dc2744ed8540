"""Networks with the official Real-ESRGAN / BasicSR state-dict layouts."""

from realesr.archs.discriminator import UNetDiscriminatorSN
from realesr.archs.rrdbnet import RRDBNet
from realesr.archs.srvgg import SRVGGNetCompact

__all__ = ["RRDBNet", "SRVGGNetCompact", "UNetDiscriminatorSN"]
