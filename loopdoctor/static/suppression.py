"""``# noqa`` comments, as flake8 and ruff read them.

- ``# noqa: LD001`` or ``# noqa: LD001, LD003`` on the line a finding is reported at suppresses
  those codes there; a bare ``# noqa`` suppresses every code on that line.
- ``# loopdoctor: noqa`` on a line of its own suppresses the whole file
  (``# loopdoctor: noqa: LD004`` only those codes).
- With LD100 selected, ``# noqa: LD...`` codes that suppressed nothing are reported. Bare
  ``# noqa`` is left alone: it may be there for another tool.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional

from loopdoctor.static.findings import Finding, Position

LINE_NOQA = re.compile(r"#\s*noqa(?::[\s]?(?P<codes>[A-Z]+[0-9]+(?:[,\s]+[A-Z]+[0-9]+)*))?", re.IGNORECASE)
FILE_NOQA = re.compile(r"^\s*#\s*loopdoctor:\s*noqa(?::\s*(?P<codes>[A-Z]+[0-9]+(?:[,\s]+[A-Z]+[0-9]+)*))?\s*$", re.IGNORECASE)
UNUSED_NOQA_CODE, UNUSED_NOQA_NAME = "LD100", "unused-noqa"


@dataclass
class Directive:
    row: int
    column: int
    codes: Optional[set[str]]  # None: every code
    used: set[str] = field(default_factory=set)


def _codes(text: Optional[str]) -> Optional[set[str]]:
    return None if text is None else {code.upper() for code in re.split(r"[,\s]+", text) if code}


def directives(lines: list[str]) -> tuple[dict[int, Directive], Optional[set[str]], bool]:
    """Line directives by row, the file-level codes, and whether the whole file is suppressed."""
    by_row: dict[int, Directive] = {}
    file_codes: Optional[set[str]] = set()
    whole_file = False
    for row, line in enumerate(lines, start=1):
        if "noqa" not in line.lower():
            continue
        file_match = FILE_NOQA.match(line)
        if file_match:
            codes = _codes(file_match.group("codes"))
            if codes is None:
                whole_file = True
            else:
                file_codes |= codes
            continue
        match = LINE_NOQA.search(line)
        if match:
            by_row[row] = Directive(row, match.start() + 1, _codes(match.group("codes")))
    return by_row, file_codes, whole_file


def apply(findings: list[Finding], lines: list[str], report_unused: bool, filename: str) -> list[Finding]:
    """The findings that no directive suppresses, plus LD100 findings when asked for."""
    by_row, file_codes, whole_file = directives(lines)
    if whole_file:
        return []
    kept = []
    for finding in findings:
        if finding.code in file_codes:
            continue
        directive = by_row.get(finding.location.row)
        if directive is not None and (directive.codes is None or finding.code in directive.codes):
            directive.used.add(finding.code)
            continue
        kept.append(finding)
    if report_unused:
        kept.extend(_unused(by_row, filename))
    return kept


def _unused(by_row: dict[int, Directive], filename: str) -> list[Finding]:
    unused = []
    for directive in by_row.values():
        if directive.codes is None:
            continue
        stale = sorted(code for code in directive.codes - directive.used if code.startswith("LD"))
        if stale:
            position = Position(directive.row, directive.column)
            unused.append(Finding(filename, position, position, UNUSED_NOQA_CODE, UNUSED_NOQA_NAME,
                                  f"unused `noqa` directive: {', '.join(stale)} not reported on this line",
                                  "remove the code from the `# noqa` comment"))
    return unused
