"""``--fix`` and ``--diff``: apply fixes until the file is stable, and never lose code.

Each pass re-checks the current text, applies the chosen fixes that do not overlap, and keeps
the result only if it still parses and the fixed findings are gone; a fix that fails either test
is dropped and reported. Files are written through a temporary file and an atomic rename, in
their own encoding (BOM included) and line endings, with their mode, and only if they did not
change on disk since they were read.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from typing import Optional, Sequence

import libcst as cst

from loopdoctor.config import AnalysisSettings
from loopdoctor.static import crossfile, suppression
from loopdoctor.static.checker import check_notebook, check_text
from loopdoctor.static.findings import Edit, FileResult, Finding
from loopdoctor.static.fixes import apply_edits, overlaps
from loopdoctor.static.notebook import NotebookError, read_notebook, rewrite_cells
from loopdoctor.static.rules import RULES_BY_CODE
from loopdoctor.static.source import decode, source_encoding, source_lines

MAX_PASSES = 10


@dataclass
class FixOutcome:
    path: Optional[str]  # None: bytes that came from no file (stdin)
    filename: str
    original: bytes
    fixed: Optional[bytes] = None  # None: nothing to change
    applied: int = 0
    dropped: list[str] = field(default_factory=list)


def applicable(finding: Finding, unsafe: bool) -> bool:
    return finding.fix is not None and finding.fix.applies(unsafe)


def fix_source(data: bytes, filename: str, path: Optional[str], codes: Sequence[str], unsafe: bool,
               analysis: AnalysisSettings = AnalysisSettings(), respect_noqa: bool = True) -> FixOutcome:
    """Apply the selected rules' fixes to ``data`` (the file at ``path``, whose local imports
    count) until it is stable; nothing is written here."""
    outcome = FixOutcome(path, filename, data)
    document = _Notebook if filename.endswith(".ipynb") else _PythonFile
    rules = [RULES_BY_CODE[code].load() for code in codes]
    external = crossfile.facts(crossfile.dependencies(path, data)) if path else crossfile.NO_FACTS
    state = document.start(data, filename)
    if state is None:
        return outcome  # unreadable, undecodable or not a notebook: nothing to fix

    def findings(current) -> list[Finding]:
        raw = document.check(current, filename, rules, external, analysis)
        return suppression.finish(raw, b"", codes, respect_noqa, lambda: document.lines(current, filename)).findings

    start, rejected = state, set()
    for _ in range(MAX_PASSES):
        before = findings(state)
        chosen = _choose([f for f in before if applicable(f, unsafe) and _identity(f) not in rejected])
        if not chosen:
            break
        candidate = document.apply(state, [edit for finding in chosen for edit in finding.fix.edits])
        problem = _verify(document, candidate, before, chosen, findings)
        if problem:
            rejected.update(_identity(f) for f in chosen)
            outcome.dropped += [f"{f.place}: {f.code} fix dropped: {problem}" for f in chosen]
            continue
        state = candidate
        outcome.applied += len(chosen)
    if state != start:
        outcome.fixed = document.encode(state, data)
    return outcome


def edited(data: bytes, filename: str, edits: Sequence[Edit]) -> Optional[bytes]:
    """``data`` with plain edits applied (``--add-noqa``); None when it cannot be read."""
    document = _Notebook if filename.endswith(".ipynb") else _PythonFile
    state = document.start(data, filename)
    return None if state is None else document.encode(document.apply(state, edits), data)


class _PythonFile:
    """A source file's fixes work on its decoded text."""

    @staticmethod
    def start(data: bytes, filename: str) -> Optional[str]:
        text = decode(data, filename)
        return None if isinstance(text, FileResult) else text

    @staticmethod
    def check(text: str, filename: str, rules, external, analysis) -> FileResult:
        return check_text(text, filename, rules, external, analysis)

    @staticmethod
    def lines(text: str, filename: str) -> dict:
        return {None: text.splitlines()}

    @staticmethod
    def apply(text: str, edits: Sequence[Edit]) -> str:
        return apply_edits(text, edits)

    @staticmethod
    def parses(text: str) -> bool:
        return _parses(text)

    @staticmethod
    def encode(text: str, original: bytes) -> bytes:
        return text.encode(source_encoding(original))


class _Notebook:
    """A notebook's fixes work on its JSON bytes: edits carry their cell, and only the sources of
    the cells they touch are rewritten."""

    @staticmethod
    def start(data: bytes, filename: str) -> Optional[bytes]:
        try:
            read_notebook(data)
        except NotebookError:
            return None
        return data

    @staticmethod
    def check(data: bytes, filename: str, rules, external, analysis) -> FileResult:
        return check_notebook(data, filename, rules, analysis)

    @staticmethod
    def lines(data: bytes, filename: str) -> dict:
        return source_lines(filename, data)

    @staticmethod
    def apply(data: bytes, edits: Sequence[Edit]) -> bytes:
        texts = read_notebook(data).cell_texts
        sources = {}
        for cell in sorted({edit.cell for edit in edits}):
            sources[cell] = _apply_to_cell(texts[cell], [edit for edit in edits if edit.cell == cell])
        return rewrite_cells(data, sources)

    @staticmethod
    def parses(data: bytes) -> bool:
        try:
            return _parses(read_notebook(data).source)
        except NotebookError:
            return False

    @staticmethod
    def encode(data: bytes, original: bytes) -> bytes:
        return data


def _apply_to_cell(text: str, edits: Sequence[Edit]) -> str:
    # A cell's last line has no newline; edits that insert after it expect one.
    closed = not text or text.endswith(("\n", "\r"))
    fixed = apply_edits(text if closed else text + "\n", edits)
    return fixed if closed or not fixed.endswith("\n") else fixed[:-1]


def _parses(text: str) -> bool:
    try:
        cst.parse_module(text)
    except Exception:
        return False
    return True


def _identity(finding: Finding) -> tuple:
    return (finding.code, finding.message, finding.fix.edits if finding.fix else None)


def _choose(candidates: list[Finding]) -> list[Finding]:
    chosen: list[Finding] = []
    groups: set[str] = set()
    for finding in sorted(candidates, key=lambda f: f.sort_key):
        if finding.fix.group and finding.fix.group in groups:
            continue
        if any(overlaps(finding.fix, other.fix) for other in chosen):
            continue
        chosen.append(finding)
        if finding.fix.group:
            groups.add(finding.fix.group)
    return chosen


def _verify(document, candidate, before: list[Finding], chosen: list[Finding], findings) -> Optional[str]:
    if not document.parses(candidate):
        return "the result would not parse"
    after = Counter(f.code for f in findings(candidate))
    expected = Counter(f.code for f in before)
    expected.subtract(Counter(f.code for f in chosen))
    if any(after[code] > max(expected[code], 0) for code in after):
        return "the finding would remain"
    return None


class ChangedOnDisk(Exception):
    pass


def write_atomically(outcome: FixOutcome) -> None:
    """Replace the file's content, unless someone changed it since it was read."""
    target = os.path.realpath(outcome.path)
    with open(target, "rb") as handle:
        if handle.read() != outcome.original:
            raise ChangedOnDisk(f"{outcome.filename} changed on disk since it was read; not written")
    directory = os.path.dirname(target)
    descriptor, temporary = tempfile.mkstemp(dir=directory, prefix=".loopdoctor-", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(outcome.fixed)
            handle.flush()
            os.fsync(handle.fileno())
        shutil.copymode(target, temporary)
        os.replace(temporary, target)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
