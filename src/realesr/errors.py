"""Exceptions the library raises; the CLI turns them into one-line messages and exit codes."""

from __future__ import annotations


class RealesrError(Exception):
    """Base class: a problem the user can act on. ``str(err)`` is the message shown to them.

    ``params``: the library parameters (e.g. "outscale", "device") the user can change to avoid it; the library
    names no command-line flags, the CLI maps these to its options and adds them to the message.
    ``key``: for configuration errors, the dotted config key the message is about ("" when none).
    """

    exit_code = 1

    def __init__(self, *args: object, params: tuple[str, ...] | list[str] = (), key: str = "") -> None:
        super().__init__(*args)
        self.params = tuple(params)
        self.key = key


class UsageError(RealesrError):
    """A wrong option or argument combination (exit code 2)."""

    exit_code = 2


class ImageReadError(RealesrError):
    """A file that is missing, unreadable or not a decodable image."""


class ImageWriteError(RealesrError):
    """An output that cannot be written (permissions, disk, bad extension)."""


class ModelNotFoundError(RealesrError):
    """A model name or path that no source can provide (exit code 2)."""

    exit_code = 2


class WeightsFormatError(RealesrError):
    """A weights file whose content is not a network realesr recognises (damaged, altered, another network): the
    user must give other weights, a usage error (exit code 2) like a missing model (issue 18)."""

    exit_code = 2


class NotWeightsError(WeightsFormatError):
    """A model path that is a folder or a file of another kind (an image, a text): the user named the wrong thing."""


class ConfigError(RealesrError):
    """An invalid training or degradation configuration; the message names the key."""

    exit_code = 2


class DataError(RealesrError):
    """A dataset path or list that yields no usable image."""


class MissingExtraError(UsageError):
    """A feature that needs an optional extra which is not installed (exit code 2): one message naming the feature,
    the missing module and the extra to install, the same everywhere."""

    def __init__(self, feature: str, extra: str, module: str = "", params: tuple[str, ...] = ()) -> None:
        missing = f" ({module} is missing)" if module else ""
        super().__init__(f"{feature} needs the {extra} extra{missing}: pip install 'realesr[{extra}]'", params=params)
        self.extra = extra
