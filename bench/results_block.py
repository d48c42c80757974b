"""Sections of ``bench/RESULTS.md`` written by other scripts than ``python -m bench``.

``python -m bench`` rewrites the whole file; a section between an HTML comment pair
(``<!-- NAME:begin -->`` ... ``<!-- NAME:end -->``) belongs to another script (see
:data:`BLOCKS`), which replaces only its own block. Both keep the other's.
"""

from __future__ import annotations

import re

__all__ = ["BLOCKS", "carry_over", "replace"]

BLOCKS = {
    "streaming": "python -m bench.streaming",
    "parked": "python -m bench.parked",
    "breakdown": "python -m bench.breakdown",
}
"""Each block's name and the script that writes it."""

_BLOCK = re.compile(r"<!-- (?P<name>[\w-]+):begin -->.*?<!-- (?P=name):end -->\n?", re.DOTALL)


def _markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:begin -->", f"<!-- {name}:end -->"


def replace(text: str, name: str, body: str) -> str:
    """``text`` with block ``name`` holding ``body``: in place, or appended if absent."""
    if name not in BLOCKS:
        raise ValueError(f"{name!r} is not a block of RESULTS.md: add it to BLOCKS")
    begin, end = _markers(name)
    block = f"{begin}\n{body.strip()}\n{end}\n"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end) + r"\n?", re.DOTALL)
    if pattern.search(text):
        return pattern.sub(lambda _: block, text, count=1)
    return text.rstrip("\n") + "\n\n" + block


def carry_over(old: str, new: str) -> str:
    """``new`` with every block of ``old`` that ``new`` lacks appended, in order."""
    out = new
    for match in _BLOCK.finditer(old):
        begin, _ = _markers(match.group("name"))
        if begin not in out:
            out = out.rstrip("\n") + "\n\n" + match.group(0).rstrip("\n") + "\n"
    return out
