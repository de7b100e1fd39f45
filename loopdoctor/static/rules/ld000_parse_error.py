"""LD000: a file that cannot be read, decoded or parsed, so nothing in it is checked.

The checker reports it itself (``static/source.py`` and ``static/checker.py``), before any rule
runs; this class gives the code its place in the registry, like LD100's.
"""

from __future__ import annotations

from typing import Iterator

from loopdoctor.static.flow import Flow
from loopdoctor.static.model import SemanticModel
from loopdoctor.static.rules.base import Rule, Violation


class ParseError(Rule):
    code = "LD000"
    name = "parse-error"
    summary = "A file that cannot be read, decoded or parsed as Python (or a notebook), so nothing in it is checked"
    fix_hint = "fix the syntax error (or the encoding) the message names"

    @classmethod
    def wants(cls, source: str) -> bool:
        return False  # reported before parsing, never by a rule pass

    def check(self, semantic: SemanticModel, flow: Flow) -> Iterator[Violation]:
        return iter(())
