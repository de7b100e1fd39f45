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

from loopdoctor.static.checker import check_text
from loopdoctor.static.source import decode, source_encoding
from loopdoctor.static import crossfile
from loopdoctor.static.findings import FileResult, Finding
from loopdoctor.static.fixes import SAFE, apply_edits, overlaps

MAX_PASSES = 10


@dataclass
class FixOutcome:
    path: str
    filename: str
    original: bytes
    fixed: Optional[bytes] = None  # None: nothing to change
    applied: int = 0
    dropped: list[str] = field(default_factory=list)


def applicable(finding: Finding, unsafe: bool) -> bool:
    return finding.fix is not None and (finding.fix.applicability == SAFE or unsafe)


def fix_file(path: str, filename: str, rules: Sequence, unsafe: bool) -> FixOutcome:
    with open(path, "rb") as handle:
        original = handle.read()
    outcome = FixOutcome(path, filename, original)
    text = decode(original, filename)
    if isinstance(text, FileResult):
        return outcome  # unreadable or undecodable: nothing to fix
    start = text
    rejected: set[tuple] = set()
    external = crossfile.facts(crossfile.dependencies(path, original))
    for _ in range(MAX_PASSES):
        findings = check_text(text, filename, rules, external).findings
        chosen = _choose([f for f in findings if applicable(f, unsafe) and _identity(f) not in rejected])
        if not chosen:
            break
        candidate = apply_edits(text, [edit for finding in chosen for edit in finding.fix.edits])
        problem = _verify(candidate, findings, chosen, filename, rules, external)
        if problem:
            rejected.update(_identity(f) for f in chosen)
            outcome.dropped += [f"{f.place}: {f.code} fix dropped: {problem}" for f in chosen]
            continue
        text = candidate
        outcome.applied += len(chosen)
    if text != start:
        encoding = source_encoding(original)
        outcome.fixed = text.encode(encoding)
    return outcome


def _identity(finding: Finding) -> tuple:
    return (finding.code, finding.message, finding.fix.edits if finding.fix else None)


def _choose(candidates: list[Finding]) -> list[Finding]:
    chosen: list[Finding] = []
    groups: set[str] = set()
    for finding in sorted(candidates, key=lambda f: f.location):
        if finding.fix.group and finding.fix.group in groups:
            continue
        if any(overlaps(finding.fix, other.fix) for other in chosen):
            continue
        chosen.append(finding)
        if finding.fix.group:
            groups.add(finding.fix.group)
    return chosen


def _verify(candidate: str, before: list[Finding], chosen: list[Finding], filename: str, rules, external) -> Optional[str]:
    try:
        cst.parse_module(candidate)
    except Exception:
        return "the result would not parse"
    after = Counter(f.code for f in check_text(candidate, filename, rules, external).findings)
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
