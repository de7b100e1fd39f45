"""LD100: a ``# noqa: LD...`` comment that suppresses nothing (off by default).

The work is done where suppressions are applied (``static/suppression.py``); this class gives the
code its place in the registry, so that it can be selected, ignored and documented like any rule.
"""

from __future__ import annotations

from typing import Iterator

from loopdoctor.static.flow import Flow
from loopdoctor.static.model import SemanticModel
from loopdoctor.static.rules.base import Rule, Violation


class UnusedNoqa(Rule):
    code = "LD100"
    name = "unused-noqa"
    summary = "A `# noqa: LD...` comment whose codes are not reported on its line"
    fix_hint = "remove the code from the `# noqa` comment"
    enabled_by_default = False

    @classmethod
    def wants(cls, source: str) -> bool:
        return False  # needs no parse of its own

    def check(self, semantic: SemanticModel, flow: Flow) -> Iterator[Violation]:
        return iter(())
