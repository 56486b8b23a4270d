"""Making attacker-controlled strings safe to show.

Everything in a result document can come from the wire: an SNI, an HTTP Host, a DNS name, a
reason that quotes them. A report must show such a string *as it is* (so a reader can verify
it) without letting it act on the reader's tools:

* ``terminal_safe`` — for terminals and any plain-text sink. Control characters (C0, DEL,
  C1, so also ESC and ANSI/OSC sequences), bidirectional overrides and isolates (which can
  make ``moc.elgoog`` read as ``google.com``), line/paragraph separators and lone surrogates
  (which cannot be encoded) become visible ``\\xNN`` / ``\\uNNNN`` escapes.
* ``csv_safe`` — for spreadsheet cells: a cell that a spreadsheet would evaluate as a formula
  (``=HYPERLINK(...)``, ``+``, ``-``, ``@``, or a leading tab / carriage return, also after
  leading whitespace) gets a leading ``'``.
* ``markdown_safe`` — for inline Markdown (table cells, headings): ``terminal_safe`` and then
  a backslash before every character Markdown or inline HTML would interpret.

HTML goes through Jinja2 autoescaping (see ``html.py``), after ``terminal_safe``.
"""
from __future__ import annotations

import re

__all__ = ["terminal_safe", "csv_safe", "markdown_safe"]

# C0 controls, DEL, C1 controls.
_CONTROL = "\x00-\x1f\x7f-\x9f"
# ALM, LRM, RLM, LS, PS, LRE/RLE/PDF/LRO/RLO (U+202A-U+202E), LRI/RLI/FSI/PDI (U+2066-U+2069).
_BIDI = "\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069"
# Lone surrogates (json.loads accepts "\ud800"); they would crash any UTF-8 writer.
_SURROGATE = "\ud800-\udfff"
_UNSAFE = re.compile(f"[{_CONTROL}{_BIDI}{_SURROGATE}]")

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

# Characters with a meaning in inline Markdown / GFM tables / inline HTML. The backslash
# itself comes first in spirit: it is escaped so that a value cannot escape our own text.
_MARKDOWN_SPECIAL = re.compile(r"([\\|`*_\[\]<>#&~!])")


def _escape_char(match: re.Match[str]) -> str:
    code = ord(match.group(0))
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}"


def terminal_safe(s: str) -> str:
    """``s`` with control, bidi-override and surrogate characters made visible.

    >>> terminal_safe("\\x1b[31mred\\u202e")
    '\\\\x1b[31mred\\\\u202e'
    """
    if not isinstance(s, str):
        s = str(s)
    return _UNSAFE.sub(_escape_char, s)


def csv_safe(s: str) -> str:
    """``s`` with a leading ``'`` when a spreadsheet would treat it as a formula."""
    if not isinstance(s, str):
        s = str(s)
    if s.startswith(_FORMULA_START) or s.lstrip().startswith(_FORMULA_START):
        return "'" + s
    return s


def markdown_safe(s: str) -> str:
    """``s`` made inert and single-line for inline Markdown (table cells, headings, lists).

    Newlines and other controls become visible escapes (``\\x0a``); Markdown and HTML
    punctuation is backslash-escaped so it renders literally.
    """
    return _MARKDOWN_SPECIAL.sub(r"\\\1", terminal_safe(s))
