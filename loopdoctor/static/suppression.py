"""``# noqa`` comments, as flake8 and ruff read them.

- ``# noqa: LD001`` or ``# noqa: LD001, LD003`` on the first or the last line of a finding's span
  (a call written over several lines) suppresses those codes there; a bare ``# noqa`` suppresses
  every code. In a notebook the comment is read in the finding's cell.
- ``# loopdoctor: noqa`` on a line of its own suppresses the whole file
  (``# loopdoctor: noqa: LD004`` only those codes).
- With LD100 selected, ``# noqa: LD...`` codes that suppressed nothing are reported. Bare
  ``# noqa`` is left alone: it may be there for another tool.
"""

from __future__ import annotations

import io
import re
import tokenize
from dataclasses import dataclass, field, replace
from typing import Callable, Iterable, Optional

from loopdoctor.static.findings import Edit, FileResult, Finding, Position
from loopdoctor.static.rules.catalog import UNUSED_NOQA_CODE, UNUSED_NOQA_NAME
from loopdoctor.static.source import source_lines

LINE_NOQA = re.compile(r"#\s*noqa(?::[\s]?(?P<codes>[A-Z]+[0-9]+(?:[,\s]+[A-Z]+[0-9]+)*))?", re.IGNORECASE)
FILE_NOQA = re.compile(r"^\s*#\s*loopdoctor:\s*noqa(?::\s*(?P<codes>[A-Z]+[0-9]+(?:[,\s]+[A-Z]+[0-9]+)*))?\s*$", re.IGNORECASE)
LinesByCell = dict[Optional[int], list[str]]  # a notebook's lines per code cell; a file's under None


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


def finish(result: FileResult, data: bytes, codes: Iterable[str], respect_noqa: bool = True,
           lines: Optional[Callable[[], LinesByCell]] = None) -> FileResult:
    """A raw result (every rule's findings, as the cache keeps it) made final: only the selected
    codes, ``# noqa`` applied, and the source lines that full output shows. ``lines``: how to get
    the lines when ``data`` is not what they are read from."""
    codes = set(codes)
    findings = [finding for finding in result.findings if finding.code in codes]
    report_unused = respect_noqa and UNUSED_NOQA_CODE in codes and result.error is None
    lines_by_cell: LinesByCell = {}
    if findings or report_unused:
        lines_by_cell = lines() if lines is not None else source_lines(result.filename, data)
        if respect_noqa:
            findings = apply(findings, lines_by_cell, report_unused, result.filename)
    findings.sort(key=lambda f: f.sort_key)
    if not findings:
        lines_by_cell = {}
    cell_lines = {cell: lines for cell, lines in lines_by_cell.items() if cell is not None}
    return replace(result, findings=findings, lines=lines_by_cell.get(None, []), cell_lines=cell_lines, codes=tuple(sorted(codes)))


def apply(findings: list[Finding], lines_by_cell: dict[Optional[int], list[str]], report_unused: bool, filename: str) -> list[Finding]:
    """The findings that no directive suppresses, plus LD100 findings when asked for.
    ``lines_by_cell``: a notebook's lines per code cell, a plain file's under None."""
    # ``# loopdoctor: noqa`` in any cell of a notebook covers the whole notebook.
    _, file_codes, whole_file = directives([line for lines in lines_by_cell.values() for line in lines])
    if whole_file:
        return []
    kept = []
    for cell in sorted({*lines_by_cell, *(finding.cell for finding in findings)}, key=lambda c: c or 0):
        by_row, _, _ = directives(lines_by_cell.get(cell, []))
        for finding in (finding for finding in findings if finding.cell == cell):
            directive = _directive_for(finding, by_row)
            if directive is not None:
                directive.used.add(finding.code)
            elif finding.code not in file_codes:
                kept.append(finding)
        if report_unused:
            kept.extend(_unused(by_row, filename, cell))
    return kept


def _directive_for(finding: Finding, by_row: dict[int, Directive]) -> Optional[Directive]:
    for row in (finding.location.row, finding.end_location.row):
        directive = by_row.get(row)
        if directive is not None and (directive.codes is None or finding.code in directive.codes):
            return directive
    return None


def _unused(by_row: dict[int, Directive], filename: str, cell: Optional[int]) -> list[Finding]:
    unused = []
    for directive in by_row.values():
        if directive.codes is None:
            continue
        stale = sorted(code for code in directive.codes - directive.used if code.startswith("LD"))
        if stale:
            position = Position(directive.row, directive.column)
            unused.append(Finding(filename, position, position, UNUSED_NOQA_CODE, UNUSED_NOQA_NAME,
                                  f"unused `noqa` directive: {', '.join(stale)} not reported on this line",
                                  "remove the code from the `# noqa` comment", cell=cell))
    return unused


def noqa_edits(findings: list[Finding], lines_by_cell: LinesByCell) -> list[Edit]:
    """``--add-noqa``: edits that give each finding a ``# noqa: CODE`` on the first line of its
    span that ends outside a string (else its last), merged into a directive already there."""
    wanted: dict[tuple[Optional[int], int], set[str]] = {}
    line_ends = {cell: _code_line_ends(lines) for cell, lines in lines_by_cell.items()}
    for finding in findings:
        ends = line_ends.get(finding.cell)
        rows = range(finding.location.row, finding.end_location.row + 1)
        row = next((r for r in rows if ends is None or r in ends), None)
        if row is not None:
            wanted.setdefault((finding.cell, row), set()).add(finding.code)
    edits = []
    for (cell, row), codes in sorted(wanted.items(), key=lambda item: (item[0][0] or 0, item[0][1])):
        line = lines_by_cell.get(cell, [])[row - 1] if row <= len(lines_by_cell.get(cell, [])) else ""
        edit = _noqa_edit(line, row, codes, cell)
        if edit is not None:
            edits.append(edit)
    return edits


def _noqa_edit(line: str, row: int, codes: set[str], cell: Optional[int]) -> Optional[Edit]:
    match = LINE_NOQA.search(line)
    if match and match.group("codes") is None:
        return None  # a bare noqa already covers every code
    if match:
        merged = sorted(_codes(match.group("codes")) | codes)
        start, end = Position(row, match.start() + 1), Position(row, match.end() + 1)
        return Edit(start, end, f"# noqa: {', '.join(merged)}", cell)
    end = Position(row, len(line.rstrip()) + 1)
    return Edit(end, Position(row, len(line) + 1), f"  # noqa: {', '.join(sorted(codes))}", cell)


def _code_line_ends(lines: list[str]) -> Optional[set[int]]:
    """Rows whose end is outside a string and not continued by a backslash: where a comment may
    go. None when the text does not tokenize (a notebook cell with magics)."""
    rows = set()
    try:
        for token in tokenize.generate_tokens(io.StringIO("\n".join(lines) + "\n").readline):
            if token.type in (tokenize.NEWLINE, tokenize.NL, tokenize.COMMENT):
                rows.add(token.start[0])
    except (tokenize.TokenError, SyntaxError):
        return None
    return rows
