"""The answer's text, live, from a ``json_schema``-mode reply as it streams.

In ``json_schema`` tool mode the whole reply is a JSON envelope: ``{"answer": "..."}``
or ``{"tool": ..., "arguments": {...}}``. Streaming its raw JSON would show a reader
braces and escapes; this decodes the ``answer`` string as its characters arrive. A
tool envelope yields no text (its call shows in the run's events once made). The
final reply is still parsed from the whole text (``parse_envelope``): this is a view.
"""

from __future__ import annotations

import json
import re

__all__ = ["AnswerText"]

_OPENING = re.compile(r'\s*\{\s*"answer"\s*:\s*"')
_FIRST_KEY = re.compile(r'\s*\{\s*"([^"]*)"')
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


class AnswerText:
    """Feed it the envelope's pieces; each call returns the answer text they add."""

    def __init__(self) -> None:
        self._raw = ""
        self._start: int | None = None
        """Where the answer string's characters begin in ``_raw``; None: not known yet."""
        self._pos = 0
        """How far into ``_raw`` the answer is decoded."""
        self._done = False

    def feed(self, piece: str) -> str:
        self._raw += piece
        if self._done:
            return ""
        if self._start is None:
            opening = _OPENING.match(self._raw)
            if opening is None:
                # A first key other than "answer" (a tool envelope), or no envelope at all.
                key = _FIRST_KEY.match(self._raw)
                self._done = (key is not None and key.group(1) != "answer") or (
                    not self._raw.lstrip().startswith("{") and bool(self._raw.strip())
                )
                return ""
            self._start = self._pos = opening.end()
        return self._decode()

    def _decode(self) -> str:
        out: list[str] = []
        raw, i = self._raw, self._pos
        while i < len(raw):
            ch = raw[i]
            if ch == '"':
                self._done = True
                break
            if ch != "\\":
                out.append(ch)
                i += 1
                continue
            if i + 1 >= len(raw):
                break  # the escape's second character has not arrived
            code = raw[i + 1]
            if code == "u":
                decoded = self._unicode(raw, i)
                if decoded is None:
                    break
                text, i = decoded
                out.append(text)
                continue
            out.append(_ESCAPES.get(code, code))
            i += 2
        self._pos = i
        return "".join(out)

    @staticmethod
    def _unicode(raw: str, i: int) -> tuple[str, int] | None:
        """A ``\\uXXXX`` escape at ``i`` (a surrogate pair as one character); None: incomplete."""
        if i + 6 > len(raw):
            return None
        first = raw[i : i + 6]
        try:
            code = int(first[2:], 16)
        except ValueError:  # not four hex digits: the model wrote a broken escape
            return "\ufffd", i + 2
        if 0xD800 <= code <= 0xDBFF:
            if i + 12 > len(raw):
                return None
            pair = raw[i : i + 12]
            try:
                return str(json.loads(f'"{pair}"')), i + 12
            except ValueError:
                return "\ufffd", i + 6
        try:
            return str(json.loads(f'"{first}"')), i + 6
        except ValueError:
            return "\ufffd", i + 6
