"""realesr: Real-ESRGAN blind super-resolution in PyTorch."""

from realesr.errors import RealesrError

__version__ = "0.1.0"
DEFAULT_MODEL = "RealESRGAN_x4plus"  # what `realesr upscale`, the Upscaler and the page use unless told

__all__ = ["DEFAULT_MODEL", "RealesrError", "Upscaler", "__version__"]


def __getattr__(name: str):
    # Lazy so that `import realesr` (and the CLI's start-up) does not pay for the inference stack.
    if name == "Upscaler":
        from realesr.infer.upscaler import Upscaler

        return Upscaler
    raise AttributeError(f"module 'realesr' has no attribute {name!r}")
