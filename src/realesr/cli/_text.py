"""How the CLI shows text that comes from outside (file names above all): one function, :func:`escape`, for every
message line (issue 18). A name may hold a newline, an escape sequence a terminal would obey, bidi controls that
reorder what is shown, or bytes that are not UTF-8 (Python keeps them as lone surrogates, which the encoder of
stdout refuses): shown escaped, so that a message stays one line and shows what the name really is."""

from __future__ import annotations

import unicodedata

__all__ = ["escape"]

# Control characters, format characters (bidi overrides, zero-width), surrogates, line and paragraph separators.
_HIDDEN = {"Cc", "Cf", "Cs", "Zl", "Zp"}


def _escaped(ch: str) -> str:
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:  # a byte of a file name that is not UTF-8 (os.fsdecode's surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x100:
        return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(ch, f"\\x{code:02x}")
    return f"\\u{code:04x}"


def escape(text: str) -> str:
    """``text`` with every character a terminal would not print as itself written as a Python-style escape."""
    if text.isprintable():  # the common case, at C speed (isprintable is False for every hidden character)
        return text
    return "".join(_escaped(ch) if unicodedata.category(ch) in _HIDDEN else ch for ch in text)
