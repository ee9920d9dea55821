"""What every command gives back: a result that renders itself as text (what the command prints) and as
a JSON document (what it prints with ``--json``), with the command's exit status. The library's
functions return these objects, so the Python API gives everything the command line prints, and the
command line holds no formatting of its own.
"""
from __future__ import annotations

import json

from tabulate import tabulate

from .jsontext import json_safe


class Result:
    """A command's result. ``text()``: what the command prints; ``to_json()``: the document ``--json``
    prints; ``exit_code``: the command's exit status (0: success); ``notices``: lines for the error
    stream (warnings a script should see even with ``--json``); ``error``: why the command failed
    after its output, or None."""

    exit_code: int = 0
    error: str | None = None

    def text(self) -> str:
        raise NotImplementedError

    def to_json(self):
        raise NotImplementedError

    def json_text(self) -> str:
        """``to_json()`` as printed: indented, NaN as null and inf as "inf" (``jsontext``: JSON has neither)."""
        return json.dumps(json_safe(self.to_json()), indent=2, allow_nan=False)

    @property
    def notices(self) -> list[str]:
        return []


class Document(dict, Result):
    """A result that is its JSON document (a dict: the API reads its keys); a subclass says how it
    reads as text."""

    def to_json(self) -> dict:
        return dict(self)


class Rows(list, Result):
    """A result that is a list of JSON-able rows (a list: the API iterates it); a subclass says how it
    reads as text."""

    def to_json(self) -> list:
        return list(self)


def text_table(rows, headers, fmt: str = "simple", numparse: bool = False) -> str:
    """A plain-text table of already formatted cells (with ``numparse``, cells that read as numbers are
    aligned as numbers)."""
    return tabulate(rows, headers=headers, tablefmt=fmt, disable_numparse=not numparse)


def listing(what: str, names: list[str], limit: int = 10) -> str:
    """``what (n): a, b, c …`` with at most ``limit`` names."""
    return f"{what} ({len(names)}): {', '.join(names[:limit])}" + (" …" if len(names) > limit else "")


def one_line(text: str) -> str:
    """``text`` with control characters (a newline in a file name) escaped: one printed line stays one."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)
