"""The cache folder of downloaded weights and the one downloader of realesr (official zoo, VGG19 for the
perceptual loss). A leaf module: it imports nothing of realesr but the errors and atomic writes, so both
``realesr.archs`` and ``realesr.weights`` can use it without importing each other.
"""

from __future__ import annotations

import hashlib
import os
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from realesr.atomic import atomic_path
from realesr.errors import UsageError

__all__ = ["CACHE_ENV", "Checksum", "DownloadError", "Progress", "cache_dir", "download"]

CACHE_ENV = "REALESR_CACHE_DIR"

# ``progress(done_bytes, total_bytes_or_None)``: the library reports, only the CLI draws a bar.
Progress = Callable[[int, "int | None"], None]


class DownloadError(OSError):
    """A download that failed or whose bytes are not the expected file (callers turn it into their own error)."""


def cache_dir() -> Path:
    """Where downloaded and user-provided weights live: ``$REALESR_CACHE_DIR`` (``~`` and ``~user`` expanded)
    or the platform's user cache."""
    env = os.environ.get(CACHE_ENV)
    if env:
        # os.path.expanduser (not Path's, which raises RuntimeError) leaves an unknown ~user as it is; a folder
        # literally named "~nouser" is never what was meant.
        expanded = os.path.expanduser(env)
        if expanded.startswith("~"):
            head = expanded.split(os.sep, 1)[0]
            raise UsageError(
                f"{CACHE_ENV}={env!r}: no user {head[1:]!r} on this machine to expand {head!r} "
                f"(or no HOME for '~'); set {CACHE_ENV} to an existing folder's path"
            )
        return Path(expanded)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("realesr", appauthor=False)) / "models"


@dataclass(frozen=True)
class Checksum:
    """What a downloaded file must be. ``sha256`` the full digest when it is known; else ``sha256_prefix``
    (the hex prefix that BasicSR / torchvision release names carry, e.g. ``vgg19-dcbb9e9d.pth``) and ``size``."""

    sha256: str | None = None
    sha256_prefix: str | None = None
    size: int | None = None

    def problem(self, digest: str, size: int) -> str | None:
        if self.size is not None and size != self.size:
            return f"got {size} bytes, expected {self.size}"
        if self.sha256 and digest != self.sha256.lower():
            return f"its SHA-256 {digest} is not the expected {self.sha256}"
        if self.sha256_prefix and not digest.startswith(self.sha256_prefix.lower()):
            return f"its SHA-256 {digest[:16]}... does not start with {self.sha256_prefix}"
        return None


def _urlopen(url: str, timeout: float = 30.0) -> Any:
    return urllib.request.urlopen(url, timeout=timeout)


def download(
    url: str,
    dest: Path,
    checksum: Checksum | None = None,
    progress: Progress | None = None,
    opener: Callable[..., Any] | None = None,
) -> Path:
    """Fetch ``url`` to ``dest`` through a temporary file beside it: the size is checked against
    Content-Length and ``checksum``, and only a file that passes replaces ``dest``. Raises
    :class:`DownloadError` (an ``OSError``) naming what went wrong; nothing is left behind."""
    opener = opener or _urlopen  # looked up per call, so tests can replace the network
    sha = hashlib.sha256()
    done = 0
    try:
        with atomic_path(Path(dest), ".part") as tmp:
            with open(tmp, "wb") as out, opener(url) as response:
                length = response.headers.get("Content-Length")
                expected = int(length) if length and str(length).isdigit() else None
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    sha.update(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(done, expected)
            if expected is not None and done != expected:
                raise DownloadError(f"got {done} bytes of {expected}")
            if done == 0:
                raise DownloadError("the server sent an empty file")
            problem = checksum.problem(sha.hexdigest(), done) if checksum else None
            if problem:
                raise DownloadError(f"{url} is not the expected file: {problem}")
    except DownloadError:
        raise
    except (OSError, ValueError) as err:  # URLError is an OSError; a bad URL a ValueError
        raise DownloadError(str(getattr(err, "reason", None) or err)) from err
    return Path(dest)
