"""What the page says when a file cannot be done: the file's name, what was wrong in plain words, what to do.

The library's messages name options and internal readers ("not an image file Pillow can decode", "tile",
"--outscale") meant for the command line; a person at the page chose a file and a few settings, so each kind of
failure is said once in those terms, with the library's detail only where it adds a fact.
"""

from __future__ import annotations

import re
from pathlib import Path

from realesr.errors import ImageReadError, ImageWriteError, ModelNotFoundError, RealesrError, WeightsFormatError

READABLE = "PNG, JPEG, WebP, TIFF, BMP or GIF picture, or a video"


def not_readable(name: str) -> str:
    return (
        f"{name} is not a picture or video this page can read. Upload a {READABLE} "
        "(if it is one, it may be damaged: open it in another program, save it again and upload that)."
    )


def damaged(name: str) -> str:
    return (
        f"{name} is damaged or cut short (an interrupted download or copy?): open it in another program, save it "
        "again and upload that."
    )


def _detail(name: str, err: BaseException, upload: Path | None) -> str:
    """The library's message without the file's name or path (the page says it once, first)."""
    text = str(err)
    if upload is not None:
        text = text.replace(str(upload), name)
    text = re.sub(rf"^{re.escape(name)}\s*[:,-]\s*", "", text.strip())
    text = text.replace(f"({name})", "").replace(name, "the file").strip()
    return text.rstrip(".") if text else "no further detail"


def failure_message(name: str, model: str, err: BaseException | str, upload: Path | None = None) -> str:
    """One sentence or two for a failed job, in words a person who dropped ``name`` on the page can act on."""
    text = str(err)
    if isinstance(err, str):
        err = RealesrError(err)
    if isinstance(err, MemoryError) or "out of memory" in text.lower():
        return (
            f"{name} needs more memory than this machine has at this size: choose a smaller output size "
            "(×2 or a target width) or a smaller model, then upload it again."
        )
    if isinstance(err, ModelNotFoundError):
        return (
            f"{name} was not upscaled: the model {model} is not on this machine and this server does not download "
            f"models. Choose another model, or run `realesr models --download {model}` and restart the server."
        )
    if isinstance(err, WeightsFormatError):
        return f"{name} was not upscaled: the model {model} could not be loaded ({_detail(name, err, upload)})."
    if isinstance(err, ImageReadError):
        return (
            f"{name} could not be read to the end: the file is damaged or cut short. Open it in another program, "
            "save it again and upload that."
        )
    if isinstance(err, ImageWriteError):
        return f"the result of {name} could not be saved: {_detail(name, err, upload)}. Try another format."
    if type(err).__name__ == "VideoError":
        return f"{name}: the video could not be upscaled: {_detail(name, err, upload)}."
    if isinstance(err, RealesrError):
        return f"{name} was not upscaled: {_detail(name, err, upload)}."
    return (
        f"{name} was not upscaled because of an internal error in realesr ({type(err).__name__}); the server's "
        "terminal shows the details. Please report it."
    )
