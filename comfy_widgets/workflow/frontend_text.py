"""Text processing the ComfyUI frontend applies to widget values when it builds a prompt.

``process_dynamic_prompt`` strips comments and picks one option of each ``{a|b|c}`` group
(text widgets with ``dynamicPrompts``); ``apply_text_replacements`` expands ``%date:…%`` and
``%Node.widget%`` in save nodes' ``filename_prefix``. Both follow frontend 1.27.10.
"""

from __future__ import annotations

import datetime as _dt
import random
import re
from collections.abc import Callable
from typing import Any

_COMMENTS = re.compile(r"/\*.*?\*/|//[^\n\r\u2028\u2029]*", re.DOTALL)
_REPLACEMENT = re.compile(r"%([^%]+)%")
_DATE_TOKEN = re.compile(r"dd?|MM?|hh?|mm?|ss?|yyy?y?")
_UNSAFE = re.compile(r'[/?<>\\:*|"\x00-\x1f\x7f]')


def process_dynamic_prompt(text: str, rng: Any = None) -> str:
    """Strip ``//`` and ``/* */`` comments and resolve ``{a|b}`` choices at random.

    ``rng`` is anything with a ``random()`` method (default: the ``random`` module).
    """
    chooser = rng or random
    source = _COMMENTS.sub("", text) if "/" in text else text
    if "{" not in source and "\\" not in source:
        return source
    result, _ = _parse(source, 0, chooser, top=True)
    return re.sub(r"\\([{}|])", r"\1", result)


class _FixedChoice:
    """A ``random()`` that always returns one value (to check a text has no real choice)."""

    def __init__(self, value: float) -> None:
        self.value = value

    def random(self) -> float:
        return self.value


_SPECIAL = re.compile(r"[{}|\\]|/[/*]")
_ESCAPES = {"{": "\\{", "}": "\\}", "|": "\\|"}


def escape_dynamic_prompt(text: str) -> str | None:
    """Text that ``process_dynamic_prompt`` turns back into exactly ``text``, or None.

    Written into a PNG's ``workflow`` chunk, it makes the frontend reproduce the prompt text
    that was sent when the PNG is dropped: ``{``, ``}`` and ``|`` are backslash-escaped, and
    the ``/`` that would start a comment (``//``, ``/*``) becomes the one-option group
    ``{/}`` (the comment pass runs before escapes are read, so a backslash cannot protect it).
    A literal backslash before ``{``, ``}`` or ``|`` goes through a one-option group. A text
    the frontend cannot reproduce (e.g. one ending in a backslash) gives None: the caller then
    leaves the graph out rather than write a wrong one.
    """
    if not _SPECIAL.search(text):
        return text
    out = []
    i = 0
    while i < len(text):
        char, following = text[i], text[i + 1 : i + 2]
        i += 1
        if char == "\\" and following in _ESCAPES:
            # a literal backslash-brace survives only through a one-option group, whose text
            # is unescaped twice (inner and outer pass): {\\\{}
            out.append("{\\\\\\" + following + "}")
            i += 1
        elif char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif char == "/" and following in ("/", "*"):
            out.append("{/}")
        else:
            out.append(char)
    escaped = "".join(out)
    for value in (0.0, 0.999999):
        if process_dynamic_prompt(escaped, _FixedChoice(value)) != text:
            return None
    return escaped


def _parse(source: str, i: int, chooser: Any, top: bool) -> tuple[str, int]:
    """Parse from ``i``; at top level until the end, inside a block until its ``}``."""
    if top:
        out = []
        while i < len(source):
            char = source[i]
            i += 1
            if char == "\\":
                out.append(_escape(source, i))
                i += 1
            elif char == "{":
                chosen, i = _parse(source, i, chooser, top=False)
                out.append(chosen)
            else:
                out.append(char)
        return "".join(out), i
    options: list[str] = []
    choice = ""
    depth = 0
    while i < len(source):
        char = source[i]
        i += 1
        if char == "\\":
            choice += _escape(source, i)
            i += 1
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            if not depth:
                break
            depth -= 1
        elif char == "|" and not depth:
            options.append(choice)
            choice = ""
            continue
        choice += char
    options.append(choice)
    picked = options[int(chooser.random() * len(options))]
    return process_dynamic_prompt(picked, chooser), i


def _escape(source: str, i: int) -> str:
    """A backslash keeps the next character escaped (JS turns a missing one into 'undefined')."""
    return "\\" + (source[i] if i < len(source) else "undefined")


def js_string(value: Any) -> str:
    """``String(value)`` as JavaScript writes it, for the common JSON value types."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e21:
            return str(int(value))
        return repr(value)
    if isinstance(value, list):
        return ",".join("" if v is None else js_string(v) for v in value)
    if isinstance(value, dict):
        return "[object Object]"
    return str(value)


def apply_text_replacements(
    text: str, lookup: Callable[[str, str], tuple[Any] | None], now: _dt.datetime | None = None
) -> str:
    """Expand ``%date:FORMAT%`` and ``%Node.widget%`` in a save node's file name prefix.

    ``lookup(node, widget)`` returns ``(value,)``, or None when no node or widget matches (the
    pattern is then kept as it is).
    """

    def replace(match: re.Match[str]) -> str:
        parts = match.group(1).split(".")
        if len(parts) != 2:
            if parts[0].startswith("date:"):
                return format_date(parts[0][5:], now or _dt.datetime.now())
            return match.group(0)
        value = lookup(parts[0], parts[1])
        if value is None:
            return match.group(0)
        return _UNSAFE.sub("_", js_string(value[0]))

    return _REPLACEMENT.sub(replace, text)


def format_date(fmt: str, when: _dt.datetime) -> str:
    """The frontend's tiny date formatter: yyyy, yy, MM, dd, hh, mm, ss (and single letters)."""
    parts = {"d": when.day, "M": when.month, "h": when.hour, "m": when.minute, "s": when.second}

    def token(match: re.Match[str]) -> str:
        text = match.group(0)
        if text == "yy":
            return str(when.year)[2:]
        if text == "yyyy":
            return str(when.year)
        if text[0] in parts:
            return str(parts[text[0]]).rjust(len(text), "0")
        return text

    return _DATE_TOKEN.sub(token, fmt)
